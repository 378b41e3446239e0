"""Sampling (guidance, interval, filters, RNG) and FVQPipeline (labels, outputs, save/load, the Hub)."""

import numpy as np
import pytest
import torch
from conftest import small_model
from PIL import Image
from test_transformer import tiny_transformer

from fvq_hf import FVQPipeline, generate
from fvq_hf.generation import filter_logits, sampling
from fvq_hf.generation.pipeline import DEFAULT_SAMPLING


def naive_greedy(model, labels, num_tokens):
    """Greedy decoding that recomputes the whole forward for every token: no cache."""
    tokens = torch.zeros(len(labels), 0, dtype=torch.long)
    for _ in range(num_tokens):
        padded = torch.cat([tokens, torch.zeros(len(labels), 1, dtype=torch.long)], 1)
        logits = model(padded, labels).logits[:, -1]
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], 1)
    return tokens


def test_greedy_with_cache_equals_recomputation():
    model = tiny_transformer()
    labels = torch.tensor([0, 3, 4])
    tokens = generate(model, labels, top_k=1)
    assert tokens.shape == (3, 4, 4) and tokens.dtype == torch.long
    assert torch.equal(tokens.flatten(1), naive_greedy(model, labels, 16))


def record_logits(monkeypatch):
    seen = []
    original = sampling.sample_next_token

    def recording(logits, *args, **kwargs):
        seen.append(logits.clone())
        return original(logits, *args, **kwargs)

    monkeypatch.setattr(sampling, "sample_next_token", recording)
    return seen


def test_guidance_equals_uncond_plus_scale_times_difference(monkeypatch):
    model = tiny_transformer()
    labels = torch.tensor([1, 2])
    seen = record_logits(monkeypatch)
    tokens = generate(model, labels, guidance_scale=3.0, generator=torch.Generator().manual_seed(0)).flatten(1)
    cond = model(tokens, labels).logits
    uncond = model(tokens, torch.full_like(labels, model.null_class_id)).logits
    torch.testing.assert_close(torch.stack(seen, 1), uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-4)


def test_guidance_interval_guides_only_the_first_tokens_and_drops_the_null_rows(monkeypatch):
    model = tiny_transformer()
    labels = torch.tensor([1, 2])
    seen = record_logits(monkeypatch)
    batch_sizes = []
    original = model.forward_cached

    def counting(cache, **kwargs):
        batch_sizes.append(cache.batch_size)
        return original(cache, **kwargs)

    monkeypatch.setattr(model, "forward_cached", counting)
    tokens = generate(
        model, labels, guidance_scale=2.0, guidance_interval=5, generator=torch.Generator().manual_seed(1)
    )
    tokens = tokens.flatten(1)
    cond = model(tokens, labels).logits
    uncond = model(tokens, torch.full_like(labels, model.null_class_id)).logits
    got = torch.stack(seen, 1)
    torch.testing.assert_close(got[:, :5], uncond[:, :5] + 2.0 * (cond[:, :5] - uncond[:, :5]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got[:, 5:], cond[:, 5:], rtol=1e-4, atol=1e-4)
    assert batch_sizes[:5] == [4] * 5 and set(batch_sizes[5:]) == {2}  # null rows gone from the cache


def test_scale_at_most_one_is_the_conditional_model(monkeypatch):
    model = tiny_transformer()
    seen = record_logits(monkeypatch)
    tokens = generate(model, [3], guidance_scale=1.0, generator=torch.Generator().manual_seed(2)).flatten(1)
    torch.testing.assert_close(torch.stack(seen, 1), model(tokens, torch.tensor([3])).logits, rtol=1e-5, atol=1e-5)


def test_generator_makes_samples_reproducible_and_leaves_the_global_rng():
    model = tiny_transformer()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = generate(model, [0, 1], guidance_scale=1.5, generator=torch.Generator().manual_seed(7))
    b = generate(model, [0, 1], guidance_scale=1.5, generator=torch.Generator().manual_seed(7))
    c = generate(model, [0, 1], guidance_scale=1.5, generator=torch.Generator().manual_seed(8))
    generate(model, [0, 1])  # no generator: a fresh one, still not the global RNG
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


def test_sampling_restores_training_mode():
    model = tiny_transformer().train()
    generate(model, [0], top_k=1)
    assert model.training


def test_filters():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0, -1.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, True, False, True, True]]
    # softmax: 0.636, 0.086, 0.234, 0.032, 0.012
    kept = ~torch.isinf(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [[True, False, True, False, False]]  # 0.636 < 0.7: the next one crosses and stays
    assert (~torch.isinf(filter_logits(logits, top_p=0.5))).sum() == 1
    assert torch.equal(filter_logits(logits), logits)
    model = tiny_transformer()
    tokens = generate(model, [0] * 8, top_k=3, generator=torch.Generator().manual_seed(0)).flatten(1)
    first = model(tokens, torch.zeros(8, dtype=torch.long)).logits[:, 0]
    allowed = torch.topk(first[0], 3).indices
    assert set(tokens[:, 0].tolist()) <= set(allowed.tolist())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"guidance_scale": -1.0}, "guidance_scale must be ≥ 0"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"guidance_interval": -2}, "guidance_interval"),
    ],
)
def test_bad_sampling_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(tiny_transformer(), [0], **kwargs)


