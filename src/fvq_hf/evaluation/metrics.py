"""Image quality metrics on the model's [-1, 1] tensors."""

from __future__ import annotations

import torch


def psnr(reconstruction: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, for (B, C, H, W) tensors in [-1, 1] (RGB, not Y-channel)."""
    mse = (reconstruction.float().clamp(-1, 1) - target.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))
