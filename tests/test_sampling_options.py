"""Every sampling option a caller gives FVQPipeline reaches generate(), over the pipeline's saved defaults."""

import pytest
import torch
from conftest import small_model
from test_transformer import tiny_transformer

from fvq_hf import FVQPipeline, generate

SAVED = {"guidance_scale": 3.0, "temperature": 0.7, "top_k": 8, "top_p": 0.9, "guidance_interval": 6}
GIVEN = {"guidance_scale": 1.5, "temperature": 1.6, "top_k": 3, "top_p": 0.4, "guidance_interval": 2}


@pytest.fixture(scope="module")
def pipe() -> FVQPipeline:
    pipe = FVQPipeline(small_model(codebook_size=64).fold(), tiny_transformer(), sampling_defaults=SAVED)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("option", list(GIVEN))
def test_the_callers_option_wins_over_the_saved_default(pipe, option):
    transformer = pipe.transformer
    labels = [0, 1, 2, 3, 4, 0]

    def direct(**settings):
        return generate(transformer, labels, generator=torch.Generator().manual_seed(5), **settings)

    got = pipe(labels, generator=torch.Generator().manual_seed(5), output_type="latent", **{option: GIVEN[option]})
    assert torch.equal(got.images, direct(**{**SAVED, option: GIVEN[option]}))
    assert not torch.equal(got.images, direct(**SAVED))  # the option changes the samples: the check can fail
    untouched = pipe(labels, generator=torch.Generator().manual_seed(5), output_type="latent").images
    assert torch.equal(untouched, direct(**SAVED))
