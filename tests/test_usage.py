import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fvq_hf.quantization import CodebookUsage


def test_usage_and_perplexity_on_hand_made_indices():
    usage = CodebookUsage(8)
    usage.update(torch.tensor([0, 1, 1, 3]))
    usage.update(torch.tensor([[3, 3], [0, 1]]))
    stats = usage.compute()
    assert stats.used_codes == 3 and stats.total == 8 and stats.usage == 3 / 8
    # histogram 2, 3, 3 over 8
    p = torch.tensor([2, 3, 3]) / 8
    assert stats.perplexity == pytest.approx(math.exp(-(p * p.log()).sum().item()))


def test_uniform_use_of_every_code():
    usage = CodebookUsage(16)
    usage.update(torch.arange(16).repeat(5))
    stats = usage.compute()
    assert stats.usage == 1.0 and stats.perplexity == pytest.approx(16.0)


def test_reset_and_empty():
    usage = CodebookUsage(4)
    usage.update(torch.tensor([1, 2]))
    usage.reset()
    stats = usage.compute()
    assert stats.used_codes == 0 and stats.total == 0 and stats.usage == 0.0


def test_state_dict_round_trip():
    usage = CodebookUsage(10)
    usage.update(torch.tensor([9, 9, 2]))
    other = CodebookUsage(10)
    other.load_state_dict(usage.state_dict())
    assert torch.equal(other.counts, usage.counts)
    with pytest.raises(ValueError, match="codebook of 10 codes"):
        CodebookUsage(12).load_state_dict(usage.state_dict())


def test_out_of_range_indices():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        CodebookUsage(4).update(torch.tensor([4]))


def _worker(rank: int, world_size: int, port: int, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        usage = CodebookUsage(8)
        usage.update(torch.tensor([0, 1]) if rank == 0 else torch.tensor([1, 5, 7]))
        stats = usage.compute()
        results[rank] = (stats.used_codes, stats.total)
    finally:
        dist.destroy_process_group()


def test_counts_are_summed_across_processes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(2, port, results), nprocs=2, join=True)
    # rank 0 saw codes {0, 1}, rank 1 saw {1, 5, 7}: both report the union over 5 indices
    assert dict(results) == {0: (4, 5), 1: (4, 5)}
