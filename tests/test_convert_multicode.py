"""fvq-convert on multi-code checkpoints in the official layouts (tests/official_layout.py): FVQ's RQ-VAE (the
single-code layout, said to be residual with --quantizer residual), FVQ's VAR tokenizer and VAR's own release
(VAR's layout, recognised by its tensors)."""

import argparse

import pytest
import torch
from official_layout import (
    bridge_shape,
    make_official_state_dict,
    make_var_state_dict,
    reference_rq_reconstruct,
    reference_var_reconstruct,
)

from fvq_hf import MultiCodeFVQModel
from fvq_hf.convert import ConversionError, main
from fvq_hf.convert.multicode import convert_residual_checkpoint, convert_var_checkpoint, parse_scales
from fvq_hf.convert.tokenizer import SourceCheckpoint, load_checkpoint
from fvq_hf.quantization import VAR_SCALES

# LlamaGen layout, 2 levels (2× downsampling), K = 64 (an 8 × 8 grid for the bridge's 2 × 2 tiles of p = 4)
RQ_TINY = {"ch": 32, "ch_mult": (1, 2), "num_res_blocks": 1, "z_channels": 32, "codebook_size": 64, "codebook_dim": 16}
# VAR layout, 2 levels: VAR's 10 scales end at 16, so 32 px images
VAR_TINY = {"ch": 32, "ch_mult": (1, 2), "num_res_blocks": 1, "z_channels": 16, "codebook_size": 64}
S4 = bridge_shape("QBridge-S/4")  # hidden 64 = 4 heads of 16
RQ_ARGS = {"codebook_size": 64, "codebook_embed_dim": 16, "QB_type": "QBridge-S/4", "is_uncondition": True}


def save_training(path, state, **args):
    """The layout both FVQ trainers write (LlamaGen's): model, optimisers, steps, args."""
    torch.save(
        {
            "model": state,
            "optimizer": {},
            "discriminator": {},
            "optimizer_disc": {},
            "steps": 50,
            "args": argparse.Namespace(**args),
        },
        path,
    )
    return str(path)


def images(side, batch=2, seed=0):
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def rq_file(tmp_path_factory):
    state = make_official_state_dict(**RQ_TINY, **S4, bridge="dit", label_rows=1, seed=11)
    return save_training(tmp_path_factory.mktemp("rq") / "rqvae.pt", state, **RQ_ARGS), state


@pytest.mark.parametrize("depth", [None, 2])
def test_rqvae_codes_at_every_depth_and_reconstruction(tmp_path, rq_file, capsys, depth):
    path, state = rq_file
    flags = ["--quantizer", "residual"] + ([] if depth is None else ["--rq-depth", str(depth)])
    main([path, str(tmp_path / "rq"), *flags])
    assert "residual MultiCodeFVQModel" in capsys.readouterr().out
    model = MultiCodeFVQModel.from_pretrained(tmp_path / "rq").eval()
    depth = depth or 4
    assert model.config.quantizer == "residual" and model.config.rq_depth == depth and model.config.folded
    x = images(16)
    with torch.no_grad():
        ref_codes, ref_images = reference_rq_reconstruct(state, x, depth=depth)
        out = model(x)
    assert out.indices.shape == (2, 8, 8, depth)
    for level in range(depth):
        assert torch.equal(out.indices[..., level], ref_codes[..., level]), level
        assert ref_codes[..., level].unique().numel() > 4  # the codes are not degenerate
    assert torch.allclose(out.sample, ref_images, atol=1e-5)
    card = (tmp_path / "rq" / "README.md").read_text()
    assert f"residual (RQ-VAE): {depth} codes per position" in card and "MultiCodeFVQModel.from_pretrained" in card


