"""fvq-convert on state dicts in the official LlamaGen / FVQ layouts (tests/official_layout.py)."""

import argparse
import json

import pytest
import torch
from diffusers import VQModel
from official_layout import (
    OFFICIAL_BRIDGES,
    bridge_shape,
    make_official_state_dict,
    reference_bridge,
    reference_reconstruct,
)

from fvq_hf import FVQModel
from fvq_hf.convert import ConversionError, convert_checkpoint, load_checkpoint, main, rename_key
from fvq_hf.quantization import LinearProjector, MLPProjector

TINY = {"ch": 32, "ch_mult": (1, 2), "num_res_blocks": 1, "z_channels": 32, "codebook_size": 256, "codebook_dim": 16}
TINY_BRIDGE = bridge_shape("QBridge-S/4")  # hidden 64 = 4 heads of 16


def save_official(path, state, ema=None, **args):
    checkpoint = {"model": state, "optimizer": {}, "discriminator": {}, "optimizer_disc": {}, "steps": 1234}
    if ema is not None:
        checkpoint["ema"] = ema
    checkpoint["args"] = argparse.Namespace(**args)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def vq16_fvq_file(tmp_path_factory):
    """An official FVQ VQ-16 checkpoint at full size: K = 16,384, d = 256, ViT-flavoured L/4 bridge."""
    state = make_official_state_dict(bridge="vit")
    path = tmp_path_factory.mktemp("official") / "fvq_vq16_16k.pt"
    save_official(path, state, codebook_size=16384, codebook_embed_dim=256, QB_type="L/4", codebook_l2_norm=False)
    return path, state


