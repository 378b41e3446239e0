"""MultiScaleQuantizer: VAR's multi-scale residual quantizer over one shared, projected codebook (FVQ's VAR
tokenizer, arXiv 2509.10140 §4.4)."""

from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

from fvq_hf.quantization import (
    VAR_SCALES,
    LevelUsage,
    LinearProjector,
    MultiScaleQuantizer,
    SlotRestart,
    VQBridge,
    phi_table,
)

K, D = 64, 8
SCALES = (1, 2, 3, 4, 6)  # a short pyramid with both integer and fractional area/bicubic ratios
# VAR's φ table for its 10 scales and 4 shared φ, as its code resolves it (a fact of the VAR code, written out)
VAR_TABLE = (0, 0, 1, 1, 1, 2, 2, 3, 3, 3)


def randomize_phi(msq: MultiScaleQuantizer, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for phi in msq.phi:
            phi.weight.copy_(torch.randn(phi.weight.shape, generator=g) * 0.1)
            phi.bias.copy_(torch.randn(phi.bias.shape, generator=g) * 0.1)


def linear_msq(scales=SCALES, seed: int = 0) -> MultiScaleQuantizer:
    torch.manual_seed(seed)
    msq = MultiScaleQuantizer(K, D, scales=scales, projector="linear")
    randomize_phi(msq, seed)
    return msq


def reference_var(f, codebook, phis, table, scales, ratio=0.5, cosine=False):
    """VAR's quantisation written out from the raw tensors, in float64: area = adaptive average pooling, a full
    distance matrix (or, ``cosine``, VAR's using_znorm: the largest cosine), bicubic upsampling,
    φ(h) = (1 − r)·h + r·conv3×3(h)."""
    b, d, n, _ = f.shape
    codebook, rest = codebook.double(), f.double()
    f_hat, maps, f_hats = torch.zeros_like(rest), [], []
    for si, pn in enumerate(scales):
        small = F.adaptive_avg_pool2d(rest, pn) if pn != n else rest
        small = small.permute(0, 2, 3, 1).reshape(-1, d)
        if cosine:
            idx = (F.normalize(small, dim=1) @ F.normalize(codebook, dim=1).t()).argmax(1)
        else:
            idx = torch.cdist(small, codebook).argmin(1)
        h = codebook[idx].view(b, pn, pn, d).permute(0, 3, 1, 2)
        if pn != n:
            h = F.interpolate(h, size=(n, n), mode="bicubic")
        weight, bias = phis[table[si]]
        h = (1 - ratio) * h + ratio * F.conv2d(h, weight.double(), bias.double(), padding=1)
        f_hat, rest = f_hat + h, rest - h
        maps.append(idx.view(b, pn, pn))
        f_hats.append(f_hat)
    return maps, f_hats


def phi_tensors(msq):
    return [(phi.weight.detach(), phi.bias.detach()) for phi in msq.phi]


@pytest.mark.parametrize("scales", [SCALES, VAR_SCALES], ids=["5-scales", "var-10-scales"])
def test_indices_features_and_losses_match_a_plain_recomputation(scales):
    msq = linear_msq(scales)
    torch.manual_seed(1)
    n = scales[-1]
    f = torch.randn(2, D, n, n)
    quantized, indices, (codebook_loss, commitment_loss) = msq(f, return_loss_breakdown=True)
    linear = msq.projector.linear
    codebook = (msq.embedding.weight @ linear.weight.t() + linear.bias).detach()  # Ĉ = C Wᵀ + b
    ref_maps, ref_f_hats = reference_var(f, codebook, phi_tensors(msq), msq.phi_index, scales)
    assert len(indices) == len(scales)
    for si, (ours, ref) in enumerate(zip(indices, ref_maps)):
        assert ours.shape == (2, scales[si], scales[si]) and torch.equal(ours, ref), f"scale {si}"
    assert quantized.shape == f.shape
    assert torch.allclose(quantized.double(), ref_f_hats[-1], atol=1e-5)
    mse = torch.stack([((fh - f.double()) ** 2).mean() for fh in ref_f_hats]).mean()
    assert torch.allclose(codebook_loss.double(), mse, atol=1e-5)
    assert torch.allclose(commitment_loss.double(), 0.25 * mse, atol=1e-5)


def test_cosine_search_chooses_by_direction_and_keeps_the_codes_unnormalised():
    msq = linear_msq()
    msq.cosine_search = True
    with torch.no_grad():  # codes of very different norms, so the L2-nearest and the best-aligned codes differ
        msq.embedding.weight.mul_(torch.logspace(-1, 1, K).unsqueeze(1))
    torch.manual_seed(2)
    f = torch.randn(3, D, SCALES[-1], SCALES[-1])
    quantized, indices, (codebook_loss, _) = msq(f, return_loss_breakdown=True)
    linear = msq.projector.linear
    codebook = (msq.embedding.weight @ linear.weight.t() + linear.bias).detach()
    ref_maps, ref_f_hats = reference_var(f, codebook, phi_tensors(msq), msq.phi_index, SCALES, cosine=True)
    for si, (ours, ref) in enumerate(zip(indices, ref_maps)):
        assert torch.equal(ours, ref), f"scale {si}"
    assert torch.allclose(quantized.double(), ref_f_hats[-1], atol=1e-5)
    mse = torch.stack([((fh - f.double()) ** 2).mean() for fh in ref_f_hats]).mean()
    assert torch.allclose(codebook_loss.double(), mse, atol=1e-5)
    l2_maps, _ = reference_var(f, codebook, phi_tensors(msq), msq.phi_index, SCALES)
    assert any(not torch.equal(a, b) for a, b in zip(ref_maps, l2_maps))  # the option changes the choice


def test_phi_sharing_follows_vars_table():
    msq = MultiScaleQuantizer(K, D, projector=None)
    assert msq.scales == (1, 2, 3, 4, 5, 6, 8, 10, 13, 16) and msq.num_tokens == 680
    assert len(msq.phi) == 4 and msq.phi_index == VAR_TABLE
    assert phi_table(10, 4) == VAR_TABLE
    assert phi_table(10, 1) == (0,) * 10  # VAR's fully shared φ
    assert phi_table(10, 10) == tuple(range(10))  # and its unshared one
    # the scales that use φ number 3 are the ones whose φ weights get a gradient from a change there
    f = torch.randn(1, D, 16, 16)
    _, indices, _ = msq(f)
    msq.zero_grad()
    feats = msq.indices_to_features(indices, num_levels=2)  # scales 0 and 1 only: φ 0 only
    feats.sum().backward()
    grads = [phi.weight.grad is not None and phi.weight.grad.abs().sum() > 0 for phi in msq.phi]
    assert grads == [True, False, False, False]


def test_flat_token_order_is_vars_scale_by_scale_row_major():
    msq = linear_msq()
    maps = [torch.arange(pn * pn).view(1, pn, pn).repeat(2, 1, 1) + 100 * si for si, pn in enumerate(SCALES)]
    maps = [m % K for m in maps]
    tokens = msq.flatten_indices(maps)
    assert tokens.shape == (2, sum(pn * pn for pn in SCALES)) == (2, msq.num_tokens)
    expected = torch.cat([m[0].reshape(-1) for m in maps])
    assert torch.equal(tokens[0], expected) and torch.equal(tokens[1], expected)
    back = msq.unflatten_indices(tokens)
    assert all(torch.equal(a, b) for a, b in zip(back, maps))
    first_three = msq.unflatten_indices(tokens[:, : 1 + 4 + 9])
    assert len(first_three) == 3 and torch.equal(first_three[2], maps[2])


def test_straight_through_and_where_each_loss_sends_gradients():
    torch.manual_seed(0)
    bridge = VQBridge(codebook_size=K, codebook_dim=D, patch_size=2, hidden_size=16, depth=1, output_init_std=0.1)
    msq = MultiScaleQuantizer(K, D, scales=SCALES, projector=bridge)
    f = torch.randn(2, D, 6, 6, requires_grad=True)
    quantized, _, (codebook_loss, commitment_loss) = msq(f, return_loss_breakdown=True)
    quantized.sum().backward(retain_graph=True)
    assert torch.allclose(f.grad, torch.ones_like(f))
    f.grad = None
    codebook_loss.backward(retain_graph=True)
    assert f.grad is None
    assert msq.embedding.weight.grad.abs().sum() > 0 and bridge.final_layer.linear.weight.grad.abs().sum() > 0
    used_phi = set(msq.phi_index)
    assert all((msq.phi[i].weight.grad.abs().sum() > 0) == (i in used_phi) for i in range(4))
    msq.zero_grad()
    commitment_loss.backward()
    assert f.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in msq.parameters())


