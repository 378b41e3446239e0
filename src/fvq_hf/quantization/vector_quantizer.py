"""The vector quantizer: nearest code over the projected codebook, straight-through, VQ losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .search import DEFAULT_CHUNK_SIZE, nearest_code


class VectorQuantizer(nn.Module):
    r"""
    Quantise vectors to the nearest code of a (projected) codebook.

    ``quantized, indices, loss = vq(z)``: ``z`` is either a channels-first feature map (B, d, H, W), giving
    indices (B, H, W), or any (..., d) tensor, giving indices (...). ``quantized`` has the shape of ``z`` and
    passes gradients straight through to ``z``. ``loss`` is the codebook term ``mean((ẑ − sg(z))²)``, whose
    gradient reaches the raw codebook through the projector, plus the commitment term
    ``β · mean((sg(ẑ) − z)²)``; ``vq(z, return_loss_breakdown=True)`` returns the two apart.

    Parameters:
        codebook_size (`int`): Number of codes K.
        codebook_dim (`int`): Code dimension d.
        projector (`nn.Module`, *optional*): Maps the raw codebook (K, d) to the lookup codebook (K, d), e.g. a
            ``VQBridge``; ``None`` looks up the raw codebook directly (a plain VQGAN codebook).
        beta (`float`, defaults to 0.25): Commitment weight β.
        l2_normalize (`bool`, defaults to False): LlamaGen's ``codebook_l2_norm``: normalise the vectors and the
            lookup codebook to unit length at every lookup (cosine distance), as LlamaGen's released tokenizer does.
        codebook_init_l2 (`bool`, defaults to False): FVQ's ``codebook_l2_norm``: normalise the rows of the raw
            codebook to unit length once, at init, after ``codebook_init_std``'s draw. Nothing is normalised
            afterwards: the lookup stays plain L2 over the projected codebook. The official FVQ model files give
            ``codebook_l2_norm`` this meaning, LlamaGen's the one of ``l2_normalize``.
        chunk_size (`int`, defaults to 2**24): Most distances held at once by the nearest-code search; bounds
            its memory without changing its result.
        codebook_init_std (`float`, *optional*): Initialise the raw codebook N(0, std²). ``None`` is the paper's
            (and VQGAN's) uniform(−1/K, 1/K). Behind a projector the raw codebook is the projector's *input*: at
            ±1/K (std 3.5e-5 at K = 16,384) the patch embeddings of a VQBridge L/4 have a variance of 2.3e-9,
            430 times below its LayerNorm eps (1e-6), so every bridge token looks alike and the codes of a slot
            start bunched together. An embedding-table scale such as 0.02 lets the bridge see its input from step 0.
    """

    def __init__(
        self,
        codebook_size: int,
        codebook_dim: int,
        projector: nn.Module | None = None,
        beta: float = 0.25,
        l2_normalize: bool = False,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        codebook_init_std: float | None = None,
        codebook_init_l2: bool = False,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.beta = beta
        self.l2_normalize = l2_normalize
        self.codebook_init_l2 = codebook_init_l2
        self.chunk_size = chunk_size
        self.embedding = nn.Embedding(codebook_size, codebook_dim)
        if codebook_init_std is None:
            nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        elif codebook_init_std > 0:
            nn.init.normal_(self.embedding.weight, std=codebook_init_std)
        else:
            raise ValueError(
                f"codebook_init_std must be positive or None (the paper's uniform ±1/K), got {codebook_init_std}"
            )
        if codebook_init_l2:
            with torch.no_grad():
                self.embedding.weight.copy_(F.normalize(self.embedding.weight, dim=-1))
        self.projector = projector

    def get_codebook(self) -> torch.Tensor:
        """The codebook the lookup uses, Ĉ = projector(C) (normalised when ``l2_normalize``), with gradients."""
        codebook = self.embedding.weight
        if self.projector is not None:
            codebook = self.projector(codebook)
        if self.l2_normalize:
            codebook = F.normalize(codebook, dim=-1)
        return codebook

    def _flatten(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        if z.shape[-3 if z.ndim == 4 else -1] != self.codebook_dim:
            raise ValueError(
                f"the quantizer expects {self.codebook_dim}-dimensional vectors (channels-first for 4-D input), "
                f"got a tensor of shape {tuple(z.shape)}"
            )
        if z.ndim == 4:
            z = z.permute(0, 2, 3, 1)
        return z.reshape(-1, self.codebook_dim), z.shape[:-1]

    def forward(self, z: torch.Tensor, return_loss_breakdown: bool = False):
        flat, index_shape = self._flatten(z)
        if self.l2_normalize:
            flat = F.normalize(flat, dim=-1)
        codebook = self.get_codebook()
        indices = nearest_code(flat.detach(), codebook.detach(), self.chunk_size)
        chosen = F.embedding(indices, codebook)
        codebook_loss = F.mse_loss(chosen.float(), flat.detach().float())
        commitment_loss = self.beta * F.mse_loss(flat.float(), chosen.detach().float())
        quantized = flat + (chosen - flat).detach()
        quantized = self._unflatten(quantized, z, index_shape)
        indices = indices.view(index_shape)
        if return_loss_breakdown:
            return quantized, indices, (codebook_loss, commitment_loss)
        return quantized, indices, codebook_loss + commitment_loss

    def _unflatten(self, flat: torch.Tensor, like: torch.Tensor, index_shape: torch.Size) -> torch.Tensor:
        out = flat.reshape(*index_shape, self.codebook_dim)
        return out.permute(0, 3, 1, 2).contiguous() if like.ndim == 4 else out

    def indices_to_codes(self, indices: torch.Tensor, channels_first: bool = True) -> torch.Tensor:
        """Look codes up: indices (B, H, W) give (B, d, H, W) with ``channels_first``, else (..., d)."""
        if indices.dtype.is_floating_point or indices.dtype == torch.bool:
            raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codebook_size):
            raise ValueError(
                f"indices must lie in [0, {self.codebook_size}), "
                f"got values from {int(indices.min())} to {int(indices.max())}"
            )
        codes = F.embedding(indices.long(), self.get_codebook())
        if channels_first and indices.ndim == 3:
            codes = codes.permute(0, 3, 1, 2).contiguous()
        return codes
