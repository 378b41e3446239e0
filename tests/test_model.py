import pytest
import torch
from conftest import small_model
from diffusers import VQModel
from safetensors.torch import load_file

from fvq_hf import MODEL_PRESETS, FVQModel


def test_forward_shapes_and_losses(images):
    model = small_model()
    out = model(images)
    assert out.sample.shape == images.shape
    assert out.indices.shape == (2, 8, 8) and out.indices.dtype == torch.long
    assert out.codebook_loss.ndim == 0 and out.commitment_loss.ndim == 0
    assert torch.allclose(out.commitment_loss, 0.25 * out.codebook_loss)


def test_encode_decode_indices_round_trip(images):
    model = small_model()
    indices = model.encode_indices(images)
    assert indices.unique().numel() > 1  # the bridge is not at its all-zero start
    assert torch.allclose(model.decode_indices(indices), model(images).sample, atol=1e-5)


def test_presets_build_the_paper_architectures():
    assert MODEL_PRESETS["vq-16"]["block_out_channels"] == (128, 128, 256, 256, 512)
    vq16 = FVQModel.from_preset("vq-16")
    assert vq16.downsample_factor == 16 and vq16.config.codebook_size == 16384 and vq16.config.codebook_dim == 256
    assert vq16.config.bridge_hidden_size == 256 and vq16.config.bridge_num_heads == 4
    assert vq16.config.projector == "vqbridge"
    # attention only at the lowest resolution, one residual block more per decoder level
    assert len(vq16.encoder.down_blocks[-1].attentions) == 2 and not hasattr(vq16.encoder.down_blocks[0], "attentions")
    assert len(vq16.decoder.up_blocks[0].resnets) == 3 and len(vq16.decoder.up_blocks[0].attentions) == 3
    assert FVQModel.from_preset("vq-8").downsample_factor == 8
    assert FVQModel.from_preset("vq-16-262k", codebook_dim=8).config.bridge_patch_size == 8


def test_projector_is_one_argument():
    for projector, kind in [("linear", "LinearProjector"), ("mlp", "MLPProjector"), ("vqbridge", "VQBridge")]:
        assert type(small_model(projector=projector).quantize.projector).__name__ == kind
    assert small_model(projector="none").quantize.projector is None


def test_fold_gives_same_indices_and_reconstructions(images):
    model = small_model()
    folded = model.fold()
    assert folded.config.folded and folded.config.projector == "none"
    assert folded.quantize.projector is None
    assert torch.allclose(folded.quantize.embedding.weight, model.codebook, atol=0)
    a, b = model(images), folded(images)
    assert torch.equal(a.indices, b.indices)
    assert torch.allclose(a.sample, b.sample, atol=1e-6)
    # a folded model has only the plain-VQGAN parameters left
    assert sum(p.numel() for p in folded.parameters()) < sum(p.numel() for p in model.parameters())
    assert not any("projector" in k for k in folded.state_dict())


def test_save_load_round_trip_unfolded_and_folded(tmp_path, images):
    model = small_model()
    for name, m in [("unfolded", model), ("folded", model.fold())]:
        m.save_pretrained(tmp_path / name)
        loaded = FVQModel.from_pretrained(tmp_path / name).eval()
        assert loaded.config.folded == (name == "folded")
        assert torch.equal(loaded(images).indices, m(images).indices)
        assert torch.allclose(loaded(images).sample, m(images).sample, atol=1e-6)
    keys = set(load_file(tmp_path / "folded" / "diffusion_pytorch_model.safetensors"))
    assert "quantize.embedding.weight" in keys and not any("projector" in k for k in keys)
    unfolded_keys = set(load_file(tmp_path / "unfolded" / "diffusion_pytorch_model.safetensors"))
    assert any(k.startswith("quantize.projector.") for k in unfolded_keys)


