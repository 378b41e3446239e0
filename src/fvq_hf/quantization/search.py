"""Memory-bounded nearest-code search.

The obvious search builds the full N × K distance matrix: 4,096 tokens against 262,144 codes is 4 GiB in
fp32, plus temporaries. Here the codes (and, when needed, the tokens) are taken in blocks and a running
minimum is kept, so the extra memory is set by ``chunk_size`` alone while the indices are the same as the
full computation's, ties included (the first of equally near codes wins in both).
"""

from __future__ import annotations

import torch

# 2**24 distances = 64 MiB in fp32: large enough blocks for an efficient matrix multiply.
DEFAULT_CHUNK_SIZE = 2**24
# a code block narrower than this would waste the matrix multiply, so tokens are split first
_MIN_CODE_BLOCK = 1024


def _distance_block(z: torch.Tensor, codebook: torch.Tensor, codebook_sq: torch.Tensor) -> torch.Tensor:
    # ‖c‖² − 2 z·c; ‖z‖² is the same for every code of a row, so it cannot change the argmin
    return torch.addmm(codebook_sq, z, codebook.t(), beta=1.0, alpha=-2.0)


@torch.no_grad()
def nearest_code(
    z: torch.Tensor,
    codebook: torch.Tensor,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    return_distances: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest code (squared L2) for every row of ``z``.

    Args:
        z: (N, d) vectors to quantise.
        codebook: (K, d) codes to choose from.
        chunk_size: the largest number of distances held at once; ``None`` computes the full N × K matrix.
        return_distances: also return the squared distance to the chosen code.

    Returns:
        ``indices`` (N,) int64, and with ``return_distances`` the (N,) fp32 squared distances.

    The arithmetic is done in fp32 whatever the input dtype or autocast state: bf16 distances lose codes.
    """
    if z.ndim != 2 or codebook.ndim != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"expected z (N, d) and codebook (K, d) with the same d, got {tuple(z.shape)} and {tuple(codebook.shape)}"
        )
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float()
        codebook = codebook.float()
        codebook_sq = codebook.pow(2).sum(1)
        n, k = z.shape[0], codebook.shape[0]
        if chunk_size is None or n * k <= chunk_size:
            distances = _distance_block(z, codebook, codebook_sq)
            indices = distances.argmin(1)
            best = distances.gather(1, indices[:, None]).squeeze(1)
        else:
            code_block = min(k, max(_MIN_CODE_BLOCK, chunk_size // max(n, 1)))
            token_block = max(1, chunk_size // code_block)
            indices = torch.empty(n, dtype=torch.long, device=z.device)
            best = torch.empty(n, dtype=torch.float32, device=z.device)
            for t0 in range(0, n, token_block):
                zt = z[t0 : t0 + token_block]
                run_best = run_idx = None
                for c0 in range(0, k, code_block):
                    block = _distance_block(zt, codebook[c0 : c0 + code_block], codebook_sq[c0 : c0 + code_block])
                    idx = block.argmin(1)
                    val = block.gather(1, idx[:, None]).squeeze(1)
                    del block
                    if run_best is None:
                        run_best, run_idx = val, idx
                    else:
                        # strictly smaller: on a tie the earlier block, i.e. the lower index, keeps the place
                        better = val < run_best
                        run_best = torch.where(better, val, run_best)
                        run_idx = torch.where(better, idx + c0, run_idx)
                indices[t0 : t0 + token_block] = run_idx
                best[t0 : t0 + token_block] = run_best
        if not return_distances:
            return indices
        return indices, (best + z.pow(2).sum(1)).clamp_min(0)
