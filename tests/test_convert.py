"""fvq-convert on state dicts in the official LlamaGen / FVQ layouts (tests/official_layout.py)."""

import argparse
import json

import pytest
import torch
from diffusers import VQModel
from official_layout import make_official_state_dict, reference_bridge, reference_reconstruct

from fvq_hf import FVQModel
from fvq_hf.convert import ConversionError, convert_checkpoint, load_checkpoint, main, rename_key

TINY = {"ch": 32, "ch_mult": (1, 2), "num_res_blocks": 1, "z_channels": 32, "codebook_size": 256, "codebook_dim": 16}
TINY_BRIDGE = {"bridge_hidden": 64, "bridge_patch": 4}


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
    path = save_official(tmp_path / "fvq.pt", state, codebook_size=256, codebook_embed_dim=16, QB_type="S/4")
    result = convert_checkpoint(path)
    assert result.model.config.bridge_flavour == flavour and result.model.config.bridge_num_heads == 1
    with torch.no_grad():
        before = reference_bridge(state, num_heads=1)
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
    path = save_official(tmp_path / "vq_ds4_c2i.pt", state, codebook_size=256, codebook_embed_dim=8, codebook_l2_norm=True)
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
    path = save_official(tmp_path / "fvq_dit.pt", state, codebook_size=256, codebook_embed_dim=16, QB_type="S/4")
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        ref_indices, ref_images, _ = reference_reconstruct(state, x, bridge_heads=1)

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


def test_push_to_hub(tmp_path, hub):
    state = make_official_state_dict(**TINY, seed=9)
    path = save_official(tmp_path / "plain.pt", state)
    main([str(path), str(tmp_path / "out"), "--push-to-hub", "org/converted", "--token", "hf_test"])
    assert {"config.json", "diffusion_pytorch_model.safetensors", "README.md"} <= set(hub.files["org/converted"])
    loaded = FVQModel.from_pretrained("org/converted", token="hf_test")
    assert torch.equal(loaded.quantize.embedding.weight, state["quantize.embedding.weight"])
    assert 'FVQModel.from_pretrained("org/converted")' in hub.files["org/converted"]["README.md"].decode()


def test_every_official_key_has_a_diffusers_name():
    assert rename_key("encoder.conv_blocks.4.attn.1.proj_out.weight") == "encoder.down_blocks.4.attentions.1.to_out.0.weight"
    assert rename_key("decoder.conv_blocks.0.res.2.nin_shortcut.bias") == "decoder.up_blocks.0.resnets.2.conv_shortcut.bias"
    assert rename_key("decoder.mid.2.norm1.weight") == "decoder.mid_block.resnets.1.norm1.weight"
    assert rename_key("encoder.mid.1.norm.weight") == "encoder.mid_block.attentions.0.group_norm.weight"
    assert rename_key("encoder.conv_blocks.0.downsample.conv.weight") == "encoder.down_blocks.0.downsamplers.0.conv.weight"
    assert rename_key("quantize.qbridge.blocks.1.adaLN_modulation.1.weight") == "quantize.projector.blocks.1.adaLN_modulation.1.weight"
    assert rename_key("quantize.codebook_used") is None
    for foreign in ("encoder.conv_blocks.0.skip.0.weight", "encoder.mid.3.norm1.weight", "decoder.conv_blocks.1.attn.0.qkv.weight"):
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
