"""Conversions between PIL images and the model's tensors (float, (B, 3, H, W), values in [-1, 1])."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop the largest square, then resize it to ``size`` × ``size`` (bicubic)."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return square if side == size else square.resize((size, size), Image.BICUBIC)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image → a (3, H, W) float tensor in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """A (B, 3, H, W) or (3, H, W) tensor in [-1, 1] → PIL images (values are clipped)."""
    if images.ndim == 3:
        images = images[None]
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in array]


def make_grid(rows: list[list[Image.Image]]) -> Image.Image:
    """Paste equally sized images into one grid image, a list per row."""
    w, h = rows[0][0].size
    grid = Image.new("RGB", (w * max(len(r) for r in rows), h * len(rows)))
    for y, row in enumerate(rows):
        for x, image in enumerate(row):
            grid.paste(image, (x * w, y * h))
    return grid
