"""Training losses: LPIPS perceptual distance, PatchGAN discriminator and hinge losses."""

from .discriminator import PatchGANDiscriminator, adaptive_gan_weight, hinge_discriminator_loss, hinge_generator_loss
from .perceptual import LPIPS, PerceptualWeightsUnavailable, VGG16Features, load_vgg16_weights

__all__ = [
    "LPIPS",
    "PatchGANDiscriminator",
    "PerceptualWeightsUnavailable",
    "VGG16Features",
    "adaptive_gan_weight",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "load_vgg16_weights",
]
