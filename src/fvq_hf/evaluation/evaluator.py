"""Evaluate a tokenizer over a whole evaluation set: exact codebook usage, perplexity, PSNR, SSIM, LPIPS, rFID.

Usage is exact: every chosen code of every image on every process is counted, not a sliding window (as the FVQ
evaluation code counts it: the set of codes chosen over the whole ImageNet val set, divided by the codebook size). Per-image metrics are
averaged over all images of all processes. Which protocol produced the numbers (crop, resize, file format, metric
implementations; see ``protocols.py``) is part of the result, because protocols change rFID, PSNR and SSIM.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from ..quantization.projectors import slot_indices
from ..quantization.usage import CodebookUsage, LevelUsage, UsageStats, all_reduce_sum
from .metrics import psnr, psnr_y, ssim
from .protocols import PROTOCOLS, EvaluationProtocol, get_protocol, quantize, round_trip_batch


@dataclass
class EvaluationResult:
    """Metrics of one evaluation pass.

    Attributes:
        usage: fraction of codes chosen at least once over the whole set (0–1).
        perplexity: of the code histogram over the whole set.
        used_codes: codes chosen at least once.
        psnr: mean PSNR in dB as the protocol defines it (``fvq``: BT.601 Y channel; ``adm``, ``fast``: RGB).
        ssim: mean SSIM as the protocol's reference code computes it (``fvq``, ``adm``: data range 2 on images in
            [0, 1], which inflates it, the number to set beside published tables; ``fast``: data range 2 on
            [-1, 1], correct).
        lpips: mean LPIPS (``lpips_net``) when a perceptual model was given, else None.
        rfid: reconstruction FID when an Inception feature model was given, else None.
        images: number of images evaluated.
        protocol: how images were prepared and compared, in words.
        ssim_correct_range: mean SSIM with the constants of the images' true range (data range 1 on [0, 1]);
            the same as ``ssim`` for ``fast``.
        protocol_name: ``"fvq"``, ``"adm"`` or ``"fast"``.
        protocol_details: every choice of the protocol (``EvaluationProtocol.as_dict()``).
        lpips_net: ``"alex"`` or ``"vgg"`` when LPIPS was measured.
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
    ssim_correct_range: float | None = None
    protocol_name: str = "fast"
    protocol_details: dict = field(default_factory=dict)
    lpips_net: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def live_slots(counts: torch.Tensor, config) -> tuple[int, int] | None:
    """(slots with any code used, p²) for a codebook laid out by a VQBridge of patch p (folded or not).

    All codes of one slot come from the same rows of the bridge's last Linear (each bridge token is expanded back
    into its p × p tile of codes by that Linear), so they live or die together; fewer live slots than p² caps
    usage at live / p².
    """
    p = getattr(config, "bridge_patch_size", None)
    side = math.isqrt(config.codebook_size)
    if not p or side * side != config.codebook_size or side % p or config.projector not in ("vqbridge", "none"):
        return None
    if config.projector == "none" and not config.folded:
        return None
    slots = slot_indices(torch.nonzero(counts > 0).flatten(), side, p)
    return int(slots.unique().numel()), p * p


def level_names(config) -> list[str] | None:
    """The levels of a multi-code tokenizer as logs and cards name them (``depth 1``…, ``scale 4x4``…), None for
    a tokenizer with one code per position."""
    quantizer = config.get("quantizer")
    if quantizer == "residual":
        return [f"depth {i + 1}" for i in range(config.rq_depth)]
    if quantizer == "multiscale":
        return [f"scale {pn}x{pn}" for pn in config.scales]
    return None


def level_usage(counts: torch.Tensor, config) -> list[dict]:
    """Per-level usage of a (levels, K) histogram (``LevelUsage.global_counts``): one dict per depth or scale with
    its name, usage, used codes, perplexity, the codes chosen (tokens) and its live bridge slots when it has any."""
    levels = []
    for name, row in zip(level_names(config), counts, strict=True):
        stats = UsageStats.from_counts(row)
        level = {
            "level": name,
            "usage": stats.usage,
            "used_codes": stats.used_codes,
            "perplexity": stats.perplexity,
            "tokens": stats.total,
        }
        slots = live_slots(row, config)
        if slots is not None:
            level["live_slots"], level["slots"] = slots
        levels.append(level)
    return levels


