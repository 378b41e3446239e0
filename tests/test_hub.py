"""push_to_hub and from_pretrained against an in-memory Hub behind huggingface_hub's own HTTP client."""

import pytest
import torch
from conftest import small_model

from fvq_hf import FVQModel


@pytest.mark.parametrize("fold", [False, True])
def test_push_to_hub_uploads_and_loads_back(hub, images, fold):
    model = small_model()
    if fold:
        model = model.fold()
    model.push_to_hub("org/fvq-test", token="hf_test")
    uploaded = hub.files["org/fvq-test"]
    assert {"config.json", "diffusion_pytorch_model.safetensors", "README.md"} <= set(uploaded)
    assert hub.commits[-1]["repo"] == "org/fvq-test"
    assert len(uploaded["diffusion_pytorch_model.safetensors"]) > 100_000

    loaded = FVQModel.from_pretrained("org/fvq-test", token="hf_test").eval()
    assert loaded.config.folded == fold
    assert any(path.startswith("/org/fvq-test/resolve/") for _, path in hub.requests)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(loaded(images).indices, model(images).indices)
