"""Image quality metrics: PSNR (RGB or BT.601 luma) and SSIM (Gaussian or uniform window).

Two SSIM windows exist because the two published protocols use two implementations: the FVQ evaluation calls
``piq.ssim`` (11 × 11 Gaussian, σ = 1.5, population variances, an average-pool first for images above ~384 px),
LlamaGen's calls scikit-image's ``structural_similarity`` (7 × 7 uniform window, sample variances). Both keep only
the positions where the whole window fits inside the image and average the channels' means.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma of RGB in [0, 1], on the studio range [16, 235] / 255 (the YCbCr of MATLAB's rgb2ycbcr,
# which IQA-PyTorch's psnr(test_y_channel=True, color_space="ycbcr") uses)
BT601_Y_WEIGHTS = (65.481, 128.553, 24.966)
BT601_Y_OFFSET = 16.0


def psnr(reconstruction: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, for (B, C, H, W) tensors in [-1, 1] (RGB, not Y-channel)."""
    mse = (reconstruction.float().clamp(-1, 1) - target.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def rgb_to_y(images: torch.Tensor) -> torch.Tensor:
    """BT.601 luma (B, 1, H, W) in [16/255, 235/255] of RGB images (B, 3, H, W) in [0, 1]."""
    weights = images.new_tensor(BT601_Y_WEIGHTS).view(1, 3, 1, 1)
    return ((images.float() * weights).sum(1, keepdim=True) + BT601_Y_OFFSET) / 255.0


def psnr_y(reconstruction: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """PSNR in dB per image on the BT.601 Y channel, for RGB (B, 3, H, W) images in [0, 1] (peak 1).

    This is the PSNR of the FVQ paper's tables (IQA-PyTorch ``psnr`` with ``test_y_channel=True``,
    ``color_space="ycbcr"``, which also adds ``eps`` to the MSE). It is higher than RGB PSNR: luma discards the
    chroma errors a tokenizer makes.
    """
    mse = (rgb_to_y(reconstruction) - rgb_to_y(target)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / (mse + eps))


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    window = torch.outer(g, g)
    return (window / window.sum()).to(dtype)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    window: str = "gaussian",
    window_size: int | None = None,
    sigma: float = 1.5,
    sample_covariance: bool | None = None,
    downsample: bool | None = None,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity per image of (B, C, H, W) tensors, the mean over channels of each channel's mean SSIM.

    Args:
        x, y: images; their values should span ``data_range`` (1 for [0, 1], 2 for [-1, 1]).
        data_range: sets the stabilising constants C1 = (k1 · data_range)², C2 = (k2 · data_range)². A value
            larger than the images' true range inflates SSIM towards 1: the FVQ and LlamaGen evaluations pass
            ``data_range=2`` for images in [0, 1].
        window: ``"gaussian"`` (``window_size`` 11, ``sigma`` 1.5, as ``piq.ssim``) or ``"uniform"``
            (``window_size`` 7, as scikit-image's ``structural_similarity``).
        sample_covariance: divide variances by N − 1 instead of N (default: True for the uniform window, as
            scikit-image does, False for the Gaussian one).
        downsample: average-pool by ``max(1, round(min(H, W) / 256))`` first, as ``piq.ssim`` does (default: True
            for the Gaussian window, False for the uniform one). No effect at 256 px.
    """
    gaussian = window == "gaussian"
    if window not in ("gaussian", "uniform"):
        raise ValueError(f"window must be 'gaussian' or 'uniform', not {window!r}")
    window_size = window_size or (11 if gaussian else 7)
    sample_covariance = (not gaussian) if sample_covariance is None else sample_covariance
    downsample = gaussian if downsample is None else downsample
    x, y = x.float(), y.float()
    factor = max(1, round(min(x.shape[-2:]) / 256))
    if downsample and factor > 1:
        x, y = F.avg_pool2d(x, factor), F.avg_pool2d(y, factor)
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"SSIM needs images of at least {window_size} px, got {tuple(x.shape[-2:])}")
    channels = x.shape[1]
    if gaussian:
        kernel = _gaussian_window(window_size, sigma, x.device, x.dtype)
    else:
        kernel = torch.full((window_size, window_size), 1.0 / window_size**2, device=x.device, dtype=x.dtype)
    kernel = kernel.expand(channels, 1, window_size, window_size)

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=channels)  # no padding: only windows that fit inside the image

    mu_x, mu_y = mean(x), mean(y)
    norm = window_size**2 / (window_size**2 - 1) if sample_covariance else 1.0
    var_x = norm * (mean(x * x) - mu_x**2)
    var_y = norm * (mean(y * y) - mu_y**2)
    cov = norm * (mean(x * y) - mu_x * mu_y)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(2, 3)).mean(1)
