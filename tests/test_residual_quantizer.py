"""ResidualQuantizer: RQ-VAE over one shared, projected codebook (FVQ's RQ-VAE tokenizer, arXiv 2509.10140 §4.4)."""

from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from official_layout import bridge_shape, make_official_state_dict, reference_bridge

from fvq_hf.quantization import (
    LevelUsage,
    LinearProjector,
    MLPProjector,
    ResidualQuantizer,
    SlotRestart,
    VQBridge,
)

K, D = 64, 8


def small_bridge(seed: int = 0, **overrides) -> VQBridge:
    torch.manual_seed(seed)
    config = {"codebook_size": K, "codebook_dim": D, "patch_size": 2, "hidden_size": 16, "depth": 1}
    return VQBridge(**{**config, "output_init_std": 0.1, **overrides})


def plain_rq(depth: int = 4, seed: int = 0) -> ResidualQuantizer:
    torch.manual_seed(seed)
    return ResidualQuantizer(K, D, depth=depth, projector=None, codebook_init_std=1.0)


def reference_rq(z_rows: torch.Tensor, codebook: torch.Tensor, depth: int):
    """RQ written out the plain way: full distance matrix in float64, residual minus the chosen code."""
    residual, running, codes, sums = z_rows.double(), torch.zeros_like(z_rows.double()), [], []
    for _ in range(depth):
        idx = torch.cdist(residual, codebook.double()).argmin(1)
        residual = residual - codebook.double()[idx]
        running = running + codebook.double()[idx]
        codes.append(idx)
        sums.append(running)
    return torch.stack(codes, -1), sums


def test_indices_quantized_and_losses_match_a_plain_recomputation():
    rq = plain_rq(depth=3)
    torch.manual_seed(1)
    z = torch.randn(2, D, 3, 5)
    quantized, indices, (codebook_loss, commitment_loss) = rq(z, return_loss_breakdown=True)
    assert quantized.shape == z.shape and indices.shape == (2, 3, 5, 3) and indices.dtype == torch.long
    rows = z.permute(0, 2, 3, 1).reshape(-1, D)
    ref_codes, ref_sums = reference_rq(rows, rq.embedding.weight.detach(), 3)
    assert torch.equal(indices.reshape(-1, 3), ref_codes)
    assert torch.allclose(quantized.permute(0, 2, 3, 1).reshape(-1, D), ref_sums[-1].float(), atol=1e-5)
    mse = torch.stack([((s - rows.double()) ** 2).mean() for s in ref_sums])
    assert torch.allclose(codebook_loss.double(), mse.mean(), atol=1e-6)
    assert torch.allclose(commitment_loss.double(), 0.25 * mse.mean(), atol=1e-6)
    _, _, loss = rq(z)
    assert torch.allclose(loss, codebook_loss + commitment_loss)


def test_every_depth_chooses_from_the_bridged_codebook_as_the_official_code_does():
    """An official-layout DiT bridge (random tensors); the bridged codebook computed from the raw tensors alone."""
    tiny = {"ch": 16, "ch_mult": (1, 2), "num_res_blocks": 1, "z_channels": 16}
    state = make_official_state_dict(
        **tiny, codebook_size=256, codebook_dim=16, **bridge_shape("QBridge-S/4"), bridge="dit", seed=4
    )
    bridge = VQBridge.from_preset("S/4", codebook_size=256, codebook_dim=16, flavour="dit")
    prefix = "quantize.qbridge."
    bridge.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    rq = ResidualQuantizer(256, 16, depth=4, projector=bridge)
    with torch.no_grad():
        rq.embedding.weight.copy_(state["quantize.embedding.weight"])
        bridged = reference_bridge(state, num_heads=4)
    assert bridged.abs().mean() > 0.01
    torch.manual_seed(2)
    z = torch.randn(2, 16, 4, 4) * bridged.std()
    with torch.no_grad():
        quantized, indices, _ = rq(z)
    ref_codes, ref_sums = reference_rq(z.permute(0, 2, 3, 1).reshape(-1, 16), bridged, 4)
    for depth in range(4):
        assert torch.equal(indices[..., depth].reshape(-1), ref_codes[:, depth]), f"depth {depth}"
    assert torch.allclose(quantized.permute(0, 2, 3, 1).reshape(-1, 16), ref_sums[-1].float(), atol=1e-5)