def test_rqvae_unfolded_keeps_the_bridge_and_every_key(rq_file):
    path, state = rq_file
    result = convert_residual_checkpoint(load_checkpoint(path))
    assert sorted(result.consumed_keys + result.ignored_keys) == sorted(state)
    assert result.ignored_keys == ["quantize.codebook_used"]
    assert result.model.config.projector == "vqbridge" and result.model.config.bridge_flavour == "dit"
    assert "depth 4, the official constant" in result.layout
    x = images(16, seed=1)
    with torch.no_grad():
        ref_codes, ref_images = reference_rq_reconstruct(state, x)
        out = result.model(x)
    assert torch.equal(out.indices, ref_codes) and torch.allclose(out.sample, ref_images, atol=1e-5)


def test_single_code_conversion_of_an_fvq_file_reminds_of_residual(tmp_path, rq_file, capsys):
    main([rq_file[0], str(tmp_path / "single")])
    out = capsys.readouterr().out
    assert "an FVQModel" in out and "--quantizer residual" in out
    # a ViT-flavoured bridge cannot be the RQ-VAE's: no reminder
    vit = make_official_state_dict(**RQ_TINY, **S4, bridge="vit", seed=12)
    main([save_training(tmp_path / "vit.pt", vit, **RQ_ARGS), str(tmp_path / "vit")])
    assert "--quantizer residual" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "variant, extra, scales",
    [
        ("var-release", {}, None),  # VAR's vae_ch160v4096z32.pth: a bare state dict, 10 scales, 4 φ
        ("fvq-var", {"bridge": True, "bridge_hidden": S4["bridge_hidden"]}, None),
        ("fvq-var-scales", {"bridge": True, "bridge_hidden": 64, "num_scales": 4, "phi": "each"}, "1,2,3,4"),
        ("one-shared-phi", {"num_scales": 4, "phi": "shared", "num_phi": 1}, "1,2,3,4"),
    ],
)
def test_var_layouts_codes_at_every_scale_and_reconstruction(tmp_path, variant, extra, scales):
    state = make_var_state_dict(**VAR_TINY, **extra, seed=len(variant))
    if variant == "var-release":
        path = str(tmp_path / "vae_ch160v4096z32.pth")
        torch.save(state, path)
    else:
        bridge = {"QB_type": "QBridge-S/4"} if extra.get("bridge") else {}
        path = save_training(tmp_path / "var.pt", state, codebook_size=64, codebook_embed_dim=16, **bridge)
    main([path, str(tmp_path / "out")] + (["--scales", scales] if scales else []))
    model = MultiCodeFVQModel.from_pretrained(tmp_path / "out").eval()
    pns = parse_scales(scales) or VAR_SCALES
    assert model.config.quantizer == "multiscale" and tuple(model.config.scales) == pns
    x = images(2 * pns[-1])
    with torch.no_grad():
        ref_maps, ref_images = reference_var_reconstruct(state, x, pns)
        tokens = model.encode_indices(x)
        sample = model.decode_indices(tokens)
    maps = model.quantize.unflatten_indices(tokens)
    assert len(maps) == len(pns)
    for si, (ours, ref) in enumerate(zip(maps, ref_maps, strict=True)):
        assert torch.equal(ours, ref), si
    assert ref_maps[-1].unique().numel() > 4
    assert torch.allclose(sample, ref_images, atol=1e-5)
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"multi-scale (VAR): {len(pns)} scales {', '.join(map(str, pns))}" in card


def test_var_release_keys_and_layout(tmp_path):
    state = make_var_state_dict(**VAR_TINY, seed=5)
    path = tmp_path / "vae.pth"
    torch.save(state, path)
    result = convert_var_checkpoint(load_checkpoint(path))
    assert result.ignored_keys == ["quantize.ema_vocab_hit_SV"]
    assert sorted(result.consumed_keys + result.ignored_keys) == sorted(state)
    assert result.layout.startswith("VAR's own tokenizer") and result.model.config.projector == "none"
    c = result.model.config
    assert (c.num_phi, c.quant_conv_kernel_size, c.codebook_dim, c.sample_size) == (4, 3, 16, 32)
    # VAR's fused qkv is split in order q, k, v
    qkv = state["encoder.mid.attn_1.qkv.weight"][:, :, 0, 0]
    attention = result.model.encoder.mid_block.attentions[0]
    assert torch.equal(attention.to_k.weight, qkv[64:128])


