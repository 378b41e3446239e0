import pytest
import torch

from fvq_hf.quantization import (
    BRIDGE_PRESETS,
    OFFICIAL_PROJECTOR_NAMES,
    LinearProjector,
    MLPProjector,
    VQBridge,
    build_projector,
    parse_bridge_preset,
    parse_official_projector,
)
from fvq_hf.quantization.vqbridge import official_bridge_name


def test_bridge_maps_codebook_shape_and_starts_at_zero():
    bridge = VQBridge(codebook_size=1024, codebook_dim=32, patch_size=4, hidden_size=64, num_heads=2)
    codebook = torch.randn(1024, 32)
    out = bridge(codebook)
    assert out.shape == (1024, 32)
    # the final Linear is zero-initialised: every projected code is exactly zero at step 0
    assert torch.count_nonzero(out) == 0
    assert torch.count_nonzero(bridge.final_layer.linear.weight) == 0


def test_bridge_tokens_cover_p_by_p_tiles():
    bridge = VQBridge(
        codebook_size=256, codebook_dim=8, patch_size=4, hidden_size=32, num_heads=2, output_init_std=0.02
    )
    tokens = bridge.x_embedder(torch.randn(256, 8).t().reshape(1, 8, 16, 16))
    assert tokens.shape == (1, 16, 32)  # (16 / 4)² tokens of p² = 16 codes each
    # with the ViT blocks zeroed (identity through the residuals) a code can only move the codes of its
    # own tile: this pins patchify and unpatchify to the same layout
    with torch.no_grad():
        for block in bridge.blocks:
            for p in block.parameters():
                p.zero_()
        base = torch.randn(256, 8)
        moved = base.clone()
        moved[0] += 1.0  # code 0 is in tile (0, 0): grid rows 0-3, columns 0-3
        delta = (bridge(moved) - bridge(base)).abs().sum(1)
    changed = torch.nonzero(delta > 1e-6).flatten()
    rows, cols = changed // 16, changed % 16
    assert changed.numel() == 16 and rows.max() < 4 and cols.max() < 4
    assert set(bridge.slot_of(changed).tolist()) == set(range(16))


def test_gradient_reaches_raw_codebook_and_every_bridge_parameter():
    torch.manual_seed(0)
    raw = torch.nn.Parameter(torch.empty(256, 16).uniform_(-1 / 256, 1 / 256))
    bridge = VQBridge(codebook_size=256, codebook_dim=16, patch_size=4, hidden_size=32, num_heads=2)
    target = torch.randn(256, 16)
    opt = torch.optim.SGD([raw, *bridge.parameters()], lr=0.1)
    # step 0: only the zero-initialised output layer can receive gradient
    ((bridge(raw) - target) ** 2).mean().backward()
    assert bridge.final_layer.linear.weight.grad.abs().sum() > 0
    opt.step()
    opt.zero_grad()
    # after one step the whole bridge and the raw codebook are trained through it
    ((bridge(raw) - target) ** 2).mean().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0
    for name, p in bridge.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("name", BRIDGE_PRESETS)
def test_presets_are_the_official_ones(name):
    # every official preset: 4 heads, head dimension 8/16/32/64/128 for XS/S/B/L/XL, depth 2 unless -d1/-d4, MLP ratio 2
    width, rest = name.split("/")
    patch, _, depth = rest.partition("-d")
    patch = int(patch)
    bridge = VQBridge.from_preset(name, codebook_size=(2 * patch) ** 2, codebook_dim=8)
    c = bridge.config
    assert c.num_heads == 4 and c.hidden_size == 4 * {"XS": 8, "S": 16, "B": 32, "L": 64, "XL": 128}[width]
    assert (c.patch_size, c.depth, c.mlp_ratio) == (patch, int(depth or 2), 2.0)
    assert len(bridge.blocks) == c.depth and bridge.blocks[0].attn.num_heads == 4
    assert parse_bridge_preset(official_bridge_name(name)) == parse_bridge_preset(name)


def test_paper_l_preset_is_64_by_4_heads():
    assert parse_bridge_preset("L/4") == {
        "hidden_size": 256,
        "num_heads": 4,
        "patch_size": 4,
        "depth": 2,
        "mlp_ratio": 2.0,
    }
    assert parse_bridge_preset("L/8")["patch_size"] == 8


def test_official_names_and_widths():
    assert parse_bridge_preset("QBridge-S/4")["hidden_size"] == 64 and parse_bridge_preset("S/4")["num_heads"] == 4
    assert parse_bridge_preset("QBridge-B/4")["num_heads"] == 4  # the "B" of "QBridge" is not the width
    assert parse_bridge_preset("Qbridge-S/4-d4") == {
        "hidden_size": 64,
        "num_heads": 4,
        "patch_size": 4,
        "depth": 4,
        "mlp_ratio": 2.0,
    }
    assert (
        parse_bridge_preset("QBridge-XL/4-d4")["hidden_size"] == 512
        and parse_bridge_preset("XS/2")["hidden_size"] == 32
    )
    assert parse_bridge_preset("QBridge-siglip2-B-p16-256/4")["hidden_size"] == 768
    assert official_bridge_name("S/4-d4") == "Qbridge-S/4-d4" and official_bridge_name("L/4") == "QBridge-L/4"
    assert parse_official_projector("Qbridge-lin/1") == ("linear", {})
    assert parse_official_projector("Qbridge-lin/5") == ("mlp", {})
    assert parse_official_projector("Qbridge-none") == ("none", {})
    assert parse_official_projector("QBridge-L/8") == ("vqbridge", parse_bridge_preset("L/8"))
    assert len(OFFICIAL_PROJECTOR_NAMES) == 24
    with pytest.raises(ValueError, match=r"Unknown projector name 'QBridge-M/4'.*Qbridge-lin/5, .*QBridge-XL/4-d4"):
        parse_official_projector("QBridge-M/4")


