"""Evaluate a tokenizer over a whole evaluation set: exact codebook usage, perplexity, PSNR, SSIM, LPIPS, rFID.

Usage is exact: every chosen code of every image on every process is counted (REFERENCE.md §1), not a sliding
window. Per-image metrics are averaged over all images of all processes. Which protocol produced the numbers
(crop, resize, format) is part of the result, because protocols change rFID.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from ..quantization.projectors import slot_indices
from ..quantization.usage import CodebookUsage, UsageStats, all_reduce_sum
from .metrics import psnr


@dataclass
class EvaluationResult:
    """Metrics of one evaluation pass.

    Attributes:
        usage: fraction of codes chosen at least once over the whole set (0–1).
        perplexity: of the code histogram over the whole set.
        used_codes: codes chosen at least once.
        psnr: mean PSNR in dB (RGB, data range 2).
        ssim: mean SSIM (data range 2).
        lpips: mean LPIPS (VGG) when a perceptual model was given, else None.
        rfid: reconstruction FID when an Inception feature model was given, else None.
        images: number of images evaluated.
        protocol: how images were prepared and compared.
    """

    usage: float
    perplexity: float
    used_codes: int
    psnr: float
    ssim: float
    lpips: float | None
    rfid: float | None
    images: int
    protocol: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def live_slots(counts: torch.Tensor, config) -> tuple[int, int] | None:
    """(slots with any code used, p²) for a codebook laid out by a VQBridge of patch p (folded or not).

    All codes of one slot come from the same rows of the bridge's last Linear, so they live or die
    together (REFERENCE.md §7); fewer live slots than p² caps usage at live / p².
    """
    p = getattr(config, "bridge_patch_size", None)
    side = math.isqrt(config.codebook_size)
    if not p or side * side != config.codebook_size or side % p or config.projector not in ("vqbridge", "none"):
        return None
    if config.projector == "none" and not config.folded:
        return None
    slots = slot_indices(torch.nonzero(counts > 0).flatten(), side, p)
    return int(slots.unique().numel()), p * p


@torch.no_grad()
def evaluate_tokenizer(
    model,
    dataloader,
    lpips: torch.nn.Module | None = None,
    fid=None,
    protocol: str = "",
    max_batches: int | None = None,
    keep_first: int = 0,
) -> tuple[EvaluationResult, torch.Tensor | None]:
    """Run ``model`` (an ``FVQModel``, possibly wrapped) over ``dataloader`` (batches from ``collate_images``).

    ``fid`` is a torchmetrics ``FrechetInceptionDistance`` (its feature model supplied by the caller) or None.
    Returns the metrics and, with ``keep_first``, up to that many (original, reconstruction) pairs stacked as
    (2, N, 3, H, W) from this process for a reconstruction grid.
    """
    unwrapped = getattr(model, "module", model)
    was_training = unwrapped.training
    unwrapped.eval()
    device = next(unwrapped.parameters()).device
    usage = CodebookUsage(unwrapped.config.codebook_size, device=device)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # images, psnr, ssim, lpips
    kept: list[torch.Tensor] = []
    for step, batch in enumerate(dataloader):
        if max_batches is not None and step >= max_batches:
            break
        images = batch["pixel_values"].to(device)
        if images.numel() == 0:
            continue
        out = unwrapped(images)
        reconstruction = out.sample.float().clamp(-1, 1)
        usage.update(out.indices)
        sums[0] += images.shape[0]
        sums[1] += psnr(reconstruction, images).sum().double()
        sums[2] += structural_similarity_index_measure(reconstruction, images.float(), data_range=2.0, reduction="none").sum().double()
        if lpips is not None:
            sums[3] += lpips(reconstruction, images.float()).sum().double()
        if fid is not None:
            fid.update(((images.float() + 1) * 127.5).round().to(torch.uint8), real=True)
            fid.update(((reconstruction + 1) * 127.5).round().to(torch.uint8), real=False)
        if len(kept) * images.shape[0] < keep_first:
            kept.append(torch.stack([images.float(), reconstruction]).cpu())
    counts = usage.global_counts()
    stats = UsageStats.from_counts(counts)
    sums = all_reduce_sum(sums)
    n = max(float(sums[0]), 1.0)
    result = EvaluationResult(
        usage=stats.usage,
        perplexity=stats.perplexity,
        used_codes=stats.used_codes,
        psnr=float(sums[1]) / n,
        ssim=float(sums[2]) / n,
        lpips=float(sums[3]) / n if lpips is not None else None,
        rfid=float(fid.compute()) if fid is not None else None,
        images=int(sums[0]),
        protocol=protocol,
    )
    slots = live_slots(counts, unwrapped.config)
    if slots is not None:
        result.extra["live_slots"], result.extra["slots"] = slots
    unwrapped.train(was_training)
    pairs = torch.cat(kept, dim=1)[:, :keep_first] if kept else None
    return result, pairs
