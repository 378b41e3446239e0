"""get_scheduler: each schedule name and the warmup ratio reach the optimizer's learning rate."""

import math

import pytest
import torch

from fvq_hf.training import get_scheduler


def written_out(name, s, total, warmup_ratio):
    """The three schedules written out: warmup from 0.5 %, then the base rate (constant) or, after a 30 % plateau,
    a linear (annealing) or half-cosine (cosine) fall to 1 % at the last step."""
    w = int(warmup_ratio * total)
    if s < w:
        return 0.005 + 0.995 * s / w
    if name == "constant":
        return 1.0
    u = (s - w) / (total - 1 - w)
    if u < 0.3:
        return 1.0
    progress = (u - 0.3) / 0.7
    fall = 1 - progress if name == "annealing" else 0.5 * (1 + math.cos(math.pi * progress))
    return 0.01 + 0.99 * fall


@pytest.mark.parametrize("name", ["annealing", "cosine", "constant"])
@pytest.mark.parametrize("warmup_ratio", [0.0, 0.25])
def test_each_schedule_and_warmup_ratio_drive_the_optimizer(name, warmup_ratio):
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([p], lr=2.0)
    scheduler = get_scheduler(name, optimizer, total_steps=40, warmup_ratio=warmup_ratio)
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([2.0 * written_out(name, s, 40, warmup_ratio) for s in range(40)], abs=1e-12)