def test_unknown_bridge_preset():
    with pytest.raises(ValueError, match=r"Unknown VQBridge preset 'M/4'.*official presets are L/4, L/8, XS/2"):
        parse_bridge_preset("M/4")
    with pytest.raises(ValueError, match="Unknown VQBridge preset 'QBridge-L/4-x'"):
        parse_bridge_preset("QBridge-L/4-x")


def test_vqbridge_has_its_own_module_and_old_imports_still_work():
    import fvq_hf
    from fvq_hf.quantization import projectors, vqbridge

    assert vqbridge.VQBridge is projectors.VQBridge is fvq_hf.VQBridge
    assert (
        projectors.slot_indices is vqbridge.slot_indices
        and projectors.sincos_pos_embed_2d is vqbridge.sincos_pos_embed_2d
    )
    assert VQBridge.__module__ == "fvq_hf.quantization.vqbridge"


def test_codebook_size_not_a_square_says_which_sizes_work():
    with pytest.raises(ValueError, match=r"not a perfect square.*16,384 \(128²\)"):
        VQBridge(codebook_size=16000, codebook_dim=8, patch_size=4)


def test_grid_side_not_divisible_by_patch():
    with pytest.raises(ValueError, match=r"36 × 36 grid, which patch size 8 does not divide"):
        VQBridge(codebook_size=36 * 36, codebook_dim=8, patch_size=8)


def test_baseline_projectors():
    codebook = torch.randn(64, 16)
    assert build_projector("none", 64, 16) is None
    linear = build_projector("linear", 64, 16)
    assert isinstance(linear, LinearProjector) and linear(codebook).shape == (64, 16)
    mlp = build_projector("mlp", 64, 16)
    assert isinstance(mlp, MLPProjector)
    assert sum(isinstance(m, torch.nn.Linear) for m in mlp.modules()) == 5
    assert sum(isinstance(m, torch.nn.ReLU) for m in mlp.modules()) == 4
    assert mlp(codebook).shape == (64, 16)
    with pytest.raises(ValueError, match="Unknown projector 'conv'"):
        build_projector("conv", 64, 16)


def test_dit_flavour_positions_follow_the_mae_layout():
    import numpy as np

    from fvq_hf.quantization.projectors import sincos_pos_embed_2d

    def mae_1d(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    dim, side = 32, 5
    grid = np.stack(np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32)))  # w first
    expected = np.concatenate([mae_1d(dim // 2, grid[0]), mae_1d(dim // 2, grid[1])], axis=1)
    assert np.allclose(sincos_pos_embed_2d(dim, side)[0].numpy(), expected, atol=1e-6)


def test_dit_flavour_starts_at_zero_and_trains():
    torch.manual_seed(0)
    bridge = VQBridge(codebook_size=256, codebook_dim=16, patch_size=4, hidden_size=32, num_heads=2, flavour="dit")
    raw = torch.nn.Parameter(torch.randn(256, 16))
    assert torch.count_nonzero(bridge(raw)) == 0
    assert not bridge.pos_embed.requires_grad
    opt = torch.optim.SGD([raw, *bridge.parameters()], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        ((bridge(raw) - 1.0) ** 2).mean().backward()
        opt.step()
    assert bridge(raw).abs().mean() > 0
    trainable = [n for n, p in bridge.named_parameters() if p.requires_grad]
    assert any("adaLN_modulation" in n for n in trainable) and "y_embedder.embedding_table.weight" in trainable
    with pytest.raises(ValueError, match="Unknown VQBridge flavour"):
        VQBridge(codebook_size=256, codebook_dim=16, flavour="mlp")


def test_dit_flavour_uses_the_condition_row_it_is_given():
    torch.manual_seed(0)
    kwargs = {"codebook_size": 64, "codebook_dim": 8, "patch_size": 2, "hidden_size": 32, "flavour": "dit"}
    kwargs.update(num_condition_embeddings=3, output_init_std=0.1)
    bridge = VQBridge(**kwargs, condition_index=2)
    with torch.no_grad():
        for module in [
            *(block.adaLN_modulation[-1] for block in bridge.blocks),
            bridge.final_layer.adaLN_modulation[-1],
        ]:
            module.weight.normal_()  # adaLN-Zero starts at the identity: give the condition something to change
        raw = torch.randn(64, 8)
        row_0 = VQBridge(**kwargs)
        row_0.load_state_dict(bridge.state_dict())
        assert not torch.allclose(row_0(raw), bridge(raw), atol=1e-4)
        row_0.y_embedder.embedding_table.weight[0] = bridge.y_embedder.embedding_table.weight[2]
        assert torch.allclose(row_0(raw), bridge(raw), atol=1e-6)
    with pytest.raises(ValueError, match="condition_index=3 is not a row of a 3-row condition table"):
        VQBridge(**kwargs, condition_index=3)
