"""The decode step's kernels: every form gives the same tokens, the calibration picks an available one once per
process, bf16 weights keep the greedy samples, and the two paths of each module compute the same values."""

import warnings

import pytest
import torch
from test_generation import naive_greedy, tiny_pipeline
from test_transformer import tiny_transformer

from fvq_hf import generate
from fvq_hf.models import decode_kernels
from fvq_hf.models.fvq_transformer import apply_rope, apply_rope_pairs, rope_2d_table, rope_pair_tables


def sample(model, form, **kwargs):
    with decode_kernels.force_form(form):
        return generate(model, [0, 3, 4], generator=torch.Generator().manual_seed(5), **kwargs).flatten(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_form_samples_the_same_tokens(dtype):
    model = tiny_transformer().to(dtype)
    forms = decode_kernels.available_forms(model.device, dtype)
    assert {"linear", "weight_x_t"} <= set(forms)
    reference = sample(model, "linear", guidance_scale=2.0)
    greedy = sample(model, "linear", top_k=1)
    for form in forms:
        assert torch.equal(sample(model, form, guidance_scale=2.0), reference), form
        assert torch.equal(sample(model, form, top_k=1), greedy), form
    if dtype == torch.float32:  # fp32 sampling equals recomputing the full forward for every token
        assert torch.equal(greedy, naive_greedy(model, torch.tensor([0, 3, 4]), 16))


def test_forms_compute_the_same_product():
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        weight = torch.randn(48, 32).to(dtype)
        x = torch.randn(4, 32).to(dtype)
        expected = torch.nn.functional.linear(x, weight)
        for form in decode_kernels.available_forms(weight.device, dtype):
            got = decode_kernels._prepare(form, weight, 4)(x)
            assert got.shape == expected.shape and got.is_contiguous()
            torch.testing.assert_close(got, expected, rtol=1e-2 if dtype == torch.bfloat16 else 1e-5, atol=1e-5)


def test_calibration_measures_once_per_shape_and_picks_an_available_form(monkeypatch):
    monkeypatch.setattr(decode_kernels, "_CHOICES", {})
    calls = []
    original = decode_kernels._calibrate

    def counting(weights, rows, forms):
        calls.append((tuple(weights[0].shape), rows, len(weights)))
        return original(weights, rows, forms)

    monkeypatch.setattr(decode_kernels, "_calibrate", counting)
    model = tiny_transformer()
    generate(model, [0], guidance_scale=2.0, top_k=1)
    # one calibration per weight shape, for 2 rows (the guided batch); here wqkv, w1 and w3 are all 96 × 32
    assert sorted(calls) == [((32, 32), 2, 2), ((32, 96), 2, 2), ((64, 32), 2, 1), ((96, 32), 2, 6)]
    chosen = decode_kernels.calibration()
    assert all(c["form"] in decode_kernels.available_forms(model.device, torch.float32) for c in chosen.values())
    assert all(set(c["seconds"]) == {"linear", "weight_x_t"} for c in chosen.values())
    calls.clear()
    generate(tiny_transformer(), [1], guidance_scale=2.0, top_k=1)  # a new model of the same shapes: no new timing
    assert calls == []


def test_kernels_follow_the_weights():
    model = tiny_transformer()
    before = generate(model, [0, 1], top_k=1)
    with torch.no_grad():
        model.output.weight.mul_(-1)  # in place: the kernels must not keep using the old weights
    after = generate(model, [0, 1], top_k=1)
    assert torch.equal(after.flatten(1), naive_greedy(model, torch.tensor([0, 1]), 16))
    assert not torch.equal(before, after)


def test_bf16_weights_keep_the_greedy_samples():
    """Identical greedy tokens from bf16 weights (any form) and fp32: the tiny model's logits are far apart
    (output head std 0.5), so bf16 rounding, ~0.4 % of each product, does not reorder the top token."""
    model = tiny_transformer()
    fp32 = sample(model, None, top_k=1)
    assert torch.equal(sample(model.to(torch.bfloat16), None, top_k=1), fp32)


def test_half_precision_on_a_cpu_without_its_instructions_warns_once(monkeypatch):
    monkeypatch.setattr(decode_kernels, "_WARNED_SLOW_DTYPES", set())
    model = tiny_transformer()
    monkeypatch.setattr(decode_kernels, "_packing_supported", lambda dtype: False)  # a CPU without bf16 instructions
    with pytest.warns(UserWarning, match=r"without torch.bfloat16 matrix instructions.*Keep it in float32"):
        sample(model.to(torch.bfloat16), None, top_k=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample(model.to(torch.bfloat16), "linear", top_k=1)  # once per process
        sample(model.to(torch.float32), None, top_k=1)  # fp32 never
    monkeypatch.setattr(decode_kernels, "_WARNED_SLOW_DTYPES", set())
    monkeypatch.setattr(decode_kernels, "_packing_supported", lambda dtype: True)  # a CPU with them: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample(model.to(torch.bfloat16), "linear", top_k=1)


def test_unknown_or_unavailable_form_is_an_error():
    with pytest.raises(ValueError, match="unknown kernel form"), decode_kernels.force_form("fastest"):
        pass
    if "packed" not in decode_kernels.available_forms(torch.device("cpu"), torch.float32):
        with pytest.raises(ValueError, match="not available"):
            sample(tiny_transformer(), "packed", top_k=1)


def test_rope_pairs_are_apply_rope_to_the_last_bit():
    cos, sin = rope_2d_table(4, 16)
    cos2, sin2 = rope_pair_tables(cos, sin)
    x = torch.randn(2, 3, 17, 16)
    assert torch.equal(apply_rope_pairs(x, cos2, sin2), apply_rope(x, cos, sin))


def test_pipeline_samples_through_the_calibrated_kernels(monkeypatch):
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    built = []
    original = decode_kernels.DecodeKernels.for_model

    def recording(linears, rows):
        built.append(rows)
        return original(linears, rows)

    monkeypatch.setattr(decode_kernels.DecodeKernels, "for_model", recording)
    out = pipe([0, 3], generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert built  # no setting needed: the pipeline's sampling decodes with the chosen kernels
    with decode_kernels.force_form("weight_x_t"):
        forced = pipe([0, 3], generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert torch.equal(out, forced)