def test_vq16_fvq_checkpoint_converts_exactly(vq16_fvq_file):
    path, state = vq16_fvq_file
    result = convert_checkpoint(path)
    model = result.model
    assert result.ignored_keys == ["quantize.codebook_used"]
    assert sorted(result.consumed_keys + result.ignored_keys) == sorted(state)  # every key accounted for
    c = model.config
    assert (c.codebook_size, c.codebook_dim, c.projector, c.bridge_flavour) == (16384, 256, "vqbridge", "vit")
    assert (c.bridge_patch_size, c.bridge_hidden_size, c.bridge_num_heads, c.bridge_depth) == (4, 256, 4, 2)
    assert tuple(c.block_out_channels) == (128, 128, 256, 256, 512) and model.downsample_factor == 16

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref_indices, ref_images, ref_codebook = reference_reconstruct(state, x, bridge_heads=4)
        assert torch.allclose(model.codebook, ref_codebook, atol=1e-4, rtol=1e-4)
        out = model(x)
    assert torch.equal(out.indices, ref_indices)
    assert torch.allclose(out.sample, ref_images, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("flavour", ["vit", "dit"])
def test_bridge_flavours_give_the_same_projected_codebook(tmp_path, flavour):
    state = make_official_state_dict(**TINY, **TINY_BRIDGE, bridge=flavour, seed=3)
    path = save_official(tmp_path / "fvq.pt", state, codebook_size=256, codebook_embed_dim=16, QB_type="QBridge-S/4")
    result = convert_checkpoint(path)
    assert result.model.config.bridge_flavour == flavour and result.model.config.bridge_num_heads == 4
    with torch.no_grad():
        before = reference_bridge(state, num_heads=4)
        assert before.abs().mean() > 0.01
        assert torch.allclose(result.model.codebook, before, atol=1e-5)
        folded = result.model.fold()
        assert torch.allclose(folded.quantize.embedding.weight, before, atol=1e-5)


def test_ema_weights_are_preferred(tmp_path):
    model_state = make_official_state_dict(**TINY, seed=1)
    ema_state = make_official_state_dict(**TINY, seed=2)
    path = save_official(tmp_path / "ckpt.pt", model_state, ema=ema_state)
    result = convert_checkpoint(path)
    assert result.source.weights_key == "ema" and result.source.steps == 1234
    assert "pass --l2-normalize" in result.layout  # no args: the assumption is said out loud
    with_flag = convert_checkpoint(path, l2_normalize=True)
    assert with_flag.model.config.l2_normalize and with_flag.layout.startswith("LlamaGen VQGAN with an l2-normalised")
    assert torch.equal(result.model.encoder.conv_in.weight, ema_state["encoder.conv_in.weight"])


def test_llamagen_l2_tokenizer_to_fvq_and_diffusers(tmp_path):
    # LlamaGen's released tokenizer: plain codebook of d = 8, l2-normalised (cosine distance)
    state = make_official_state_dict(**{**TINY, "codebook_dim": 8}, seed=5)
    path = save_official(
        tmp_path / "vq_ds4_c2i.pt", state, codebook_size=256, codebook_embed_dim=8, codebook_l2_norm=True
    )
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        ref_indices, ref_images, _ = reference_reconstruct(state, x, l2_normalize=True)

    main([str(path), str(tmp_path / "fvq")])
    model = FVQModel.from_pretrained(tmp_path / "fvq").eval()
    assert model.config.l2_normalize and model.config.folded
    with torch.no_grad():
        out = model(x)
    assert torch.equal(out.indices, ref_indices)
    assert torch.allclose(out.sample, ref_images, atol=1e-5)

    main([str(path), str(tmp_path / "diffusers"), "--to", "diffusers"])
    vq = VQModel.from_pretrained(tmp_path / "diffusers").eval()
    with torch.no_grad():
        assert torch.allclose(vq.decode(vq.encode(x).latents).sample, ref_images, atol=1e-5)
    card = (tmp_path / "diffusers" / "README.md").read_text()
    assert "vq_ds4_c2i.pt" in card and "l2-normalised" in card and "library_name: diffusers" in card


def test_cli_writes_fvq_and_diffusers_folders_with_cards(tmp_path, capsys):
    state = make_official_state_dict(**TINY, **TINY_BRIDGE, bridge="dit", seed=7)
    path = save_official(
        tmp_path / "fvq_dit.pt", state, codebook_size=256, codebook_embed_dim=16, QB_type="QBridge-S/4"
    )
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        ref_indices, ref_images, _ = reference_reconstruct(state, x)

    main([str(path), str(tmp_path / "folded")])
    assert "carried over" in capsys.readouterr().out
    folded = FVQModel.from_pretrained(tmp_path / "folded").eval()
    assert folded.config.folded and folded.quantize.projector is None
    main([str(path), str(tmp_path / "unfolded"), "--no-fold"])
    unfolded = FVQModel.from_pretrained(tmp_path / "unfolded").eval()
    assert unfolded.config.bridge_flavour == "dit" and unfolded.quantize.projector is not None
    main([str(path), str(tmp_path / "vq"), "--to", "diffusers"])
    vq = VQModel.from_pretrained(tmp_path / "vq").eval()
    assert json.loads((tmp_path / "vq" / "config.json").read_text())["_class_name"] == "VQModel"
    with torch.no_grad():
        for m in (folded, unfolded):
            out = m(x)
            assert torch.equal(out.indices, ref_indices)
            assert torch.allclose(out.sample, ref_images, atol=1e-5)
        assert torch.allclose(vq.decode(vq.encode(x).latents).sample, ref_images, atol=1e-5)
    card = (tmp_path / "folded" / "README.md").read_text()
    assert "fvq_dit.pt" in card and "DiT-flavoured VQBridge" in card and "`ema`" not in card
    assert "row 0 of the 1-row label table (its only row)" in card


# ------------------------------------------------------------------ every official layout against its forward pass
def _case(qb_type, flavour="vit", l2=False, rows=1, size=64, dim=8):
    return pytest.param(qb_type, flavour, l2, rows, size, dim, id=f"{flavour}-{qb_type}-l2{int(l2)}-rows{rows}-K{size}")


# every official bridge name once, each width and patch in both flavours, the depth variants, the baselines, l2 on
# and off (FVQ's codebook_l2_norm: an init option, the lookup stays L2) and both DiT label tables; K = 256 for
# p = 8, so that the bridge has more than one token and its head count shows
OFFICIAL_CASES = [
    _case(
        name,
        "vit" if i % 2 == 0 or name == "QBridge-XL/8" else "dit",
        l2=i % 5 == 1,
        size=256 if OFFICIAL_BRIDGES[name][1] == 8 else 64,
    )
    for i, name in enumerate(OFFICIAL_BRIDGES)
] + [
    _case("QBridge-XS/2", "vit"),
    _case("QBridge-S/4", "vit", size=256, dim=16),
    _case("QBridge-B/2", "dit", l2=True),
    _case("QBridge-L/8", "dit", size=256, dim=16),
    _case("QBridge-XL/4", "dit"),
    _case("QBridge-L/4", "dit", rows=1001),
    _case("QBridge-S/2", "dit", rows=1001, l2=True),
    _case("Qbridge-lin/1", l2=True),
    _case("Qbridge-lin/1"),
    _case("Qbridge-lin/5"),
    _case("Qbridge-lin/5", l2=True, size=256, dim=16),
    _case("Qbridge-none"),
    _case("Qbridge-none", l2=True),
]
_BASELINES = {"Qbridge-lin/1": ("lin1", "linear"), "Qbridge-lin/5": ("lin5", "mlp"), "Qbridge-none": (None, "none")}


@pytest.mark.parametrize("qb_type, flavour, l2, rows, size, dim", OFFICIAL_CASES)
def test_official_layouts_convert_to_the_official_forward_pass(tmp_path, qb_type, flavour, l2, rows, size, dim):
    bridge, projector = _BASELINES.get(qb_type, (flavour, "vqbridge"))
    shape = bridge_shape(qb_type) if qb_type in OFFICIAL_BRIDGES else {}
    geometry = {**TINY, "codebook_size": size, "codebook_dim": dim}
    state = make_official_state_dict(**geometry, **shape, bridge=bridge, label_rows=rows, seed=len(tmp_path.name))
    args = {"codebook_size": size, "codebook_embed_dim": dim, "QB_type": qb_type, "codebook_l2_norm": l2}
    result = convert_checkpoint(save_official(tmp_path / "fvq.pt", state, **args))
    c = result.model.config
    assert c.projector == projector and sorted(result.consumed_keys + result.ignored_keys) == sorted(state)
    # FVQ's codebook_l2_norm only normalised the raw codebook at init: recorded, the lookup stays plain L2
    assert (c.codebook_init_l2, c.l2_normalize) == (l2, False)
    if projector == "vqbridge":
        hidden = shape["bridge_hidden"]
        assert (c.bridge_hidden_size, c.bridge_num_heads, c.bridge_patch_size) == (hidden, 4, shape["bridge_patch"])
        assert (c.bridge_depth, c.bridge_mlp_ratio, c.bridge_flavour) == (shape["bridge_depth"], 2.0, flavour)
        if flavour == "dit":
            assert c.bridge_condition_index == (1000 if rows == 1001 else 0)

    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        ref_indices, ref_images, ref_codebook = reference_reconstruct(state, x)  # the official conversion's codebook
        assert ref_indices.unique().numel() > 4
        folded = result.model.fold()
        assert torch.allclose(folded.quantize.embedding.weight, ref_codebook, atol=1e-5)
        for model in (result.model, folded):
            out = model(x)
            assert torch.equal(out.indices, ref_indices)
            assert torch.allclose(out.sample, ref_images, atol=1e-4)


def test_the_null_class_row_is_folded_and_named_in_the_card(tmp_path):
    # a class-conditional DiT bridge: 1,000 classes + the null class; the official conversion folds label 1000
    state = make_official_state_dict(**TINY, **TINY_BRIDGE, bridge="dit", label_rows=1001, seed=11)
    path = save_official(
        tmp_path / "fvq_c2i.pt", state, codebook_size=256, codebook_embed_dim=16, QB_type="QBridge-S/4"
    )
    with torch.no_grad():
        null_row = reference_bridge(state, label=1000)
        assert not torch.allclose(null_row, reference_bridge(state, label=0), atol=1e-3)  # the row matters
    main([str(path), str(tmp_path / "folded")])
    folded = FVQModel.from_pretrained(tmp_path / "folded")
    assert torch.allclose(folded.quantize.embedding.weight, null_row, atol=1e-5)
    card = (tmp_path / "folded" / "README.md").read_text()
    assert "row 1000 of the 1001-row label table (the null class" in card
    main([str(path), str(tmp_path / "unfolded"), "--no-fold"])
    unfolded = FVQModel.from_pretrained(tmp_path / "unfolded")
    assert (unfolded.config.bridge_num_condition_embeddings, unfolded.config.bridge_condition_index) == (1001, 1000)
    with torch.no_grad():
        assert torch.allclose(unfolded.codebook, null_row, atol=1e-5)
    row_3 = convert_checkpoint(path, bridge_condition_index=3)
    with torch.no_grad():
        assert torch.allclose(row_3.model.codebook, reference_bridge(state, label=3), atol=1e-5)
    assert "condition row 3 of 1001" in row_3.layout


@pytest.mark.parametrize("qb_type, kind", [("Qbridge-lin/1", LinearProjector), ("Qbridge-lin/5", MLPProjector)])
def test_baselines_convert_unfolded_into_the_matching_projector(tmp_path, qb_type, kind):
    bridge = _BASELINES[qb_type][0]
    state = make_official_state_dict(**TINY, bridge=bridge, seed=12)
    path = save_official(tmp_path / "baseline.pt", state, codebook_size=256, codebook_embed_dim=16, QB_type=qb_type)
    main([str(path), str(tmp_path / "unfolded"), "--no-fold"])
    model = FVQModel.from_pretrained(tmp_path / "unfolded").eval()
    assert isinstance(model.quantize.projector, kind)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        ref_indices, ref_images, _ = reference_reconstruct(state, x)
        out = model(x)
    assert torch.equal(out.indices, ref_indices) and torch.allclose(out.sample, ref_images, atol=1e-4)
    assert qb_type in (tmp_path / "unfolded" / "README.md").read_text()


def test_qb_type_is_read_exactly_and_checked(tmp_path):
    state = make_official_state_dict(**TINY, **bridge_shape("QBridge-B/4"), bridge="vit", seed=13)
    shape_args = {"codebook_size": 256, "codebook_embed_dim": 16}
    # "QBridge-B/4": 4 heads of 32; the "B" of "QBridge" once made this 2 heads
    for name in ("QBridge-B/4", "B/4"):
        result = convert_checkpoint(save_official(tmp_path / "b4.pt", state, **shape_args, QB_type=name))
        assert result.model.config.bridge_num_heads == 4 and "4 heads" in result.layout
    with pytest.raises(ConversionError, match=r"'QBridge-M/4' is not a projector.*Qbridge-lin/1, .*QBridge-L/4, "):
        convert_checkpoint(save_official(tmp_path / "m4.pt", state, **shape_args, QB_type="QBridge-M/4"))
    forced = convert_checkpoint(tmp_path / "m4.pt", bridge_num_heads=2)
    assert forced.model.config.bridge_num_heads == 2 and "not an official name" in forced.layout
    with pytest.raises(ConversionError, match=r"'QBridge-L/4' means hidden_size 256 \(tensors: 128\)"):
        convert_checkpoint(save_official(tmp_path / "l4.pt", state, **shape_args, QB_type="QBridge-L/4"))
    with pytest.raises(ConversionError, match=r"names a 'linear' projector but the weights hold a VQBridge"):
        convert_checkpoint(save_official(tmp_path / "lin.pt", state, **shape_args, QB_type="Qbridge-lin/1"))
    # no QB_type at all (a bare state dict): every official preset has 4 heads, and the layout says so
    bare = convert_checkpoint(save_official(tmp_path / "bare.pt", state))
    assert bare.model.config.bridge_num_heads == 4 and "no QB_type in the args: assumed" in bare.layout


def test_codebook_l2_norm_keeps_the_meaning_of_each_code_base(tmp_path):
    fvq_state = make_official_state_dict(**TINY, **TINY_BRIDGE, bridge="vit", seed=14)
    fvq = convert_checkpoint(
        save_official(tmp_path / "fvq.pt", fvq_state, QB_type="QBridge-S/4", codebook_l2_norm=True)
    )
    assert fvq.model.config.codebook_init_l2 and not fvq.model.config.l2_normalize
    assert "once at init" in fvq.layout
    main([str(tmp_path / "fvq.pt"), str(tmp_path / "fvq-out")])
    card = (tmp_path / "fvq-out" / "README.md").read_text()
    assert "| lookup | plain L2 distance |" in card and "| raw codebook init | l2-normalised rows" in card
    # an FVQ run without a projector has no qbridge keys: its args.QB_type still says whose code it is
    plain = convert_checkpoint(
        save_official(
            tmp_path / "none.pt", make_official_state_dict(**TINY), QB_type="Qbridge-none", codebook_l2_norm=True
        )
    )
    assert plain.model.config.codebook_init_l2 and not plain.model.config.l2_normalize
    llamagen = convert_checkpoint(
        save_official(tmp_path / "lg.pt", make_official_state_dict(**TINY), codebook_l2_norm=True)
    )
    assert llamagen.model.config.l2_normalize and not llamagen.model.config.codebook_init_l2


def test_push_to_hub(tmp_path, hub):
    state = make_official_state_dict(**TINY, seed=9)
    path = save_official(tmp_path / "plain.pt", state)
    main([str(path), str(tmp_path / "out"), "--push-to-hub", "org/converted", "--token", "hf_test"])
    assert {"config.json", "diffusion_pytorch_model.safetensors", "README.md"} <= set(hub.files["org/converted"])
    loaded = FVQModel.from_pretrained("org/converted", token="hf_test")
    assert torch.equal(loaded.quantize.embedding.weight, state["quantize.embedding.weight"])
    assert 'FVQModel.from_pretrained("org/converted")' in hub.files["org/converted"]["README.md"].decode()


def test_every_official_key_has_a_diffusers_name():
    assert (
        rename_key("encoder.conv_blocks.4.attn.1.proj_out.weight")
        == "encoder.down_blocks.4.attentions.1.to_out.0.weight"
    )
    assert (
        rename_key("decoder.conv_blocks.0.res.2.nin_shortcut.bias")
        == "decoder.up_blocks.0.resnets.2.conv_shortcut.bias"
    )
    assert rename_key("decoder.mid.2.norm1.weight") == "decoder.mid_block.resnets.1.norm1.weight"
    assert rename_key("encoder.mid.1.norm.weight") == "encoder.mid_block.attentions.0.group_norm.weight"
    assert (
        rename_key("encoder.conv_blocks.0.downsample.conv.weight") == "encoder.down_blocks.0.downsamplers.0.conv.weight"
    )
    assert (
        rename_key("quantize.qbridge.blocks.1.adaLN_modulation.1.weight")
        == "quantize.projector.blocks.1.adaLN_modulation.1.weight"
    )
    assert rename_key("quantize.codebook_used") is None
    for foreign in (
        "encoder.conv_blocks.0.skip.0.weight",
        "encoder.mid.3.norm1.weight",
        "decoder.conv_blocks.1.attn.0.qkv.weight",
    ):
        with pytest.raises(KeyError):
            rename_key(foreign)


def test_safetensors_state_dicts(tmp_path):
    from safetensors.torch import save_file

    state = make_official_state_dict(**TINY, seed=4)
    save_file({f"module.{k}": v.contiguous() for k, v in state.items()}, tmp_path / "ddp.safetensors")
    result = convert_checkpoint(tmp_path / "ddp.safetensors")  # a DistributedDataParallel prefix is unwrapped
    assert result.source.format == "safetensors" and len(result.consumed_keys) == len(state) - 1
    save_file({"fc.weight": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(ConversionError, match="does not look like"):
        load_checkpoint(tmp_path / "foreign.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00garbage")
    with pytest.raises(ConversionError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path / "broken.safetensors")


def test_bad_files_are_refused_with_reasons(tmp_path):
    good = save_official(tmp_path / "good.pt", make_official_state_dict(**TINY))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ConversionError, match="truncated or corrupt"):
        load_checkpoint(truncated)

    torch.save({"weights": {"fc.weight": torch.zeros(2, 2)}, "epoch": 3}, tmp_path / "foreign.pt")
    with pytest.raises(ConversionError, match="does not look like an FVQ or LlamaGen tokenizer"):
        load_checkpoint(tmp_path / "foreign.pt")

    torch.save({"model": make_official_state_dict(**TINY), "args": _Custom()}, tmp_path / "pickled.pt")
    with pytest.raises(ConversionError, match="does not unpickle them"):
        load_checkpoint(tmp_path / "pickled.pt")

    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(SystemExit, match="fvq-convert: .*truncated or corrupt"):
        main([str(truncated), str(tmp_path / "out")])


def test_unknown_missing_and_misshaped_keys_are_named(tmp_path):
    state = make_official_state_dict(**TINY)
    state["encoder.conv_blocks.0.res.0.extra.weight"] = torch.zeros(1)
    del state["decoder.conv_out.bias"]
    state["post_quant_conv.bias"] = torch.zeros(7)
    with pytest.raises(ConversionError) as error:
        convert_checkpoint(save_official(tmp_path / "odd.pt", state))
    message = str(error.value)
    assert "unknown keys (1): encoder.conv_blocks.0.res.0.extra.weight" in message
    assert "missing keys (1): decoder.conv_out.bias" in message
    assert "post_quant_conv.bias (7,)" in message


def test_args_that_contradict_the_tensors(tmp_path):
    path = save_official(tmp_path / "odd.pt", make_official_state_dict(**TINY), codebook_size=1024)
    with pytest.raises(ConversionError, match="args.codebook_size = 1024 but quantize.embedding.weight rows = 256"):
        convert_checkpoint(path)


class _Custom:
    pass


def test_a_file_that_is_not_a_checkpoint_gets_one_line_naming_it(tmp_path, capsys):
    """A text file named .pt (a web page, a Git LFS pointer) is refused as what it is, not with torch's traceback."""
    pointer = tmp_path / "fvq_16k.pt"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 1234\n")
    with pytest.raises(SystemExit) as exit_info:
        main([str(pointer), str(tmp_path / "out")])
    message = str(exit_info.value)
    assert message.startswith("fvq-convert: ") and "is not a PyTorch checkpoint (text beginning 'version" in message
    assert "git lfs pull" in message and "\n" not in message
    (tmp_path / "hello.pt").write_text("hello world")  # torch.load itself raises KeyError: 101 on this one
    with pytest.raises(ConversionError, match="is not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "hello.pt")
    with pytest.raises(ConversionError, match="is a folder, not a checkpoint file"):
        load_checkpoint(tmp_path)


def test_a_tokenizer_without_its_codebook_is_told_which_key_is_missing(tmp_path):
    torch.save({"model": {"encoder.conv_in.weight": torch.zeros(2, 3, 3, 3)}}, tmp_path / "no-codebook.pt")
    with pytest.raises(ConversionError) as error:
        load_checkpoint(tmp_path / "no-codebook.pt")
    message = str(error.value)
    assert "has no 'quantize.embedding.weight' (the codebook)" in message
    assert "no 'encoder.conv_in.weight'" not in message  # it has that one
