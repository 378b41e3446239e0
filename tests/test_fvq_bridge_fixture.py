"""VQBridge against numbers made once with the official FVQ bridge code (tests/fixtures/fvq_bridge/README.md)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fvq_hf.quantization import VQBridge

FIXTURE = Path(__file__).parent / "fixtures" / "fvq_bridge"
CASES = json.loads((FIXTURE / "cases.json").read_text())


@pytest.mark.parametrize("flavour", ["vit", "dit"])
def test_bridged_codebook_equals_the_official_bridges(flavour):
    official = load_file(FIXTURE / f"{flavour}_bridge.safetensors")
    prefix = "quantize.qbridge."
    weights = {k[len(prefix) :]: v for k, v in official.items() if k.startswith(prefix)}
    # QBridge-XS/2: 4 heads of 8 dimensions, patch 2, depth 2
    bridge = VQBridge(CASES["codebook_size"], CASES["codebook_dim"], 2, 32, 4, 2, flavour=flavour).eval()
    if flavour == "dit":  # the fixed sin-cos table: ours is built the way the official code builds it
        torch.testing.assert_close(bridge.pos_embed.detach(), weights["pos_embed"], rtol=0, atol=1e-6)
    bridge.load_state_dict(weights)  # strict: every official key, no other
    with torch.no_grad():
        bridged = bridge(official["quantize.embedding.weight"])
    expected = load_file(FIXTURE / f"{flavour}_output.safetensors")["bridged_codebook"]
    torch.testing.assert_close(bridged, expected, rtol=1e-4, atol=1e-5)
