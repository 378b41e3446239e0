"""The residual quantizer (RQ-VAE) over one shared, projected codebook: FVQ's multi-code variant (arXiv 2509.10140,
Sec. 4.4, Table 4).

Every position is quantised ``depth`` times against the same lookup codebook Ĉ = projector(C): depth 0 takes the
nearest code to z, each later depth the nearest code to what is left, r_i = z − (ĉ_0 + … + ĉ_{i−1}). The quantized
vector is the sum of the chosen codes. FVQ's RQ-VAE keeps RQ-VAE's losses: the codebook and commitment terms of
the running sum after each depth, averaged over the depths, so the coarse depths learn to stand on their own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .projectors import resolve_projector
from .search import DEFAULT_CHUNK_SIZE, nearest_code
from .vector_quantizer import VectorQuantizer


class ResidualQuantizer(VectorQuantizer):
    r"""
    Residual quantisation (RQ-VAE) with one codebook shared by every depth, looked up through a projector.

    ``quantized, indices, loss = rq(z)``: ``z`` is a channels-first feature map (B, d, H, W), giving indices
    (B, H, W, depth), or any (..., d) tensor, giving indices (..., depth). ``quantized`` has the shape of ``z``,
    holds the sum of the ``depth`` chosen codes and passes gradients straight through to ``z``. With â_i the sum of
    the codes of depths 0 … i, ``loss`` is ``mean_i mean((â_i − sg(z))²)`` (the codebook term, whose gradient
    reaches the raw codebook through the projector) plus ``β · mean_i mean((sg(â_i) − z)²)`` (commitment), as in
    the official FVQ RQ-VAE; ``rq(z, return_loss_breakdown=True)`` returns the two apart.

    ``indices_to_features(indices)`` decodes indices back to the quantized features (the values of ``quantized``);
    ``indices_to_features(indices, num_levels=k)`` and ``coarse_to_fine(indices)`` use the first k depths only.

    Parameters:
        codebook_size (`int`): Number of codes K.
        codebook_dim (`int`): Code dimension d.
        depth (`int`, defaults to 4): Number of codes per position D (the official FVQ RQ-VAE's ``rq_layer_num``).
        projector (`nn.Module` or `str`, *optional*, defaults to `"vqbridge"`): Maps the raw codebook (K, d) to
            the lookup codebook (K, d). A module is used as is; a name of ``PROJECTOR_TYPES`` (``"vqbridge"``,
            ``"linear"``, ``"mlp"``, ``"none"``) is built with ``build_projector``; ``None`` or ``"none"`` looks
            up the raw codebook (a plain RQ-VAE codebook).
        bridge_preset (`str`, defaults to `"L/4"`): The VQBridge preset when ``projector`` is ``"vqbridge"``.
        beta (`float`, defaults to 0.25): Commitment weight β.
        chunk_size (`int`, defaults to 2**24): Most distances held at once by the nearest-code search; bounds
            its memory without changing its result.
        codebook_init_std (`float`, *optional*): Initialise the raw codebook N(0, std²); ``None`` is the official
            uniform(−1/K, 1/K). See ``VectorQuantizer``.
        codebook_init_l2 (`bool`, defaults to False): Normalise the raw codebook's rows once at init (the official
            ``codebook_l2_norm``); the lookup stays plain L2.
    """

    def __init__(
        self,
        codebook_size: int,
        codebook_dim: int,
        depth: int = 4,
        projector: nn.Module | str | None = "vqbridge",
        bridge_preset: str = "L/4",
        beta: float = 0.25,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        codebook_init_std: float | None = None,
        codebook_init_l2: bool = False,
    ):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"ResidualQuantizer(depth={depth!r}): the depth must be a positive integer, e.g. 4")
        super().__init__(
            codebook_size,
            codebook_dim,
            projector=resolve_projector(projector, codebook_size, codebook_dim, bridge_preset),
            beta=beta,
            chunk_size=chunk_size,
            codebook_init_std=codebook_init_std,
            codebook_init_l2=codebook_init_l2,
        )
        self.depth = depth

    @property
    def num_levels(self) -> int:
        """Codes per position (the depth)."""
        return self.depth

    def forward(self, z: torch.Tensor, return_loss_breakdown: bool = False):
        flat, index_shape = self._flatten(z)
        codebook = self.get_codebook()
        with torch.autocast(device_type=flat.device.type, enabled=False):
            target = flat.float()
            residual = target.detach()
            running_sum = torch.zeros_like(target)
            sums, codes = [], []
            for _ in range(self.depth):
                indices = nearest_code(residual, codebook.detach(), self.chunk_size)
                chosen = F.embedding(indices, codebook).float()
                residual = residual - chosen.detach()
                running_sum = running_sum + chosen
                sums.append(running_sum)
                codes.append(indices)
            codebook_loss = torch.stack([F.mse_loss(s, target.detach()) for s in sums]).mean()
            commitment_loss = self.beta * torch.stack([F.mse_loss(target, s.detach()) for s in sums]).mean()
        quantized = flat + (running_sum.to(flat.dtype) - flat).detach()
        quantized = self._unflatten(quantized, z, index_shape)
        indices = torch.stack(codes, dim=-1).view(*index_shape, self.depth)
        if return_loss_breakdown:
            return quantized, indices, (codebook_loss, commitment_loss)
        return quantized, indices, codebook_loss + commitment_loss

    def level_indices(self, indices: torch.Tensor) -> list[torch.Tensor]:
        """The indices of each depth, ``indices[..., i]``: what per-depth usage counts."""
        return list(indices.unbind(-1))

    def _check_indices(self, indices: torch.Tensor, num_levels: int | None) -> int:
        if indices.dtype.is_floating_point or indices.dtype == torch.bool:
            raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
        given = indices.shape[-1] if indices.ndim else 0
        if indices.ndim < 2 or not 1 <= given <= self.depth:
            raise ValueError(
                f"indices must have the depths last, (B, H, W, D) with 1 <= D <= {self.depth}, "
                f"got a tensor of shape {tuple(indices.shape)}"
            )
        if num_levels is None:
            return given
        if not 1 <= num_levels <= given:
            raise ValueError(f"num_levels must lie in [1, {given}] for indices of {given} depths, got {num_levels}")
        return num_levels

    def coarse_to_fine(self, indices: torch.Tensor, channels_first: bool = True) -> list[torch.Tensor]:
        """The quantized features after each depth: the running sums of the codes of depths 0 … i.

        Args:
            indices: (B, H, W, D) (or (..., D)) code indices, D up to ``depth`` (the first D depths).
            channels_first: return (B, d, H, W) for 4-D indices; otherwise (..., d).

        Returns:
            A list of D tensors; the last equals the forward pass's ``quantized`` for the full depth.
        """
        levels = self._check_indices(indices, None)
        codes = self.indices_to_codes(indices)  # range check; (..., D, d)
        running_sum = torch.zeros_like(codes[..., 0, :])
        sums = []
        for i in range(levels):
            running_sum = running_sum + codes[..., i, :]
            out = running_sum
            if channels_first and indices.ndim == 4:
                out = out.permute(0, 3, 1, 2).contiguous()
            sums.append(out)
        return sums

    def indices_to_features(
        self, indices: torch.Tensor, num_levels: int | None = None, channels_first: bool = True
    ) -> torch.Tensor:
        """Decode indices to quantized features: the sum of the codes of the first ``num_levels`` depths.

        Args:
            indices: (B, H, W, D) (or (..., D)) code indices, D up to ``depth``.
            num_levels: how many depths to use, from the first; ``None`` uses all D given.
            channels_first: return (B, d, H, W) for 4-D indices; otherwise (..., d).
        """
        levels = self._check_indices(indices, num_levels)
        return self.coarse_to_fine(indices[..., :levels], channels_first=channels_first)[-1]