def test_straight_through_and_where_each_loss_sends_gradients():
    bridge = small_bridge()
    rq = ResidualQuantizer(K, D, depth=2, projector=bridge, codebook_init_std=0.5)
    z = torch.randn(2, D, 3, 3, requires_grad=True)
    quantized, _, (codebook_loss, commitment_loss) = rq(z, return_loss_breakdown=True)
    quantized.sum().backward(retain_graph=True)
    assert torch.allclose(z.grad, torch.ones_like(z))  # d quantized / d z is the identity
    z.grad = None
    codebook_loss.backward(retain_graph=True)
    assert z.grad is None
    assert rq.embedding.weight.grad.abs().sum() > 0 and bridge.final_layer.linear.weight.grad.abs().sum() > 0
    rq.zero_grad()
    commitment_loss.backward()
    assert z.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in rq.parameters())


def test_the_residual_shrinks_with_every_depth():
    torch.manual_seed(0)
    rq = ResidualQuantizer(3 * K, D, depth=4, projector=None)
    with torch.no_grad():  # codes at three magnitudes, so a finer depth always has a smaller code to refine with
        base = torch.randn(K, D)
        rq.embedding.weight.copy_(torch.cat([base, base * 0.3, base * 0.09]))
    z = torch.randn(4, D, 4, 4)
    _, indices, _ = rq(z)
    errors = [(z - f).square().mean().item() for f in rq.coarse_to_fine(indices)]
    assert all(b < a for a, b in pairwise(errors)), errors
    assert errors[-1] < 0.5 * errors[0]
    # the depths are different choices, not one code repeated
    assert (indices[..., 0] != indices[..., 1]).float().mean() > 0.5


def test_decoding_indices_gives_the_forward_output_and_the_first_k_depths():
    rq = plain_rq(depth=4)
    z = torch.randn(2, D, 3, 4)
    with torch.no_grad():
        quantized, indices, _ = rq(z)
        full = rq.indices_to_features(indices)
        steps = rq.coarse_to_fine(indices)
        codes = rq.embedding.weight[indices]  # (B, H, W, depth, d)
    assert torch.allclose(full, quantized, atol=1e-5)
    assert len(steps) == 4 and torch.equal(steps[-1], full)
    for k in range(1, 5):
        expected = codes[..., :k, :].sum(-2).permute(0, 3, 1, 2)
        assert torch.allclose(rq.indices_to_features(indices, num_levels=k), expected, atol=1e-5)
        assert torch.allclose(rq.indices_to_features(indices[..., :k]), expected, atol=1e-5)
        assert torch.allclose(steps[k - 1], expected, atol=1e-5)
    flat = rq.indices_to_features(indices.reshape(-1, 4), channels_first=False)
    assert torch.allclose(flat, quantized.permute(0, 2, 3, 1).reshape(-1, D), atol=1e-5)


def test_channel_last_input():
    rq = plain_rq(depth=2)
    quantized, indices, loss = rq(torch.randn(5, 7, D))
    assert quantized.shape == (5, 7, D) and indices.shape == (5, 7, 2) and loss.ndim == 0


def test_usage_per_depth_and_overall_and_live_slots():
    bridge = small_bridge()
    rq = ResidualQuantizer(K, D, depth=3, projector=bridge, codebook_init_std=0.5)
    usage = LevelUsage(K, rq.num_levels)
    with torch.no_grad():
        batches = [rq(torch.randn(2, D, 4, 4) * 0.3)[1] for _ in range(3)]
    for indices in batches:
        usage.update(rq.level_indices(indices))
    everything = torch.stack(batches)
    overall, per_depth = usage.compute()
    for depth, stats in enumerate(per_depth):
        chosen = everything[..., depth].unique()
        assert stats.used_codes == chosen.numel() and stats.total == 3 * 2 * 16
    assert overall.used_codes == everything.unique().numel() and overall.total == 3 * 3 * 2 * 16
    assert overall.used_codes >= max(s.used_codes for s in per_depth)
    live = bridge.live_slots(usage.counts.sum(0))
    assert live == bridge.slot_of(everything.unique()).unique().numel() and 1 <= live <= 4