def _check_matches(protocol: EvaluationProtocol, lpips, fid) -> None:
    """Refuse metric models that are not the protocol's, so a number never carries the wrong protocol's name."""
    net = getattr(lpips, "net", None)
    if lpips is not None and net is not None and net != protocol.lpips_net:
        raise ValueError(
            f"the {protocol.name} protocol measures LPIPS with {protocol.lpips_net!r}, got an LPIPS on {net!r}"
        )
    preprocessing = getattr(getattr(fid, "inception", None), "preprocessing", None)
    if fid is not None and preprocessing is not None and preprocessing != protocol.inception:
        raise ValueError(
            f"the {protocol.name} protocol computes rFID with {protocol.inception!r} Inception preprocessing, "
            f"got {preprocessing!r} (InceptionV3Features(preprocessing=...))"
        )


@torch.no_grad()
def evaluate_tokenizer(
    model,
    dataloader,
    lpips: torch.nn.Module | None = None,
    fid=None,
    protocol: str | EvaluationProtocol = "",
    max_batches: int | None = None,
    keep_first: int = 0,
    reconstruct_images: int | None = None,
) -> tuple[EvaluationResult, torch.Tensor | None]:
    """Run ``model`` (an ``FVQModel`` or ``MultiCodeFVQModel``, possibly wrapped) over ``dataloader`` and measure it
    under ``protocol``. A multi-code model's usage counts every level's codes together (a code is used if any depth
    or scale chose it) and ``extra["levels"]`` holds each level's own (``level_usage``).

    Args:
        model: the tokenizer.
        dataloader: batches with ``"pixel_values"`` in [-1, 1]: from ``collate_images`` for ``fast``, from
            ``collate_protocol_images`` (which adds the stored ``"reference"`` images) for ``fvq`` / ``adm``.
        lpips: an ``fvq_hf.losses.LPIPS`` on the protocol's network (AlexNet for ``fvq`` / ``adm``, VGG16 for
            ``fast``), or None.
        fid: a torchmetrics ``FrechetInceptionDistance`` whose feature model is an ``InceptionV3Features`` with
            the protocol's preprocessing, or None.
        protocol: an ``EvaluationProtocol``, or ``"fvq"`` / ``"adm"`` / ``"fast"``; any other string is the
            description of a ``fast`` evaluation (what training passes).
        max_batches: stop after this many batches per process.
        keep_first: also return up to that many (original, reconstruction) pairs from this process, stacked as
            (2, N, 3, H, W), for a reconstruction grid.
        reconstruct_images: decode and compare only the first N images of this process (PSNR, SSIM, LPIPS, rFID,
            ``images``); every image still counts towards usage and perplexity (``extra["usage_images"]``). Usage
            needs many tokens per code, the pixel metrics far fewer, and decoding is most of the cost. None: all.
    """
    free_text = isinstance(protocol, str) and protocol not in PROTOCOLS
    spec = PROTOCOLS["fast"] if free_text else get_protocol(protocol)
    _check_matches(spec, lpips, fid)
    unwrapped = getattr(model, "module", model)
    was_training = unwrapped.training
    unwrapped.eval()
    device = next(unwrapped.parameters()).device
    names = level_names(unwrapped.config)
    if names is None:
        usage = CodebookUsage(unwrapped.config.codebook_size, device=device)
    else:  # the quantizer splits a batch's indices into its depths or scales
        usage = LevelUsage(unwrapped.config.codebook_size, len(names), device=device)

    def count(indices):
        usage.update(indices if names is None else unwrapped.quantize.level_indices(indices))

    # images compared, psnr, ssim, lpips, ssim with the true range, images counted towards usage
    sums = torch.zeros(6, dtype=torch.float64, device=device)
    kept: list[torch.Tensor] = []
    resolution = None
    for step, batch in enumerate(dataloader):
        if max_batches is not None and step >= max_batches:
            break
        images = batch["pixel_values"].to(device)
        if images.numel() == 0:
            continue
        resolution = images.shape[-1]
        sums[5] += images.shape[0]
        compared = images.shape[0]
        if reconstruct_images is not None:
            compared = max(0, min(compared, reconstruct_images - int(sums[0])))
        if compared < images.shape[0]:  # past the limit: tokens only
            count(unwrapped.encode_indices(images[compared:]))
            if compared == 0:
                continue
            images = images[:compared]
            batch = {key: value[:compared] if torch.is_tensor(value) else value for key, value in batch.items()}
        out = unwrapped(images)
        reconstruction = out.sample.float().clamp(-1, 1)
        count(out.indices)
        sums[0] += images.shape[0]
        if spec.in_memory:
            target = images.float()
            sums[1] += psnr(reconstruction, target).sum().double()
            # torchmetrics' SSIM (reflect-padded borders included in the mean), data range 2: [-1, 1] spans 2
            value = structural_similarity_index_measure(reconstruction, target, data_range=2.0, reduction="none")
            value = value.sum().double()
            sums[2] += value
            sums[4] += value
            if lpips is not None:
                sums[3] += lpips(reconstruction, target).sum().double()
            real = quantize(target)
            fake = quantize(reconstruction)
        else:
            # the reference code compares uint8 images in memory, mapped to [0, 1]; only rFID reads files
            real = quantize(images, "round")  # the input crop's own uint8 values
            fake = quantize(reconstruction, spec.quantize)
            a, b = real.float() / 255, fake.float() / 255
            sums[1] += (psnr_y(b, a) if spec.psnr == "y" else psnr(b * 2 - 1, a * 2 - 1)).sum().double()
            sums[2] += ssim(b, a, data_range=spec.ssim_data_range, window=spec.ssim_window).sum().double()
            sums[4] += ssim(b, a, data_range=1.0, window=spec.ssim_window).sum().double()
            if lpips is not None:
                sums[3] += lpips(b * 2 - 1, a * 2 - 1).sum().double()
            if fid is not None:
                real = (
                    batch["reference"].to(device)
                    if "reference" in batch
                    else round_trip_batch(real, spec.file_format, spec.jpeg_quality)
                )
                fake = round_trip_batch(fake, spec.file_format, spec.jpeg_quality)
        if fid is not None:
            fid.update(real, real=True)
            fid.update(fake, real=False)
        if len(kept) * images.shape[0] < keep_first:
            kept.append(torch.stack([images.float(), reconstruction]).cpu())
    counts = usage.global_counts()
    per_level = None
    if names is not None:
        per_level = level_usage(counts, unwrapped.config)
        counts = counts.sum(0)
    stats = UsageStats.from_counts(counts)
    sums = all_reduce_sum(sums)
    n = max(float(sums[0]), 1.0)
    description = protocol if free_text else spec.describe(resolution or unwrapped.config.sample_size)
    result = EvaluationResult(
        usage=stats.usage,
        perplexity=stats.perplexity,
        used_codes=stats.used_codes,
        psnr=float(sums[1]) / n,
        ssim=float(sums[2]) / n,
        lpips=float(sums[3]) / n if lpips is not None else None,
        rfid=float(fid.compute()) if fid is not None else None,
        images=int(sums[0]),
        protocol=description,
        ssim_correct_range=float(sums[4]) / n,
        protocol_name=spec.name,
        protocol_details=spec.as_dict(),
        lpips_net=getattr(lpips, "net", spec.lpips_net) if lpips is not None else None,
    )
    result.extra["usage_images"] = int(sums[5])
    slots = live_slots(counts, unwrapped.config)
    if slots is not None:
        result.extra["live_slots"], result.extra["slots"] = slots
    if per_level is not None:
        result.extra["levels"] = per_level
    unwrapped.train(was_training)
    pairs = torch.cat(kept, dim=1)[:, :keep_first] if kept else None
    return result, pairs
