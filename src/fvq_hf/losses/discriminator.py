"""PatchGAN discriminator, hinge GAN losses and the adaptive GAN weight (VQGAN / LlamaGen recipe)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchGANDiscriminator(nn.Module):
    """Pix2pix's N-layer PatchGAN: one real/fake logit per overlapping patch.

    Args:
        in_channels: image channels.
        base_channels: channels of the first layer (64 in the recipe).
        num_layers: strided layers after the first (3 in the recipe).
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, num_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < num_layers else 1
            layers += [
                nn.Conv2d(base_channels * prev, base_channels * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(base_channels * mult),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(base_channels * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images)


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.mean()


def adaptive_gan_weight(
    reconstruction_loss: torch.Tensor, generator_loss: torch.Tensor, last_layer: torch.Tensor
) -> torch.Tensor:
    """‖∇ rec‖ / ‖∇ gan‖ at the decoder's last layer (VQGAN's balance), clamped to [0, 1e4] and detached."""
    rec_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(generator_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()