def test_class_outside_the_table_is_an_error():
    with pytest.raises(ValueError, match=r"labels are 0 … 4"):
        generate(tiny_transformer(), [5])  # 5 is the null row: not a class to ask for
    with pytest.raises(ValueError, match="integers"):
        generate(tiny_transformer(), [0.5])


# ---------------------------------------------------------------------- pipeline
def tiny_pipeline(**kwargs) -> FVQPipeline:
    vqvae = small_model(codebook_size=64).fold()
    transformer = tiny_transformer()
    return FVQPipeline(
        vqvae=vqvae,
        transformer=transformer,
        id2label={0: "zero", 1: "one, uno", 2: "two", 3: "three", 4: "four"},
        **kwargs,
    )


def test_pipeline_outputs_and_labels():
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    assert pipe.get_label_ids("uno") == [1] and pipe.get_label_ids(["two", 4, "one"]) == [2, 4, 1]
    out = pipe(["zero", 3], num_images_per_label=2, generator=torch.Generator().manual_seed(0), output_type="latent")
    indices = out.images
    assert indices.shape == (4, 4, 4)
    pil = pipe(["zero", 3], num_images_per_label=2, generator=torch.Generator().manual_seed(0)).images
    assert len(pil) == 4 and isinstance(pil[0], Image.Image) and pil[0].size == (16, 16)
    pt = pipe(["zero", 3], num_images_per_label=2, generator=torch.Generator().manual_seed(0), output_type="pt").images
    expected = (pipe.vqvae.decode_indices(indices) / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(pt, expected)
    np_images = pipe(
        ["zero", 3], num_images_per_label=2, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    assert np_images.shape == (4, 16, 16, 3)
    assert np.array_equal(np.asarray(pil[1]), (np_images[1] * 255).round().astype(np.uint8))


def test_pipeline_callback_sees_every_token_and_progress():
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    steps = []
    out = pipe(
        [1],
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
        callback_on_step_end=lambda p, i, t, kw: steps.append((i, kw["tokens"].clone())),
    )
    assert [i for i, _ in steps] == list(range(16))
    assert torch.equal(steps[-1][1], out.images.flatten(1))
    preview = pipe.decode_partial(steps[3][1])
    assert preview.shape == (1, 3, 16, 16)


def test_pipeline_bad_inputs():
    pipe = tiny_pipeline()
    with pytest.raises(ValueError, match="Did you mean 'three'"):
        pipe.get_label_ids("thre")
    with pytest.raises(ValueError, match="output_type"):
        pipe([0], output_type="jpeg")
    with pytest.raises(ValueError, match="num_images_per_label"):
        pipe([0], num_images_per_label=0)
    with pytest.raises(ValueError, match="pair a transformer with the tokenizer"):
        FVQPipeline(vqvae=small_model(codebook_size=256).fold(), transformer=tiny_transformer())
    with pytest.raises(ValueError, match="unknown sampling default"):
        tiny_pipeline(sampling_defaults={"cfg": 2.0})


def test_pipeline_save_load_same_samples(tmp_path):
    pipe = tiny_pipeline(sampling_defaults={"guidance_scale": 2.5, "top_k": 10})
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = FVQPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.id2label == pipe.config.id2label and loaded.get_label_ids("uno") == [1]
    assert loaded.config.sampling_defaults == {"guidance_scale": 2.5, "top_k": 10}
    a = pipe(["one", 2], generator=torch.Generator().manual_seed(3), output_type="latent").images
    b = loaded(["one", 2], generator=torch.Generator().manual_seed(3), output_type="latent").images
    assert torch.equal(a, b)


def test_pipeline_from_a_hub_id_through_the_online_path(hub, tmp_path):
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.push_to_hub("org/fvq-gen", token="hf_test")
    assert {"model_index.json", "vqvae/config.json", "transformer/config.json"} <= set(hub.files["org/fvq-gen"])
    loaded = FVQPipeline.from_pretrained("org/fvq-gen", token="hf_test")
    loaded.set_progress_bar_config(disable=True)
    assert any(path.startswith("/org/fvq-gen/resolve/") for _, path in hub.requests)  # really downloaded
    a = pipe([0, 4], generator=torch.Generator().manual_seed(5), output_type="latent").images
    b = loaded([0, 4], generator=torch.Generator().manual_seed(5), output_type="latent").images
    assert torch.equal(a, b)


def test_sampling_settings_given_then_saved_then_library_defaults():
    pipe = tiny_pipeline(sampling_defaults={"guidance_scale": 3.25, "temperature": 0.9, "top_k": 7, "top_p": 0.95})
    assert pipe.sampling_settings() == {
        "guidance_scale": 3.25,
        "temperature": 0.9,
        "top_k": 7,
        "top_p": 0.95,
        "guidance_interval": None,  # not saved: the library's
    }
    assert pipe.sampling_settings(top_k=0, guidance_interval=3) == {
        **pipe.sampling_settings(),
        "top_k": 0,
        "guidance_interval": 3,
    }
    assert tiny_pipeline().sampling_settings() == DEFAULT_SAMPLING
    # __call__ samples with the resolved settings: the saved ones equal the same values given
    pipe.set_progress_bar_config(disable=True)
    saved = pipe([1, 2], generator=torch.Generator().manual_seed(4), output_type="latent").images
    plain = tiny_pipeline()
    plain.set_progress_bar_config(disable=True)
    given = plain(
        [1, 2], generator=torch.Generator().manual_seed(4), output_type="latent", **pipe.sampling_settings()
    ).images
    library = plain([1, 2], generator=torch.Generator().manual_seed(4), output_type="latent").images
    assert torch.equal(saved, given) and not torch.equal(saved, library)


def test_sampling_settings_are_checked_in_one_place():
    pipe = tiny_pipeline()
    for bad, phrase in [
        ({"temperature": 0}, "temperature"),
        ({"top_k": -1}, "top-k"),
        ({"top_k": 2.5}, "top-k"),
        ({"top_p": 0}, "top-p"),
        ({"top_p": 1.5}, "top-p"),
        ({"guidance_scale": float("nan")}, "guidance scale"),
        ({"guidance_interval": -2}, "guidance interval"),
    ]:
        with pytest.raises(ValueError, match=phrase):
            pipe.sampling_settings(**bad)
        with pytest.raises(ValueError, match=phrase):
            pipe([0], **bad)
        with pytest.raises(ValueError, match=f"{phrase}.*sampling default"):
            tiny_pipeline(sampling_defaults=bad)


def test_from_pretrained_says_what_is_wrong_with_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "outputs" / "fvq-mnist-generator")
    with pytest.raises(FileNotFoundError, match="no pipeline folder at './no/such/folder': it does not exist"):
        FVQPipeline.from_pretrained("./no/such/folder")  # not "Repo id must be in the form …"
    with pytest.raises(FileNotFoundError, match="Did you mean 'outputs/fvq-mnist-generator'"):
        FVQPipeline.from_pretrained("outputs/fvq-mnist-generatr")  # a typo, not "set HF_HUB_OFFLINE=0"
    pipe.vqvae.save_pretrained(tmp_path / "tokenizer")
    with pytest.raises(ValueError, match="is a tokenizer \\(FVQModel\\).*FVQModel.from_pretrained"):
        FVQPipeline.from_pretrained(tmp_path / "tokenizer")
    pipe.transformer.save_pretrained(tmp_path / "transformer")
    with pytest.raises(ValueError, match="is a transformer alone.*FVQTransformer.from_pretrained"):
        FVQPipeline.from_pretrained(tmp_path / "transformer")
    loaded = FVQPipeline.from_pretrained("outputs/fvq-mnist-generator")  # a relative folder still loads
    assert loaded.config.id2label == pipe.config.id2label


def test_the_demo_records_usage_codes_slots_and_tokens_per_code():
    """generation_demo.py's record of a token set: codes used, live bridge slots (a slot is every p²-th code of
    each tile: 32 × 32 codes in 4 × 4 tiles, slot of code i = (row % 4) · 4 + column % 4), tokens per code."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "training" / "generation_demo.py"
    spec = importlib.util.spec_from_file_location("generation_demo", script)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    config = small_model().fold().config  # 1,024 codes laid out by a p = 4 bridge
    codes = torch.arange(1024).view(32, 32)
    slot_0 = codes[0::4, 0::4].reshape(-1)  # 64 codes, all of slot 0
    record = demo.code_usage(torch.cat([slot_0, slot_0]).view(2, 8, 8), config)
    assert record == {
        "usage": 64 / 1024,
        "used_codes": 64,
        "codebook_size": 1024,
        "tokens": 128,
        "tokens_per_code": 0.125,
        "live_slots": 1,
        "slots": 16,
    }
    assert demo.code_usage(codes.view(1, 32, 32), config)["live_slots"] == 16