# ------------------------------------------------------------------ bad combinations: the problem and the fix
def _error(tmp_path, path, *flags):
    with pytest.raises(SystemExit) as caught:
        main([path, str(tmp_path / "out"), *flags])
    return str(caught.value)


def test_flag_errors_name_the_problem_and_the_fix(tmp_path, rq_file):
    rq = rq_file[0]
    message = _error(tmp_path, rq, "--rq-depth", "3")
    assert "--rq-depth" in message and "add --quantizer residual" in message
    assert "drop --scales" in _error(tmp_path, rq, "--scales", "1,2")
    message = _error(tmp_path, rq, "--quantizer", "multiscale")
    assert "not VAR's" in message and "--quantizer residual" in message
    assert "Drop --to diffusers" in _error(tmp_path, rq, "--quantizer", "residual", "--to", "diffusers")
    assert "positive integer" in _error(tmp_path, rq, "--quantizer", "residual", "--rq-depth", "0")

    var = str(tmp_path / "vae.pth")
    torch.save(make_var_state_dict(**VAR_TINY, num_scales=6, seed=6), var)
    message = _error(tmp_path, var)
    assert "6 rows" in message and "--scales" in message
    assert "Drop --quantizer residual" in _error(tmp_path, var, "--quantizer", "residual")
    assert "that many scales" in _error(tmp_path, var, "--scales", "1,2,4,8,16")
    assert "strictly increasing" in _error(tmp_path, var, "--scales", "1,3,2,4,6,8")
    assert "comma list" in _error(tmp_path, var, "--scales", "1;2")


def test_content_errors_name_the_problem_and_the_fix(tmp_path):
    # a class-conditional or ViT-flavoured bridge cannot be the official RQ-VAE's
    for bridge, rows, words in (("dit", 1001, "1001-row label table"), ("vit", 1, "ViT-flavoured")):
        state = make_official_state_dict(**RQ_TINY, **S4, bridge=bridge, label_rows=rows, seed=7)
        with pytest.raises(ConversionError, match=words) as caught:
            convert_residual_checkpoint(SourceCheckpoint("x.pt", state, dict(RQ_ARGS)))
        assert "without --quantizer residual" in str(caught.value)
    state = make_official_state_dict(**RQ_TINY, bridge="lin1", seed=7)
    with pytest.raises(ConversionError, match="is_uncondition = False") as caught:
        convert_residual_checkpoint(
            SourceCheckpoint("x.pt", state, {**RQ_ARGS, "QB_type": "Qbridge-lin/1", "is_uncondition": False})
        )
    assert "without --quantizer residual" in str(caught.value)
    # LlamaGen's cosine lookup is not a residual quantizer's
    plain = make_official_state_dict(**RQ_TINY, seed=8)
    with pytest.raises(ConversionError, match="Drop --l2-normalize"):
        convert_residual_checkpoint(SourceCheckpoint("x.pt", plain, {"codebook_l2_norm": True}))
    # a φ-free VAR quantizer (quant_resi = 0) has no φ weights
    var = {k: v for k, v in make_var_state_dict(**VAR_TINY, seed=9).items() if "quant_resi" not in k}
    with pytest.raises(ConversionError, match="φ-free"):
        convert_var_checkpoint(SourceCheckpoint("x.pth", var))
    # the last scale must be the latent side of the trained image size
    state = make_var_state_dict(**VAR_TINY, seed=10)
    with pytest.raises(ConversionError, match="args.image_size = 256"):
        convert_var_checkpoint(SourceCheckpoint("x.pt", state, {"image_size": 256}))
