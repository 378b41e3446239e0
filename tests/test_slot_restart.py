"""Dead-slot restart: a VQBridge slot nobody chooses comes back, the paper's recipe (no restart) leaves it dead."""

import pytest
import torch

from fvq_hf.quantization import SlotRestart, VectorQuantizer, VQBridge

K, D, P = 64, 8, 2  # an 8 × 8 codebook grid, 2 × 2 tiles: 4 slots of 16 codes


def small_bridge(seed: int = 0) -> VQBridge:
    torch.manual_seed(seed)
    return VQBridge(codebook_size=K, codebook_dim=D, patch_size=P, hidden_size=16, depth=1, output_init_std=0.1)


def codes_of_slot(bridge: VQBridge, slot: int) -> torch.Tensor:
    return torch.nonzero(bridge.slot_of(torch.arange(K)) == slot).flatten()


def test_a_slot_under_its_share_is_restarted_from_the_busiest_with_its_optimizer_state():
    bridge = small_bridge()
    optimizer = torch.optim.Adam(bridge.parameters(), lr=1e-3)
    bridge(torch.randn(K, D)).square().sum().backward()
    optimizer.step()  # Adam state to copy
    linear = bridge.final_layer.linear
    before = linear.weight.detach().clone()
    restart = SlotRestart(bridge, every=3, threshold=0.1, noise=0.05)
    busy, rare = codes_of_slot(bridge, 1), codes_of_slot(bridge, 2)
    for step in range(3):
        restart.update(torch.cat([busy.repeat(4), codes_of_slot(bridge, 0), codes_of_slot(bridge, 3)]))
        restart.update(rare[:1])  # 1 token against a fair share of 25: under a tenth of it
        restarted = restart.step(optimizer)
        assert restarted == ([] if step < 2 else [2])

    def rows(slot: int) -> slice:  # slot s is rows s·d … (s + 1)·d of the last Linear
        return slice(slot * D, (slot + 1) * D)

    new, donor = linear.weight.detach()[rows(2)], before[rows(1)]
    noise = (new - donor).pow(2).mean().sqrt() / donor.pow(2).mean().sqrt()
    assert 0.02 < noise < 0.1  # the donor's rows plus 5 % noise
    for slot in (0, 1, 3):
        assert torch.equal(linear.weight.detach()[rows(slot)], before[rows(slot)])
    state = optimizer.state[linear.weight]
    assert torch.equal(state["exp_avg"][rows(2)], state["exp_avg"][rows(1)])
    assert torch.equal(state["exp_avg_sq"][rows(2)], state["exp_avg_sq"][rows(1)])
    assert restart.restarts == 1 and restart.last_counts[1] == 3 * 64


def test_nothing_happens_while_every_slot_gets_its_share_or_before_the_window_ends():
    bridge = small_bridge()
    weights = bridge.final_layer.linear.weight.detach().clone()
    restart = SlotRestart(bridge, every=2, threshold=0.1)
    for _ in range(4):
        restart.update(torch.arange(K))
        assert restart.step() == []
    assert torch.equal(bridge.final_layer.linear.weight, weights)
    with pytest.raises(ValueError, match="window"):
        SlotRestart(bridge, every=0)
    with pytest.raises(ValueError, match="fraction"):
        SlotRestart(bridge, threshold=1.5)


def test_restart_state_round_trips_so_a_resumed_run_restarts_the_same_slots():
    a, b = small_bridge(), small_bridge()
    first, second = SlotRestart(a, every=4, seed=5), SlotRestart(b, every=4, seed=5)
    only_slot_0 = codes_of_slot(a, 0)
    for _ in range(3):
        first.update(only_slot_0)
        first.step()
    second.load_state_dict(first.state_dict())
    first.update(only_slot_0)
    second.update(only_slot_0)
    assert first.step() == second.step() == [1, 2, 3]
    assert torch.equal(a.final_layer.linear.weight, b.final_layer.linear.weight)  # the same noise, too
    with pytest.raises(ValueError, match="slots"):
        SlotRestart(VQBridge(codebook_size=K, codebook_dim=D, patch_size=4, hidden_size=16)).load_state_dict(
            first.state_dict()
        )


@pytest.mark.parametrize("with_restart", [True, False], ids=["restart", "paper"])
def test_a_dead_slot_comes_back_and_learns_only_with_restart(with_restart):
    torch.manual_seed(0)
    bridge = small_bridge()
    with torch.no_grad():  # push slot 3's codes far from every target: no token will ever choose them
        bridge.final_layer.linear.bias[3 * D : 4 * D] = 50.0
    vq = VectorQuantizer(K, D, projector=bridge, codebook_init_std=0.02)
    optimizer = torch.optim.Adam(vq.parameters(), lr=3e-3)
    restart = SlotRestart(bridge, every=5) if with_restart else None
    targets = torch.randn(512, D)
    for _ in range(40):
        _, indices, loss = vq(targets[torch.randint(0, 512, (128,))])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if restart is not None:
            restart.update(indices)
            restart.step(optimizer)
    with torch.no_grad():
        _, indices, _ = vq(targets)
    alive = set(bridge.slot_of(indices).unique().tolist())
    assert alive == ({0, 1, 2, 3} if with_restart else {0, 1, 2})
