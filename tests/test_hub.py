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


def test_push_folder_uploads_a_folder_without_the_ignored_files(hub, tmp_path):
    from fvq_hf.hub import TRAINING_STATE_PATTERNS, push_folder

    folder = tmp_path / "run"
    (folder / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-1" / "optimizer.bin").write_bytes(b"state")
    (folder / "config.json").write_text("{}")
    (folder / "metrics.jsonl").write_text("{}\n")
    (folder / "README.md").write_text("# card\n")
    url = push_folder(folder, "org/run", token="hf_test", ignore_patterns=TRAINING_STATE_PATTERNS, commit_message="Up")
    assert set(hub.files["org/run"]) == {"config.json", "README.md"}
    assert hub.commits[-1]["summary"] == "Up" and "org/run" in url

    push_folder(folder, "org/everything", token="hf_test")  # no patterns: the folder as it is
    assert "checkpoints/checkpoint-1/optimizer.bin" in hub.files["org/everything"]


def test_save_card_and_push_writes_the_card_and_pushes_only_when_asked(hub, tmp_path):
    from fvq_hf.hub import eval_results, model_card_data, render_model_card, save_card_and_push

    model = small_model()
    folder = tmp_path / "my-tokenizer"
    model.save_pretrained(folder)
    data = model_card_data(model_name="my-tokenizer", eval_results=eval_results({"psnr": 20.0}, "demo"))
    card = render_model_card("trained_tokenizer.md", data, title="my-tokenizer", recipe={}, repo_id="my-tokenizer")
    assert save_card_and_push(card, folder) is None and not hub.commits
    assert "model-index" in (folder / "README.md").read_text()
    url = save_card_and_push(card, folder, push_to_hub=True, token="hf_test")  # repo named after the folder
    assert "my-tokenizer" in url and "README.md" in hub.files["user/my-tokenizer"]
