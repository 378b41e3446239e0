"""FVQTransformer and generate() against numbers made once with LlamaGen's own code (tests/fixtures/llamagen/README.md)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fvq_hf import FVQTransformer, generate

FIXTURE = Path(__file__).parent / "fixtures" / "llamagen"
CASES = json.loads((FIXTURE / "cases.json").read_text())


def llamagen_model(name: str) -> FVQTransformer:
    model = FVQTransformer(**CASES["config"], n_kv_head=CASES["models"][name]["n_kv_head"]).eval()
    model.load_state_dict(load_file(FIXTURE / f"{name}_weights.safetensors"))  # strict: LlamaGen's key names
    return model


@pytest.mark.parametrize("name", ["mha", "gqa"])
def test_teacher_forcing_logits_equal_llamagens(name):
    model, ref = llamagen_model(name), load_file(FIXTURE / f"{name}_outputs.safetensors")
    with torch.no_grad():
        logits = model(ref["tokens"], ref["classes"]).logits
    torch.testing.assert_close(logits, ref["logits"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", range(len(CASES["models"]["mha"]["samples"])))
def test_samples_equal_llamagens_generate(case):
    """Greedy and sampled tokens, guided and not, with temperature, top-k, top-p and a guidance interval."""
    s = CASES["models"]["mha"]["samples"][case]
    ref = load_file(FIXTURE / "mha_outputs.safetensors")[f"sample{case}"]
    tokens = generate(
        llamagen_model("mha"),
        s["labels"],
        guidance_scale=s["cfg_scale"],
        temperature=s["temperature"],
        top_k=s["top_k"],
        top_p=s["top_p"],
        guidance_interval=None if s["cfg_interval"] < 0 else s["cfg_interval"] + 2,  # LlamaGen guides c + 2 tokens
        generator=torch.Generator().manual_seed(s["seed"]),  # LlamaGen drew from the global RNG seeded alike
    )
    assert torch.equal(tokens.flatten(1), ref)


def test_grouped_query_attention_decodes_with_the_cache_as_the_full_forward_does():
    """LlamaGen's cache cannot hold fewer key/value heads, so its generate() has no GQA samples: the cached decode
    of the GQA model is checked against greedy decoding through the full forward, whose logits are LlamaGen's."""
    model = llamagen_model("gqa")
    labels = torch.tensor([0, 2, 4])
    tokens = generate(model, labels, guidance_scale=3.0, top_k=1).flatten(1)
    null = torch.full_like(labels, model.null_class_id)
    with torch.no_grad():
        cond, uncond = model(tokens, labels).logits, model(tokens, null).logits
    assert torch.equal(tokens, (uncond + 3.0 * (cond - uncond)).argmax(-1))
