import itertools
import math

import pytest
import torch

from fvq_hf.training import annealing_multiplier, get_scheduler


def paper_formula(s, total):
    # the paper's Table 6 (warmup(0.1) [baselr(0.3)–linear(0.7)], warmup from 0.005, decay to 1 %), written out
    w = int(0.1 * total)
    if s < w:
        return 0.005 + 0.995 * s / w
    u = (s - w) / (total - 1 - w)
    return 1.0 if u < 0.3 else 0.01 + 0.99 * (1 - u) / 0.7


@pytest.mark.parametrize("step", [0, 1, 50, 99, 100, 101, 300, 369, 370, 371, 600, 998, 999])
def test_annealing_matches_the_formula(step):
    assert annealing_multiplier(step, 1000) == pytest.approx(paper_formula(step, 1000), abs=1e-12)


def test_shape_of_the_schedule():
    total = 1000
    values = [annealing_multiplier(s, total) for s in range(total)]
    assert values[0] == pytest.approx(0.005) and values[-1] == pytest.approx(0.01)
    assert max(values) == 1.0 and values.index(1.0) == 100  # warmup ends at 10 %
    assert all(a >= b for a, b in itertools.pairwise(values[370:]))  # decays monotonically
    cosine = [annealing_multiplier(s, total, decay="cosine") for s in range(total)]
    assert cosine[-1] == pytest.approx(0.01) and cosine[600] > values[600]
    assert annealing_multiplier(999, total, decay="none") == 1.0


def test_scheduler_drives_the_optimizer():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-4)
    sched = get_scheduler("annealing", opt, total_steps=200)
    lrs = []
    for _ in range(200):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-4 * 0.005) and lrs[-1] == pytest.approx(1e-6)
    assert math.isclose(lrs[20], 1e-4) and lrs[100] < 1e-4  # warmup ends at 10 % = step 20
    with pytest.raises(ValueError, match="Unknown learning-rate schedule 'step'"):
        get_scheduler("step", opt, 10)