@pytest.mark.parametrize("with_restart", [True, False], ids=["restart", "paper"])
def test_slot_restart_revives_a_dead_slot_behind_a_residual_quantizer(with_restart):
    torch.manual_seed(0)
    bridge = small_bridge()
    with torch.no_grad():  # slot 3's codes far from every target and every residual: no depth chooses them
        bridge.final_layer.linear.bias[3 * D : 4 * D] = 50.0
    rq = ResidualQuantizer(K, D, depth=2, projector=bridge, codebook_init_std=0.02)
    optimizer = torch.optim.Adam(rq.parameters(), lr=3e-3)
    restart = SlotRestart(bridge, every=5) if with_restart else None
    targets = torch.randn(512, D)
    for _ in range(40):
        _, indices, loss = rq(targets[torch.randint(0, 512, (128,))])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if restart is not None:
            restart.update(indices)  # every depth's choices count
            restart.step(optimizer)
    with torch.no_grad():
        _, indices, _ = rq(targets)
    alive = set(bridge.slot_of(indices).unique().tolist())
    assert alive == ({0, 1, 2, 3} if with_restart else {0, 1, 2})


def test_projectors_by_name_or_module():
    torch.manual_seed(0)
    assert isinstance(ResidualQuantizer(K, D, bridge_preset="S/4").projector, VQBridge)  # the default
    assert ResidualQuantizer(K, D, bridge_preset="S/4").projector.config.patch_size == 4
    assert isinstance(ResidualQuantizer(K, D, projector="linear").projector, LinearProjector)
    assert isinstance(ResidualQuantizer(K, D, projector="mlp").projector, MLPProjector)
    assert ResidualQuantizer(K, D, projector="none").projector is None
    bridge = small_bridge()
    assert ResidualQuantizer(K, D, projector=bridge).projector is bridge
    with pytest.raises(ValueError, match="Unknown projector 'bridge'"):
        ResidualQuantizer(K, D, projector="bridge")
    with pytest.raises(TypeError, match="projector must be"):
        ResidualQuantizer(K, D, projector=3)


def test_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        ResidualQuantizer(K, D, depth=0, projector=None)
    rq = plain_rq(depth=2)
    with pytest.raises(ValueError, match="expects 8-dimensional vectors"):
        rq(torch.randn(1, 5, 2, 2))
    good = torch.zeros(1, 2, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(B, H, W, D\) with 1 <= D <= 2"):
        rq.indices_to_features(torch.zeros(1, 2, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"num_levels must lie in \[1, 2\]"):
        rq.indices_to_features(good, num_levels=3)
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        rq.indices_to_features(good + 64)
    with pytest.raises(TypeError, match="integer"):
        rq.indices_to_features(good.float())
    usage = LevelUsage(K, 2)
    with pytest.raises(ValueError, match="3 levels, this tracker has 2"):
        usage.update([good[..., 0]] * 3)


def test_level_usage_round_trips_and_checks_its_state():
    usage = LevelUsage(8, 2)
    usage.update([torch.tensor([0, 1, 1]), torch.tensor([7])])
    state = usage.state_dict()
    other = LevelUsage(8, 2)
    other.load_state_dict(state)
    assert torch.equal(other.counts, usage.counts)
    overall, levels = other.compute()
    assert (overall.used_codes, levels[0].used_codes, levels[1].used_codes) == (3, 2, 1)
    with pytest.raises(ValueError, match=r"\(levels, codes\)"):
        LevelUsage(8, 3).load_state_dict(state)
    usage.reset()
    assert usage.compute()[0].total == 0


def test_fp32_search_under_bf16_autocast():
    rq = plain_rq(depth=2)
    z = torch.randn(2, D, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, indices, loss = rq(z)
    assert torch.equal(indices, rq(z)[1]) and loss.dtype == torch.float32
    assert F.mse_loss(rq.indices_to_features(indices), z) < z.square().mean()