def test_local_subfolder_beside_a_root_model(tmp_path):
    # a training output: folded model at the root, unfolded one in unfolded/
    model = small_model()
    model.fold().save_pretrained(tmp_path)
    model.save_pretrained(tmp_path / "unfolded")
    unfolded = FVQModel.from_pretrained(tmp_path, subfolder="unfolded")
    assert not unfolded.config.folded
    assert all(torch.equal(unfolded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_diffusers_export_reconstructs_identically(tmp_path, images):
    model = small_model()
    vq = model.to_diffusers()
    assert type(vq) is VQModel
    with torch.no_grad():
        ours = model(images)
        theirs = vq.decode(vq.encode(images).latents).sample
        assert torch.allclose(theirs, ours.sample, atol=1e-5)
        # and the VQModel decodes our indices straight from its codebook
        b, h, w = ours.indices.shape
        from_indices = vq.decode(ours.indices.flatten(), force_not_quantize=True, shape=(b, h, w, 32)).sample
        assert torch.allclose(from_indices, ours.sample, atol=1e-5)
    vq.save_pretrained(tmp_path / "vq")
    reloaded = VQModel.from_pretrained(tmp_path / "vq")
    with torch.no_grad():
        assert torch.allclose(reloaded.decode(reloaded.encode(images).latents).sample, ours.sample, atol=1e-5)


@pytest.mark.parametrize("projector", ["none", "vqbridge"])
def test_l2_normalised_model_folds_and_exports(images, projector):
    model = small_model(l2_normalize=True, projector=projector)
    with torch.no_grad():
        model.quantize.embedding.weight.normal_()
    folded = model.fold()
    # the folded codebook is the normalised one the lookup used
    assert torch.allclose(folded.quantize.embedding.weight.norm(dim=1), torch.ones(1024), atol=1e-5)
    ours = model(images)
    assert torch.equal(folded(images).indices, ours.indices)
    # unit-length codes: the stock VQModel's L2 search picks the cosine-nearest code, the same output
    vq = model.to_diffusers()
    with torch.no_grad():
        latents = vq.encode(images).latents
        _, _, (_, _, vq_indices) = vq.quantize(latents)
        assert torch.equal(vq_indices.view(ours.indices.shape), ours.indices)
        assert torch.allclose(vq.decode(latents).sample, ours.sample, atol=1e-5)


def test_image_errors():
    model = small_model()
    with pytest.raises(ValueError, match=r"multiples of 4, got 30×32"):
        model(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="3-channel images, got 1"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(TypeError, match="images.float\\(\\) / 127.5 - 1"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        model.decode_indices(torch.zeros(8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 1024\)"):
        model.decode_indices(torch.full((1, 2, 2), 1024))


def test_config_errors():
    with pytest.raises(ValueError, match="Unknown FVQModel preset 'vq-32'.*vq-16"):
        FVQModel.from_preset("vq-32")
    with pytest.raises(TypeError, match="no config field.*codebook_sz"):
        FVQModel.from_preset("tiny", codebook_sz=10)
    with pytest.raises(ValueError, match="not a perfect square"):
        FVQModel.from_preset("tiny", codebook_size=5000)
    with pytest.raises(ValueError, match="Unknown projector"):
        FVQModel.from_preset("tiny", projector="conv")
    with pytest.raises(ValueError, match="folded model has no projector"):
        FVQModel.from_preset("tiny", folded=True)


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(OSError, match="config.json"):
        FVQModel.from_pretrained(tmp_path / "nothing-here")
    small_model().save_pretrained(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(OSError, match="truncated or corrupt"):
        FVQModel.from_pretrained(tmp_path / "ckpt")


def test_official_bridge_names_as_presets():
    model = small_model(bridge="QBridge-B/4-d1")
    c = model.config
    assert (c.bridge_hidden_size, c.bridge_num_heads, c.bridge_patch_size, c.bridge_depth, c.bridge_mlp_ratio) == (
        128,
        4,
        4,
        1,
        2.0,
    )
    assert len(model.quantize.projector.blocks) == 1
    # the conftest's small model is S/4: 64 wide with the official 4 heads of 16
    assert (small_model().config.bridge_hidden_size, small_model().config.bridge_num_heads) == (64, 4)


def test_codebook_init_l2_is_a_config_field(tmp_path, images):
    model = small_model(codebook_init_l2=True)
    assert torch.allclose(model.quantize.embedding.weight.norm(dim=1), torch.ones(1024), atol=1e-5)
    assert not model.config.l2_normalize and not model.quantize.l2_normalize  # the lookup is not cosine
    model.save_pretrained(tmp_path)
    loaded = FVQModel.from_pretrained(tmp_path).eval()
    assert loaded.config.codebook_init_l2
    assert torch.equal(loaded.quantize.embedding.weight, model.quantize.embedding.weight)  # loaded weights win


def test_encode_and_decode_indices_run_the_offload_hook(images):
    # pipelines that offload models to the CPU register an accelerate hook; encode_indices / decode_indices must
    # call it as diffusers' VQModel.encode / decode do, or the tokenizer stays where the offload left it
    from accelerate.hooks import ModelHook, add_hook_to_module

    class Count(ModelHook):
        calls = 0

        def pre_forward(self, module, *args, **kwargs):
            Count.calls += 1
            return args, kwargs

    model = small_model()
    add_hook_to_module(model, Count())
    indices = model.encode_indices(images)
    assert Count.calls == 1
    model.decode_indices(indices)
    assert Count.calls == 2
