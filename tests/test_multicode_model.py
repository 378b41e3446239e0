"""MultiCodeFVQModel: RQ-VAE and VAR tokenizers over one projected codebook, as Hub-native diffusers models."""

import pytest
import torch

from fvq_hf import LevelUsage, MultiCodeFVQModel, MultiScaleQuantizer, ResidualQuantizer
from fvq_hf.models import MULTICODE_PRESETS

SMALL = {"codebook_size": 1024, "codebook_dim": 32, "bridge": "S/4", "bridge_output_init_std": 0.02}


def small_multicode(preset: str, **overrides) -> MultiCodeFVQModel:
    torch.manual_seed(0)
    return MultiCodeFVQModel.from_preset(preset, **{**SMALL, **overrides}).eval()


def images(batch: int = 2, size: int = 32) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(batch, 3, size, size) * 2 - 1


@pytest.mark.parametrize(
    ("preset", "index_shape"), [("rq-tiny", (2, 8, 8, 4)), ("var-tiny", (2, 1 + 4 + 9 + 16 + 36 + 64))]
)
def test_forward_indices_and_decoding_agree(preset, index_shape):
    model = small_multicode(preset)
    x = images()
    with torch.no_grad():
        out = model(x)
        indices = model.encode_indices(x)
        decoded = model.decode_indices(indices)
        steps = model.decode_coarse_to_fine(indices)
    assert out.sample.shape == x.shape and out.indices.shape == index_shape and out.indices.dtype == torch.long
    assert torch.equal(indices, out.indices)
    assert out.codebook_loss.ndim == 0 and out.commitment_loss.ndim == 0
    assert torch.allclose(decoded, out.sample, atol=1e-4)
    assert len(steps) == model.num_levels and torch.allclose(steps[-1], decoded, atol=1e-5)
    # the quantized features the decoder sees are the quantizer's, from the encoder's latents
    with torch.no_grad():
        quantized, _, _ = model.quantize(model.encode_latents(x))
        assert torch.allclose(model.decode_quantized(quantized), out.sample, atol=1e-5)


def test_decoding_the_first_k_depths_or_scales():
    rq = small_multicode("rq-tiny")
    var = small_multicode("var-tiny")
    x = images()
    with torch.no_grad():
        codes = rq.encode_indices(x)
        for k in (1, 2, 3):
            first_k = rq.decode_indices(codes[..., :k])
            assert torch.allclose(first_k, rq.decode_indices(codes, num_levels=k), atol=1e-6)
            assert torch.allclose(first_k, rq.decode_quantized(rq.quantize.indices_to_features(codes[..., :k])))
        tokens = var.encode_indices(x)
        steps = var.decode_coarse_to_fine(tokens)
        for k, length in [(1, 1), (3, 14), (5, 66)]:
            assert torch.allclose(var.decode_indices(tokens[:, :length]), steps[k - 1], atol=1e-5)
            assert torch.allclose(var.decode_indices(tokens, num_levels=k), steps[k - 1], atol=1e-5)
    # coarse to fine: each step is closer to the full reconstruction than the first one
    full = steps[-1]
    assert (steps[-2] - full).abs().mean() < (steps[0] - full).abs().mean()


@pytest.mark.parametrize(
    ("preset", "options"), [("rq-tiny", {}), ("var-tiny", {}), ("var-tiny", {"cosine_search": True})]
)
def test_fold_keeps_every_code_and_reconstruction(preset, options):
    model = small_multicode(preset, **options)
    x = images()
    folded = model.fold()
    assert folded.config.folded and folded.config.projector == "none" and folded.quantize.projector is None
    assert not any(k.startswith("quantize.projector.") for k in folded.state_dict())
    with torch.no_grad():
        assert torch.allclose(folded.codebook, model.codebook)
        assert torch.equal(folded.encode_indices(x), model.encode_indices(x))
        assert torch.allclose(folded(x).sample, model(x).sample, atol=1e-6)


@pytest.mark.parametrize(
    ("preset", "options"), [("rq-tiny", {}), ("var-tiny", {}), ("var-tiny", {"cosine_search": True})]
)
def test_save_and_load_round_trip(tmp_path, preset, options):
    model = small_multicode(preset, **options)
    with torch.no_grad():  # move φ and the codebook off their init so a lost tensor would show
        for p in model.quantize.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.save_pretrained(tmp_path / preset)
    loaded = MultiCodeFVQModel.from_pretrained(tmp_path / preset).eval()
    assert loaded.config.quantizer == model.config.quantizer
    assert type(loaded.quantize) is type(model.quantize)
    assert getattr(loaded.quantize, "cosine_search", False) == bool(options.get("cosine_search"))
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded.encode_indices(x), model.encode_indices(x))
        assert torch.equal(loaded(x).sample, model(x).sample)


