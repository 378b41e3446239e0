"""Exact codebook usage: which codes were chosen at least once, over any number of batches and processes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class UsageStats:
    """Codebook usage over everything seen since the last reset.

    Attributes:
        usage: fraction of the K codes chosen at least once (0–1).
        perplexity: exp of the entropy of the code histogram (K when all codes are equally used).
        used_codes: number of codes chosen at least once.
        codebook_size: K.
        total: number of indices counted.
    """

    usage: float
    perplexity: float
    used_codes: int
    codebook_size: int
    total: int

    @classmethod
    def from_counts(cls, counts: torch.Tensor) -> UsageStats:
        """Statistics of a code histogram (K,)."""
        total = int(counts.sum())
        used = int((counts > 0).sum())
        if total == 0:
            return cls(0.0, 0.0, 0, counts.numel(), 0)
        p = counts[counts > 0].double() / total
        perplexity = math.exp(float(-(p * p.log()).sum()))
        return cls(used / counts.numel(), perplexity, used, counts.numel(), total)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over all processes when running distributed (a collective call), else ``values``."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


class CodebookUsage:
    """A bincount of chosen codes, exact over any number of batches and summed across processes.

    ``update(indices)`` after each batch, ``compute()`` at the end (collective: every process must call it
    when running distributed), ``reset()`` to start over. It is training state, not model weights: it has
    ``state_dict``/``load_state_dict`` so ``accelerator.register_for_checkpointing(usage)`` saves it with
    the optimizer and scheduler, never inside the model's safetensors.
    """

    def __init__(self, codebook_size: int, device: torch.device | str | None = None):
        self.codebook_size = codebook_size
        self.counts = torch.zeros(codebook_size, dtype=torch.long, device=device)

    def update(self, indices: torch.Tensor) -> None:
        flat = indices.detach().reshape(-1).long()
        if flat.numel() == 0:
            return
        if flat.min() < 0 or flat.max() >= self.codebook_size:
            raise ValueError(
                f"code indices must lie in [0, {self.codebook_size}), "
                f"got values from {int(flat.min())} to {int(flat.max())}"
            )
        if self.counts.device != flat.device:
            self.counts = self.counts.to(flat.device)
        self.counts += torch.bincount(flat, minlength=self.codebook_size)

    def reset(self) -> None:
        self.counts.zero_()

    def global_counts(self) -> torch.Tensor:
        """The histogram summed over all processes (a collective call when distributed)."""
        return all_reduce_sum(self.counts)

    def compute(self) -> UsageStats:
        """Usage and perplexity over all processes (a collective call when distributed)."""
        return UsageStats.from_counts(self.global_counts())

    def state_dict(self) -> dict:
        return {"codebook_size": self.codebook_size, "counts": self.counts.cpu()}

    def load_state_dict(self, state: dict) -> None:
        if int(state["codebook_size"]) != self.codebook_size:
            raise ValueError(
                f"usage state is for a codebook of {int(state['codebook_size'])} codes, "
                f"this tracker has {self.codebook_size}"
            )
        self.counts = state["counts"].to(self.counts.device, torch.long).clone()


class LevelUsage:
    """Exact usage of one codebook shared by several levels (the depths of a residual quantizer, the scales of a
    multi-scale one): per level and overall, summed across processes.

    ``update(levels)`` with one index tensor per level (``quantizer.level_indices(indices)``), ``compute()`` at the
    end (collective when distributed), ``reset()`` to start over. The overall histogram is the sum of the levels':
    a code counts as used overall if any level chose it. Training state, not model weights (see ``CodebookUsage``).

    Args:
        codebook_size: K, the codes every level chooses from.
        num_levels: number of levels (depths or scales).
        device: where the counts live (they follow the indices otherwise).
    """

    def __init__(self, codebook_size: int, num_levels: int, device: torch.device | str | None = None):
        if num_levels < 1:
            raise ValueError(f"LevelUsage(num_levels={num_levels}): at least one level")
        self.codebook_size, self.num_levels = codebook_size, num_levels
        self.counts = torch.zeros(num_levels, codebook_size, dtype=torch.long, device=device)

    def update(self, levels) -> None:
        levels = list(levels)
        if len(levels) > self.num_levels:
            raise ValueError(f"got indices for {len(levels)} levels, this tracker has {self.num_levels}")
        for level, indices in enumerate(levels):
            flat = indices.detach().reshape(-1).long()
            if flat.numel() == 0:
                continue
            if flat.min() < 0 or flat.max() >= self.codebook_size:
                raise ValueError(
                    f"code indices must lie in [0, {self.codebook_size}), "
                    f"got values from {int(flat.min())} to {int(flat.max())} at level {level}"
                )
            if self.counts.device != flat.device:
                self.counts = self.counts.to(flat.device)
            self.counts[level] += torch.bincount(flat, minlength=self.codebook_size)

    def reset(self) -> None:
        self.counts.zero_()

    def global_counts(self) -> torch.Tensor:
        """The (levels, K) histograms summed over all processes (one collective call when distributed)."""
        return all_reduce_sum(self.counts)

    def compute(self) -> tuple[UsageStats, list[UsageStats]]:
        """(overall, [per level]) usage and perplexity over all processes (a collective call when distributed)."""
        counts = self.global_counts()
        return UsageStats.from_counts(counts.sum(0)), [UsageStats.from_counts(row) for row in counts]

    def state_dict(self) -> dict:
        return {"codebook_size": self.codebook_size, "counts": self.counts.cpu()}

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["counts"].shape) != (self.num_levels, self.codebook_size):
            raise ValueError(
                f"usage state is for {tuple(state['counts'].shape)} (levels, codes), "
                f"this tracker has {(self.num_levels, self.codebook_size)}"
            )
        self.counts = state["counts"].to(self.counts.device, torch.long).clone()
