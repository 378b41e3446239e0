"""VAR's multi-scale residual quantizer over one shared, projected codebook: FVQ's VAR variant (arXiv 2509.10140,
Sec. 4.4, Table 4; VAR, arXiv 2404.02905, Sec. 3.2 and Algorithms 1–2).

A feature map f (B, d, n, n) becomes a pyramid of token maps, from 1 × 1 up to n × n. At each scale pn the residual
(what the previous scales have not explained yet) is area-downsampled to pn × pn and quantised against the lookup
codebook Ĉ = projector(C); the chosen codes are bicubic-upsampled back to n × n and passed through a residual
convolution φ(h) = (1 − r)·h + r·conv3×3(h) before they are added to the reconstruction f̂ and taken off the
residual. The last scale is n itself, so it is neither down- nor upsampled. Ten scales share four φ.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .projectors import resolve_projector
from .search import DEFAULT_CHUNK_SIZE, nearest_code
from .vector_quantizer import VectorQuantizer

VAR_SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
# VAR's scale → φ table for its 10 scales and 4 φ. VAR picks the φ whose "tick" (4 points evenly spread over
# [1/12, 11/12]) is nearest to si / 9; scales 2 and 7 sit exactly halfway between two ticks, and which one wins is
# decided by float rounding (exact arithmetic picks the other), so the table is written out.
VAR_PHI_TABLE = (0, 0, 1, 1, 1, 2, 2, 3, 3, 3)


def phi_table(num_scales: int, num_phi: int) -> tuple[int, ...]:
    """Which of ``num_phi`` shared φ each of ``num_scales`` scales uses: VAR's nearest-tick rule, in float64 as
    VAR computes it (``VAR_PHI_TABLE`` for its 10 scales and 4 φ)."""
    if num_scales == len(VAR_PHI_TABLE) and num_phi == 4:
        return VAR_PHI_TABLE
    margin = 1 / 3 / num_phi if num_phi == 4 else 1 / 2 / num_phi
    ticks = np.linspace(margin, 1 - margin, num_phi)
    return tuple(int(np.argmin(np.abs(ticks - si / (num_scales - 1)))) for si in range(num_scales))


class ResidualPhi(nn.Conv2d):
    """φ(h) = (1 − r)·h + r·conv3×3(h): VAR's residual convolution after each scale's upsampled codes."""

    def __init__(self, dim: int, ratio: float = 0.5):
        super().__init__(dim, dim, kernel_size=3, stride=1, padding=1)
        self.ratio = ratio

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mul(1 - self.ratio) + super().forward(h).mul(self.ratio)


class MultiScaleQuantizer(VectorQuantizer):
    r"""
    VAR's multi-scale residual quantizer with one codebook shared by every scale, looked up through a projector.

    ``quantized, indices, loss = msq(f)``: ``f`` is a channels-first feature map (B, d, n, n) with n the last scale.
    ``indices`` is a list with one (B, pn, pn) index map per scale, coarse to fine; ``flatten_indices`` turns it into
    the (B, Σ pn²) token sequence of VAR's transformer (680 tokens for the default scales) and ``unflatten_indices``
    back. ``quantized`` holds f̂, the sum over scales of φ(upsampled codes), and passes gradients straight through
    to ``f``. With f̂_s the sum over the first s + 1 scales, ``loss`` is ``mean_s mean((f̂_s − sg(f))²)`` (its
    gradient reaches the φ convolutions and, through the projector, the raw codebook) plus
    ``β · mean_s mean((sg(f̂_s) − f)²)``, as in the official FVQ VAR tokenizer; ``return_loss_breakdown=True``
    returns the two apart.

    ``indices_to_features(indices)`` decodes the indices back to f̂ (the values of ``quantized``); given only the
    first k scales (or ``num_levels=k``) it returns f̂ after k scales, and ``coarse_to_fine(indices)`` returns f̂
    after every scale, all at the full n × n size (decoding these gives VAR's coarse-to-fine pictures).

    The official FVQ VAR code searches and decodes in two ways: its training forward (which its evaluation also
    calls) looks codes up in the bridged codebook, while its ``img_to_idxBl`` / ``idxBl_to_img`` use the raw
    embedding. This class always uses the bridged codebook, as the forward does, so the indices it gives decode
    to the features the tokenizer was trained on. (Once folded, the two coincide.)

    Parameters:
        codebook_size (`int`): Number of codes K.
        codebook_dim (`int`): Code dimension d.
        scales (`Sequence[int]`, defaults to `(1, 2, 3, 4, 5, 6, 8, 10, 13, 16)`): Side pn of each scale's token
            map, strictly increasing; the last is the side of the feature map. The default is VAR's (680 tokens
            for a 16 × 16 map).
        projector (`nn.Module` or `str`, *optional*, defaults to `"vqbridge"`): Maps the raw codebook (K, d) to
            the lookup codebook (K, d): a module, a name of ``PROJECTOR_TYPES`` built with ``build_projector``, or
            ``None`` / ``"none"`` for the raw codebook (VAR's own quantizer).
        bridge_preset (`str`, defaults to `"L/4"`): The VQBridge preset when ``projector`` is ``"vqbridge"``.
        num_phi (`int`, defaults to 4): Number of φ convolutions shared over the scales (VAR's
            ``share_quant_resi``); scale s uses φ number ``phi_table(len(scales), num_phi)[s]``.
        phi_ratio (`float`, defaults to 0.5): r in φ(h) = (1 − r)·h + r·conv(h) (VAR's ``quant_resi``), in (0, 1].
        beta (`float`, defaults to 0.25): Commitment weight β.
        chunk_size (`int`, defaults to 2**24): Most distances held at once by the nearest-code search; bounds
            its memory without changing its result.
        codebook_init_std (`float`, *optional*, defaults to 1.0): Initialise the raw codebook N(0, std²). VAR's
            quantizer (and FVQ's VAR tokenizer) leave ``nn.Embedding``'s own N(0, 1) init; ``None`` gives the
            uniform(−1/K, 1/K) of FVQ's single-code and RQ tokenizers.
        cosine_search (`bool`, defaults to False): Choose each scale's codes by cosine similarity between the
            residual and the codes (VAR's ``using_znorm``) instead of L2 distance; only the search changes, the
            chosen codes enter f̂ and the losses unnormalised. With L2 the codebook must match each scale's residual
            norm, which shrinks from coarse to fine; on small data the projected codebook drifts away from those
            norms and most codes are never nearest (the README's multi-code section has the measurements).
    """

    def __init__(
        self,
        codebook_size: int,
        codebook_dim: int,
        scales: Sequence[int] = VAR_SCALES,
        projector: nn.Module | str | None = "vqbridge",
        bridge_preset: str = "L/4",
        num_phi: int = 4,
        phi_ratio: float = 0.5,
        beta: float = 0.25,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        codebook_init_std: float | None = 1.0,
        cosine_search: bool = False,
    ):
        scales = tuple(scales)
        if (
            len(scales) < 2
            or not all(isinstance(pn, int) and not isinstance(pn, bool) and pn >= 1 for pn in scales)
            or any(a >= b for a, b in pairwise(scales))
        ):
            raise ValueError(
                f"scales must be at least two strictly increasing positive integers ending at the feature map's "
                f"side, e.g. {VAR_SCALES}; got {scales} (a single scale is a plain VectorQuantizer)"
            )
        if not isinstance(num_phi, int) or num_phi < 1:
            raise ValueError(f"num_phi must be a positive integer (VAR shares 4 over its scales), got {num_phi!r}")
        if not 0 < phi_ratio <= 1:
            raise ValueError(f"phi_ratio must lie in (0, 1] (VAR's quant_resi is 0.5), got {phi_ratio}")
        super().__init__(
            codebook_size,
            codebook_dim,
            projector=resolve_projector(projector, codebook_size, codebook_dim, bridge_preset),
            beta=beta,
            chunk_size=chunk_size,
            codebook_init_std=codebook_init_std,
        )
        self.scales = scales
        self.cosine_search = bool(cosine_search)
        self.phi = nn.ModuleList(ResidualPhi(codebook_dim, phi_ratio) for _ in range(num_phi))
        self.phi_index = phi_table(len(scales), num_phi)

    @property
    def num_levels(self) -> int:
        """Number of scales."""
        return len(self.scales)

    @property
    def num_tokens(self) -> int:
        """Tokens of the flat sequence, Σ pn² (680 for VAR's scales)."""
        return sum(pn * pn for pn in self.scales)

    def _to_full_size(self, codes: torch.Tensor, si: int) -> torch.Tensor:
        """(B, d, pn, pn) codes of scale ``si`` → their contribution φ(upsampled codes) at the full size."""
        side = self.scales[-1]
        if si != len(self.scales) - 1:
            codes = F.interpolate(codes, size=(side, side), mode="bicubic")
        return self.phi[self.phi_index[si]](codes)

    def forward(self, f: torch.Tensor, return_loss_breakdown: bool = False):
        side = self.scales[-1]
        if f.ndim != 4 or f.shape[1] != self.codebook_dim or f.shape[2:] != (side, side):
            raise ValueError(
                f"the multi-scale quantizer expects a channels-first ({self.codebook_dim}, {side}, {side}) feature "
                f"map (the last scale is its side), got a tensor of shape {tuple(f.shape)}"
            )
        b, d = f.shape[:2]
        # VAR (and the official FVQ VAR tokenizer) run the whole quantizer, the bridge included, in fp32
        with torch.autocast(device_type=f.device.type, enabled=False):
            codebook = self.get_codebook().float()
            # nearest by L2 among unit vectors is nearest by cosine
            search_codebook = F.normalize(codebook.detach(), dim=1) if self.cosine_search else codebook.detach()
            target = f.float()
            residual = target.detach()
            f_hat = torch.zeros_like(residual)
            indices, codebook_terms, commitment_terms = [], [], []
            for si, pn in enumerate(self.scales):
                rest = residual if si == len(self.scales) - 1 else F.interpolate(residual, size=(pn, pn), mode="area")
                rest = rest.permute(0, 2, 3, 1).reshape(-1, d)
                if self.cosine_search:
                    rest = F.normalize(rest, dim=1)
                idx = nearest_code(rest, search_codebook, self.chunk_size)
                codes = F.embedding(idx, codebook).view(b, pn, pn, d).permute(0, 3, 1, 2).contiguous()
                h = self._to_full_size(codes, si)
                f_hat = f_hat + h
                residual = residual - h.detach()
                indices.append(idx.view(b, pn, pn))
                codebook_terms.append(F.mse_loss(f_hat, target.detach()))
                commitment_terms.append(F.mse_loss(f_hat.detach(), target))
            codebook_loss = torch.stack(codebook_terms).mean()
            commitment_loss = self.beta * torch.stack(commitment_terms).mean()
        quantized = (f_hat.detach() - f.detach()).to(f.dtype) + f
        if return_loss_breakdown:
            return quantized, indices, (codebook_loss, commitment_loss)
        return quantized, indices, codebook_loss + commitment_loss

    def level_indices(self, indices: Sequence[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
        """The index map of each scale (a flat token sequence is split first): what per-scale usage counts."""
        return self.unflatten_indices(indices) if torch.is_tensor(indices) else list(indices)

    def flatten_indices(self, indices: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-scale index maps (B, pn, pn) → VAR's token sequence (B, Σ pn²): scale by scale, each row-major."""
        maps = self._check_maps(indices)
        return torch.cat([m.reshape(m.shape[0], -1) for m in maps], dim=1)

    def unflatten_indices(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """VAR's token sequence (B, L) → per-scale index maps; L may cover only the first k scales."""
        if tokens.ndim != 2:
            raise ValueError(f"a token sequence must be (B, L), got a tensor of shape {tuple(tokens.shape)}")
        ends = np.cumsum([pn * pn for pn in self.scales]).tolist()
        if tokens.shape[1] not in ends:
            raise ValueError(
                f"a token sequence must cover whole scales: its length must be one of {ends} for scales "
                f"{self.scales}, got {tokens.shape[1]}"
            )
        maps, start = [], 0
        for pn in self.scales[: ends.index(tokens.shape[1]) + 1]:
            maps.append(tokens[:, start : start + pn * pn].reshape(-1, pn, pn))
            start += pn * pn
        return maps

    def _check_maps(self, indices: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        maps = list(indices)
        if not 1 <= len(maps) <= len(self.scales):
            raise ValueError(f"expected index maps for 1 to {len(self.scales)} scales, got {len(maps)}")
        for m, pn in zip(maps, self.scales):
            if not torch.is_tensor(m) or m.ndim != 3 or m.shape[1:] != (pn, pn):
                shape = tuple(m.shape) if torch.is_tensor(m) else type(m).__name__
                raise ValueError(
                    f"the index maps must be (B, pn, pn) for scales {self.scales} in order, got {shape} where "
                    f"({pn}, {pn}) was expected"
                )
        if len({m.shape[0] for m in maps}) != 1:
            raise ValueError(f"the index maps have different batch sizes: {[m.shape[0] for m in maps]}")
        for m in maps:
            if m.dtype.is_floating_point or m.dtype == torch.bool:
                raise TypeError(f"indices must be integer tensors, got {m.dtype}")
            if m.numel() and (m.min() < 0 or m.max() >= self.codebook_size):
                raise ValueError(
                    f"indices must lie in [0, {self.codebook_size}), got values from {int(m.min())} to {int(m.max())}"
                )
        return maps

    def coarse_to_fine(self, indices: Sequence[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
        """f̂ after each scale, every one at the full (B, d, n, n) size.

        Args:
            indices: the per-scale index maps of the first k scales (a list of (B, pn, pn)), or VAR's flat token
                sequence (B, L) covering them.

        Returns:
            A list of k feature maps; the one after the last scale equals the forward pass's ``quantized``.
        """
        maps = self._check_maps(self.level_indices(indices))
        with torch.autocast(device_type=maps[0].device.type, enabled=False):  # in fp32, as the forward pass
            codebook = self.get_codebook().float()
            f_hat, out = None, []
            for si, m in enumerate(maps):
                codes = F.embedding(m.long(), codebook).permute(0, 3, 1, 2).contiguous()
                h = self._to_full_size(codes, si)
                f_hat = h if f_hat is None else f_hat + h
                out.append(f_hat)
        return out

    def indices_to_features(
        self, indices: Sequence[torch.Tensor] | torch.Tensor, num_levels: int | None = None
    ) -> torch.Tensor:
        """Decode indices to f̂ (B, d, n, n), from the first ``num_levels`` scales (``None``: all given).

        Args:
            indices: per-scale index maps (a list of (B, pn, pn), coarse to fine, possibly only the first k) or
                VAR's flat token sequence (B, L).
            num_levels: how many scales to use, from the first; at most the number given.
        """
        maps = self._check_maps(self.level_indices(indices))
        if num_levels is not None and not 1 <= num_levels <= len(maps):
            raise ValueError(
                f"num_levels must lie in [1, {len(maps)}] for indices of {len(maps)} scales, got {num_levels}"
            )
        return self.coarse_to_fine(maps[:num_levels])[-1]