def test_presets_record_the_papers_and_vars_configurations():
    rq, var, original = (MULTICODE_PRESETS[n] for n in ("rq-8x8x4", "var-10scale", "var-original"))
    assert rq["quantizer"] == "residual" and rq["codebook_size"] == 16384
    assert 2 ** (len(rq["block_out_channels"]) - 1) == 32  # 256 px → 8 × 8 positions, × 4 depths
    assert var["quantizer"] == "multiscale" and (var["codebook_size"], var["codebook_dim"]) == (16384, 256)
    assert var["quant_conv_kernel_size"] == 3 and 2 ** (len(var["block_out_channels"]) - 1) == 16
    assert original["projector"] == "none" and (original["codebook_size"], original["codebook_dim"]) == (4096, 32)
    assert original["block_out_channels"][0] == 160
    # the tiny presets build and quantise with the right classes
    assert isinstance(small_multicode("rq-tiny").quantize, ResidualQuantizer)
    msq = small_multicode("var-tiny").quantize
    assert isinstance(msq, MultiScaleQuantizer) and msq.scales[-1] == 8


def test_usage_per_level_from_model_indices():
    model = small_multicode("var-tiny")
    usage = LevelUsage(model.config.codebook_size, model.num_levels)
    with torch.no_grad():
        tokens = model.encode_indices(images())
    usage.update(model.quantize.level_indices(tokens))
    overall, per_scale = usage.compute()
    assert [s.total for s in per_scale] == [2 * pn * pn for pn in model.config.scales]
    assert overall.used_codes == tokens.unique().numel()


def test_bad_input_and_export_give_clear_errors():
    var = small_multicode("var-tiny")
    with pytest.raises(ValueError, match=r"takes 32×32 images .* got 64×64"):
        var(images(size=64))
    with pytest.raises(NotImplementedError, match="stock diffusers VQModel holds one"):
        var.to_diffusers()
    with pytest.raises(ValueError, match="Unknown quantizer 'rvq'"):
        MultiCodeFVQModel.from_preset("rq-tiny", quantizer="rvq")
    with pytest.raises(ValueError, match="Unknown MultiCodeFVQModel preset 'vq-16'"):
        MultiCodeFVQModel.from_preset("vq-16")
    with pytest.raises(TypeError, match="no config field"):
        MultiCodeFVQModel.from_preset("rq-tiny", depth=3)
    with pytest.raises(ValueError, match="cosine_search is an option of the multi-scale quantizer"):
        MultiCodeFVQModel.from_preset("rq-tiny", cosine_search=True)
    with pytest.raises(ValueError, match="quant_conv_kernel_size"):
        MultiCodeFVQModel.from_preset("rq-tiny", quant_conv_kernel_size=2)
    with pytest.raises(ValueError, match="multiples of 4"):
        small_multicode("rq-tiny")(images(size=30))


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_size_presets_have_the_official_architectures():
    """Parameter counts of the official models, part by part: VAR's VQVAE at ch 160, K = 4,096, d = 32 (its
    released vae_ch160v4096z32, 108,948,355 parameters) and FVQ's VQ-32 RQ-VAE with a DiT-flavoured L/4 bridge."""
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        var = MultiCodeFVQModel.from_preset("var-original")
        rq = MultiCodeFVQModel.from_preset("rq-8x8x4", bridge_flavour="dit")
        var_fvq = MultiCodeFVQModel.from_preset("var-10scale", bridge_flavour="dit")
    parts = ("encoder", "decoder", "quant_conv", "post_quant_conv", "quantize")
    assert [count(getattr(var, p)) for p in parts] == [44107872, 64653923, 9248, 9248, 168064]
    assert count(var) == 108948355
    assert [count(getattr(rq, p)) for p in parts] == [41101312, 58974595, 65792, 65792, 8531456]
    assert count(var_fvq) == 83819907


