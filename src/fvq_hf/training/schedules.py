"""Learning-rate schedules: learning annealing (FVQ, arXiv 2509.10140, Table 6 and Appendix G: warmup from 0.5 %,
30 % constant, then a decay to 1 % of the base rate), its cosine and constant variants, and the generator's (FVQ's
§4.3: constant for 5 % of the steps, then linear to 1 %, no warmup)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("annealing", "cosine", "constant")
GENERATOR_SCHEDULES = ("generator", *SCHEDULES)


def annealing_multiplier(
    step: int,
    total_steps: int,
    warmup_ratio: float = 0.1,
    constant_ratio: float = 0.3,
    final_ratio: float = 0.01,
    warmup_start: float = 0.005,
    decay: str = "linear",
) -> float:
    """The multiplier of the base learning rate at optimizer step ``step`` of ``total_steps``.

    With W = ``warmup_ratio`` · T: for s < W it rises linearly from ``warmup_start`` to 1; after it, with
    u = (s − W) / (T − 1 − W), it stays 1 while u < ``constant_ratio`` and then falls to ``final_ratio`` at the
    last step, linearly (``decay="linear"``, the paper's) or along a half cosine (``"cosine"``); ``"none"``
    keeps it at 1 after warmup.
    """
    warmup = int(warmup_ratio * total_steps)
    if step < warmup:
        return warmup_start + (1.0 - warmup_start) * step / warmup
    if decay == "none":
        return 1.0
    u = (step - warmup) / max(1, total_steps - 1 - warmup)
    if u < constant_ratio:
        return 1.0
    progress = min(1.0, (u - constant_ratio) / (1.0 - constant_ratio))
    if decay == "linear":
        return final_ratio + (1.0 - final_ratio) * (1.0 - progress)
    if decay == "cosine":
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"Unknown decay {decay!r}; choose 'linear', 'cosine' or 'none'.")


def get_scheduler(
    name: str, optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.1, constant_ratio: float = 0.05
) -> LambdaLR:
    """``"annealing"`` (the paper's: warmup, constant, linear decay to 1 %), ``"cosine"`` (cosine decay instead),
    ``"constant"`` (warmup, then the base rate; ``warmup_ratio=0`` for none at all), or ``"generator"`` (no
    warmup, constant for ``constant_ratio`` of the steps, then linear to 1 %: the generator's)."""
    if name == "generator":
        return LambdaLR(
            optimizer,
            lambda step: annealing_multiplier(step, total_steps, warmup_ratio=0.0, constant_ratio=constant_ratio),
        )
    decay = {"annealing": "linear", "cosine": "cosine", "constant": "none"}.get(name)
    if decay is None:
        raise ValueError(f"Unknown learning-rate schedule {name!r}; choose one of {', '.join(GENERATOR_SCHEDULES)}.")
    return LambdaLR(optimizer, lambda step: annealing_multiplier(step, total_steps, warmup_ratio, decay=decay))