def test_decoding_gives_the_forward_output_and_the_features_after_each_scale():
    msq = linear_msq()
    f = torch.randn(2, D, 6, 6)
    with torch.no_grad():
        quantized, indices, _ = msq(f)
        steps = msq.coarse_to_fine(indices)
        codebook = msq.get_codebook()
    _, ref_f_hats = reference_var(f, codebook, phi_tensors(msq), msq.phi_index, SCALES)
    assert len(steps) == len(SCALES) and all(s.shape == f.shape for s in steps)
    for step, ref in zip(steps, ref_f_hats):
        assert torch.allclose(step.double(), ref, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(msq.indices_to_features(indices), quantized, atol=1e-5)
        tokens = msq.flatten_indices(indices)
        assert torch.allclose(msq.indices_to_features(tokens), quantized, atol=1e-5)
        for k in range(1, len(SCALES) + 1):
            expected = steps[k - 1]
            assert torch.allclose(msq.indices_to_features(indices, num_levels=k), expected, atol=1e-6)
            assert torch.allclose(msq.indices_to_features(indices[:k]), expected, atol=1e-6)
            length = sum(pn * pn for pn in SCALES[:k])
            assert torch.allclose(msq.indices_to_features(tokens[:, :length]), expected, atol=1e-6)


def test_the_error_shrinks_scale_by_scale():
    torch.manual_seed(0)
    msq = MultiScaleQuantizer(3 * K, D, scales=SCALES, projector=None)
    with torch.no_grad():
        base = torch.randn(K, D)  # codes at three magnitudes, so finer scales have smaller codes to refine with
        msq.embedding.weight.copy_(torch.cat([base, base * 0.3, base * 0.09]))
        for phi in msq.phi:  # φ = identity: each scale adds its upsampled codes as they are
            phi.weight.zero_()
            phi.weight[:, :, 1, 1] = torch.eye(D)
            phi.bias.zero_()
    f = F.interpolate(torch.randn(4, D, 3, 3), size=(6, 6), mode="bilinear")  # smooth, so coarse scales help
    with torch.no_grad():
        _, indices, _ = msq(f)
        errors = [(f - step).square().mean().item() for step in msq.coarse_to_fine(indices)]
    assert all(b < a for a, b in pairwise(errors)), errors
    assert errors[-1] < 0.3 * f.square().mean().item()


def test_usage_per_scale_and_overall_and_live_slots():
    torch.manual_seed(0)
    bridge = VQBridge(codebook_size=K, codebook_dim=D, patch_size=2, hidden_size=16, depth=1, output_init_std=0.1)
    msq = MultiScaleQuantizer(K, D, scales=SCALES, projector=bridge)
    usage = LevelUsage(K, msq.num_levels)
    with torch.no_grad():
        batches = [msq(torch.randn(2, D, 6, 6) * 0.3)[1] for _ in range(3)]
    for indices in batches:
        usage.update(msq.level_indices(indices))
    overall, per_scale = usage.compute()
    for si, stats in enumerate(per_scale):
        chosen = torch.cat([b[si].reshape(-1) for b in batches])
        assert stats.total == chosen.numel() == 3 * 2 * SCALES[si] ** 2
        assert stats.used_codes == chosen.unique().numel() <= min(K, stats.total)
    everything = torch.cat([msq.flatten_indices(b).reshape(-1) for b in batches])
    assert overall.used_codes == everything.unique().numel() and overall.total == everything.numel()
    # a flat token sequence is split into its scales the same way
    usage.reset()
    usage.update(msq.level_indices(msq.flatten_indices(batches[0])))
    assert usage.compute()[1][0].total == 2
    assert bridge.live_slots(usage.counts.sum(0)) == bridge.slot_of(msq.flatten_indices(batches[0])).unique().numel()


@pytest.mark.parametrize("with_restart", [True, False], ids=["restart", "paper"])
def test_slot_restart_revives_a_dead_slot_behind_a_multiscale_quantizer(with_restart):
    torch.manual_seed(0)
    bridge = VQBridge(codebook_size=K, codebook_dim=D, patch_size=2, hidden_size=16, depth=1, output_init_std=0.1)
    with torch.no_grad():  # slot 3's codes far from every target: no scale chooses them
        bridge.final_layer.linear.bias[3 * D : 4 * D] = 50.0
    msq = MultiScaleQuantizer(K, D, scales=(1, 2, 4), projector=bridge, codebook_init_std=0.02)
    optimizer = torch.optim.Adam(msq.parameters(), lr=3e-3)
    restart = SlotRestart(bridge, every=5) if with_restart else None
    targets = torch.randn(64, D, 4, 4)
    for _ in range(40):
        _, indices, loss = msq(targets[torch.randint(0, 64, (8,))])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if restart is not None:
            restart.update(msq.flatten_indices(indices))  # every scale's choices count
            restart.step(optimizer)
    with torch.no_grad():
        _, indices, _ = msq(targets)
    alive = set(bridge.slot_of(msq.flatten_indices(indices)).unique().tolist())
    assert alive == ({0, 1, 2, 3} if with_restart else {0, 1, 2})


def test_projector_by_name_defaults_to_vqbridge():
    torch.manual_seed(0)
    assert isinstance(MultiScaleQuantizer(K, D, bridge_preset="S/4").projector, VQBridge)
    assert isinstance(MultiScaleQuantizer(K, D, projector="linear").projector, LinearProjector)
    assert MultiScaleQuantizer(K, D, projector=None).projector is None
    # VAR leaves nn.Embedding's N(0, 1) init
    assert 0.8 < MultiScaleQuantizer(1024, D, projector=None).embedding.weight.std() < 1.2


def test_bad_arguments_give_clear_errors():
    for scales in [(4,), (1, 3, 2), (1, 2, 2), (0, 2), (1, 2.5)]:
        with pytest.raises(ValueError, match="strictly increasing positive integers"):
            MultiScaleQuantizer(K, D, scales=scales, projector=None)
    with pytest.raises(ValueError, match="num_phi"):
        MultiScaleQuantizer(K, D, num_phi=0, projector=None)
    for ratio in (0.0, 1.5):
        with pytest.raises(ValueError, match="phi_ratio"):
            MultiScaleQuantizer(K, D, phi_ratio=ratio, projector=None)
    msq = linear_msq()
    with pytest.raises(ValueError, match=r"\(8, 6, 6\) feature map"):
        msq(torch.randn(1, D, 8, 8))
    with pytest.raises(ValueError, match=r"\(8, 6, 6\) feature map"):
        msq(torch.randn(1, 4, 6, 6))
    maps = [torch.zeros(1, pn, pn, dtype=torch.long) for pn in SCALES]
    with pytest.raises(ValueError, match=r"\(3, 3\) was expected"):
        msq.indices_to_features([maps[0], maps[1], maps[1]])
    with pytest.raises(ValueError, match="1 to 5 scales"):
        msq.indices_to_features(maps + maps[:1])
    with pytest.raises(ValueError, match="different batch sizes"):
        msq.indices_to_features([maps[0], torch.zeros(2, 2, 2, dtype=torch.long)])
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        msq.indices_to_features([maps[0] + 64])
    with pytest.raises(TypeError, match="integer"):
        msq.indices_to_features([maps[0].float()])
    with pytest.raises(ValueError, match=r"one of \[1, 5, 14, 30, 66\]"):
        msq.indices_to_features(torch.zeros(1, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"num_levels must lie in \[1, 2\]"):
        msq.indices_to_features(maps[:2], num_levels=3)


def test_the_whole_quantizer_runs_in_fp32_under_bf16_autocast():
    """VAR runs its quantizer, the bridge included, with autocast off: a bf16 codebook would move codes."""
    msq = linear_msq()
    f = torch.randn(2, D, 6, 6)
    with torch.no_grad():
        plain, plain_indices, _ = msq(f)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            quantized, indices, loss = msq(f)
            steps = msq.coarse_to_fine(indices)
            assert msq.projector(msq.embedding.weight).dtype == torch.bfloat16  # autocast is really on
    assert loss.dtype == torch.float32 and quantized.dtype == torch.float32 and steps[-1].dtype == torch.float32
    assert all(torch.equal(a, b) for a, b in zip(plain_indices, indices))
    assert torch.allclose(quantized, plain, atol=1e-6) and torch.allclose(steps[-1], plain, atol=1e-5)
