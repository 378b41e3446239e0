"""The compiled decode step (``generate(..., compile_mode=...)``): the eager step's tokens, compiled once per row
count rather than once per position."""

import pytest
import torch
from test_generation import naive_greedy, tiny_pipeline
from test_transformer import tiny_transformer

from fvq_hf import generate


def _cpp_compiler() -> str | None:
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        return get_cpp_compiler()
    except InvalidCxxCompiler:
        return None


pytestmark = pytest.mark.skipif(
    _cpp_compiler() is None,
    reason="torch.compile on a CPU builds C++ and no C++ compiler was found (install g++ or set CXX)",
)


def sample(model, compile_mode, labels=(0, 3, 4), **kwargs):
    return generate(
        model, list(labels), generator=torch.Generator().manual_seed(5), compile_mode=compile_mode, **kwargs
    )


def test_compiled_step_samples_the_eager_tokens():
    model = tiny_transformer()
    greedy = sample(model, None, guidance_scale=2.0, top_k=1)
    assert torch.equal(sample(model, "default", guidance_scale=2.0, top_k=1), greedy)
    # fp32 sampling draws the same tokens; here guidance ends after 5 tokens, so the row count changes mid-sample
    for settings in ({"guidance_scale": 2.0}, {"guidance_scale": 2.0, "guidance_interval": 5}):
        assert torch.equal(sample(model, "default", **settings), sample(model, None, **settings)), settings
    unguided = sample(model, "default", top_k=1)
    assert torch.equal(unguided.flatten(1), naive_greedy(model, torch.tensor([0, 3, 4]), 16))


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_step_does_not_compile_per_position(mode):
    """The position is a tensor over a static cache: one graph for 16 positions of 2 rows, none more on the
    next call ("reduce-overhead" is the same step with CUDA graphs, which a CPU skips)."""
    from torch._dynamo.utils import counters

    model = tiny_transformer(n_layer=1)
    if mode == "reduce-overhead":  # the static path: the eager tokens too (fp32, sampled)
        assert torch.equal(sample(model, mode, guidance_scale=2.0), sample(model, None, guidance_scale=2.0))
    before = counters["stats"]["unique_graphs"]
    sample(model, mode, labels=(1,), guidance_scale=2.0)  # 16 decode steps of 2 rows
    assert counters["stats"]["unique_graphs"] - before == 1
    sample(model, mode, labels=(2,), guidance_scale=2.0)
    assert counters["stats"]["unique_graphs"] - before == 1


def test_pipeline_passes_the_compile_mode_and_rejects_an_unknown_one():
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    eager = pipe([0, 3], generator=torch.Generator().manual_seed(0), output_type="latent").images
    compiled = pipe([0, 3], generator=torch.Generator().manual_seed(0), output_type="latent", compile_mode="default")
    assert torch.equal(compiled.images, eager)
    with pytest.raises(ValueError, match="compile_mode must be one of"):
        sample(tiny_transformer(), "fastest")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_step_follows_the_weights(dtype):
    """On a CPU the compiled step freezes bf16 weights into its code: a second model of the same shapes, or a
    weight changed in place, must still give that model's tokens (greedy: bf16 and fp32 agree on this model)."""
    first, second = tiny_transformer().to(dtype), tiny_transformer().to(dtype)
    with torch.no_grad():
        second.output.weight.mul_(-1)
    for model in (first, second, first):
        assert torch.equal(sample(model, "default", top_k=1), sample(model, None, top_k=1))
    before = sample(first, "default", top_k=1)
    with torch.no_grad():
        first.output.weight.mul_(-1)  # in place: same tensor, same id
    after = sample(first, "default", top_k=1)
    assert not torch.equal(before, after) and torch.equal(after, sample(first, None, top_k=1))
