"""Losses: LPIPS perceptual distance (VGG16 for training, AlexNet for evaluation), PatchGAN discriminator, hinge losses."""

from .alexnet import AlexNetFeatures, load_alexnet_weights
from .discriminator import PatchGANDiscriminator, adaptive_gan_weight, hinge_discriminator_loss, hinge_generator_loss
from .perceptual import LPIPS, PerceptualWeightsUnavailable, VGG16Features, load_vgg16_weights

__all__ = [
    "LPIPS",
    "AlexNetFeatures",
    "PatchGANDiscriminator",
    "PerceptualWeightsUnavailable",
    "VGG16Features",
    "adaptive_gan_weight",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "load_alexnet_weights",
    "load_vgg16_weights",
]