@pytest.mark.parametrize("preset", ["rq-tiny", "var-tiny"])
def test_push_to_hub_and_load_back(hub, preset):
    model = small_multicode(preset).fold()
    model.push_to_hub(f"org/{preset}", token="hf_test")
    assert {"config.json", "diffusion_pytorch_model.safetensors"} <= set(hub.files[f"org/{preset}"])
    loaded = MultiCodeFVQModel.from_pretrained(f"org/{preset}", token="hf_test").eval()
    assert loaded.config.folded and loaded.config.quantizer == model.config.quantizer
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded.encode_indices(x), model.encode_indices(x))


def test_the_card_wording_names_the_quantizer():
    from fvq_hf import FVQModel
    from fvq_hf.hub import init_departures, quantizer_description

    with torch.device("meta"):
        var = MultiCodeFVQModel.from_preset("var-10scale")
        single = FVQModel.from_preset("tiny")
    assert quantizer_description(var.config) == (
        "multi-scale (VAR): 10 scales 1, 2, 3, 4, 5, 6, 8, 10, 13, 16 (680 tokens), one shared codebook, "
        "4 shared φ convolutions (r = 0.5), codes searched by L2 distance"
    )
    cosine = small_multicode("var-tiny", cosine_search=True)
    assert quantizer_description(cosine.config).endswith("codes searched by cosine similarity")
    assert any("cosine similarity" in d for d in init_departures(cosine.config))
    assert not any("cosine" in d for d in init_departures(var.config))
    rq = small_multicode("rq-tiny", rq_depth=3)
    assert quantizer_description(rq.config) == "residual (RQ-VAE): 3 codes per position, one shared codebook"
    assert quantizer_description(single.config) == "one code per position"


def test_a_local_subfolder_loads_that_model_and_a_missing_one_says_so(tmp_path):
    model = small_multicode("rq-tiny")
    folded = model.fold()
    folded.save_pretrained(tmp_path / "run")  # a training output: the folded model at the root ...
    model.save_pretrained(tmp_path / "run" / "unfolded")  # ... and the unfolded one beside it
    unfolded = MultiCodeFVQModel.from_pretrained(tmp_path / "run", subfolder="unfolded")
    assert not unfolded.config.folded and unfolded.quantize.projector is not None
    assert MultiCodeFVQModel.from_pretrained(tmp_path / "run").config.folded
    with pytest.raises(FileNotFoundError, match="no subfolder 'unfoldd'.*unfolded"):
        MultiCodeFVQModel.from_pretrained(tmp_path / "run", subfolder="unfoldd")


def test_load_tokenizer_gives_the_class_that_saved_the_folder_and_refuses_other_models(tmp_path):
    from fvq_hf import FVQModel, FVQTransformer, load_tokenizer

    torch.manual_seed(0)
    MultiCodeFVQModel.from_preset("rq-tiny", codebook_size=64, codebook_dim=32).save_pretrained(tmp_path / "rq")
    FVQModel.from_preset("tiny", codebook_size=64, codebook_dim=32).save_pretrained(tmp_path / "one")
    rq, one = load_tokenizer(tmp_path / "rq"), load_tokenizer(tmp_path / "one")
    assert type(rq) is MultiCodeFVQModel and rq.config.rq_depth == 4 and type(one) is FVQModel
    with pytest.raises(FileNotFoundError, match="has no subfolder 'unfolded'"):  # named, not skipped
        load_tokenizer(tmp_path / "rq", subfolder="unfolded")
    FVQTransformer(vocab_size=16, num_classes=2, block_size=4, dim=32, n_layer=1, n_head=2).save_pretrained(
        tmp_path / "gpt"
    )
    with pytest.raises(ValueError, match="holds a FVQTransformer, not an fvq_hf tokenizer"):
        load_tokenizer(tmp_path / "gpt")


def test_tokens_per_image_counts_every_depth_and_scale():
    from fvq_hf import FVQModel

    small = {"codebook_size": 64, "codebook_dim": 16}
    assert FVQModel.from_preset("tiny", **small).tokens_per_image(32) == 8 * 8
    assert MultiCodeFVQModel.from_preset("rq-tiny", **small).tokens_per_image(32) == 8 * 8 * 4
    assert MultiCodeFVQModel.from_preset("rq-tiny", rq_depth=2, **small).tokens_per_image(64) == 16 * 16 * 2
    var = MultiCodeFVQModel.from_preset("var-tiny", **small)
    assert (
        var.tokens_per_image(32) == 1 + 4 + 9 + 16 + 36 + 64 == var.encode_indices(torch.zeros(1, 3, 32, 32)).shape[1]
    )
