"""SlotRestart against the bridge it serves: which rows make a slot, windows that start afresh, threshold 0."""

import torch
from test_slot_restart import D, K, codes_of_slot, small_bridge

from fvq_hf.quantization import SlotRestart


def test_slot_of_names_the_codes_that_the_slots_rows_of_the_last_linear_make():
    bridge = small_bridge().eval()
    raw = torch.randn(K, D)
    with torch.no_grad():
        before = bridge(raw)
        for slot in range(4):  # slot 1 and 2 are off the tile's diagonal: a transposed layout swaps them
            linear = bridge.final_layer.linear
            saved = linear.bias.detach().clone()
            linear.bias[slot * D : (slot + 1) * D] += 1.0
            changed = torch.nonzero((bridge(raw) - before).abs().amax(1) > 1e-6).flatten()
            linear.bias.copy_(saved)
            assert torch.equal(changed, codes_of_slot(bridge, slot)), slot


def test_each_window_starts_afresh():
    bridge = small_bridge()
    restart = SlotRestart(bridge, every=2, threshold=0.1)
    others = torch.cat([codes_of_slot(bridge, s) for s in (0, 1, 3)])
    for step in range(2):  # window 1: slot 2 gets nothing
        restart.update(others.repeat(20))
        assert restart.step() == ([] if step == 0 else [2])
    restart.update(codes_of_slot(bridge, 0))  # window 2, its first step: only slot 0 so far
    assert restart.step() == []
    restart.update(torch.cat([codes_of_slot(bridge, s) for s in (1, 2, 3)]))  # every slot got its share
    assert restart.step() == [] and restart.last_counts.tolist() == [16, 16, 16, 16]


def test_threshold_zero_restarts_only_slots_no_token_chose():
    bridge = small_bridge()
    restart = SlotRestart(bridge, every=1, threshold=0.0)
    restart.update(torch.cat([codes_of_slot(bridge, s) for s in (0, 1)]).repeat(50))
    restart.update(codes_of_slot(bridge, 3)[:1])  # one stray token keeps slot 3 from restarting at threshold 0
    assert restart.step() == [2]
