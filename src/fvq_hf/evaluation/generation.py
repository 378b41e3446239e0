"""FID of generated images: class-balanced samples of an FVQPipeline against a folder of real images."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..data.datasets import ImageFolderDataset, collate_images


def _uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] → uint8, rounded as when an image is saved."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


@torch.no_grad()
def generation_fid(
    pipeline,
    reference_dir: str,
    inception,
    num_samples: int = 5000,
    batch_size: int = 50,
    generator: torch.Generator | None = None,
    progress: bool = True,
    **sampling,
) -> float:
    """FID between ``num_samples`` generated images (classes in turn, so every class gets its share) and the images
    of ``reference_dir`` centre-cropped to the tokenizer's resolution. ``inception`` is an ``InceptionV3Features``
    (user-supplied weights); ``sampling`` goes to the pipeline (``guidance_scale``, ``top_k``, …)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    device = pipeline.transformer.device
    fid = FrechetInceptionDistance(feature=inception).to(device)
    resolution = pipeline.transformer.grid_size * pipeline.vqvae.downsample_factor
    reference = ImageFolderDataset(reference_dir, resolution, train=False)
    loader = torch.utils.data.DataLoader(reference, batch_size=batch_size, collate_fn=collate_images)
    for batch in tqdm(loader, desc="FID: real images", disable=not progress):
        fid.update(_uint8(batch["pixel_values"].to(device) / 2 + 0.5), real=True)
    num_classes = pipeline.transformer.config.num_classes
    for start in tqdm(range(0, num_samples, batch_size), desc="FID: samples", disable=not progress):
        labels = [i % num_classes for i in range(start, min(start + batch_size, num_samples))]
        images = pipeline(labels, output_type="pt", generator=generator, **sampling).images
        fid.update(_uint8(images.to(device)), real=False)
    return float(fid.compute())
