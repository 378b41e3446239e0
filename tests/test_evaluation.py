import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import small_model
from torch.utils.data import DataLoader
from torchmetrics.image.fid import FrechetInceptionDistance

from fvq_hf import FVQModel
from fvq_hf.data import DemoCropDataset, collate_images
from fvq_hf.evaluation import evaluate_tokenizer
from fvq_hf.evaluation.inception import InceptionV3Features
from fvq_hf.training.outputs import save_trained_tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """FID Inception weights in pytorch-fid's layout (with its fc head), made locally."""
    torch.manual_seed(0)
    model = InceptionV3Features()
    state = dict(model.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    return path


def test_inception_features_and_fid(inception_file):
    features = InceptionV3Features.from_pretrained(str(inception_file))
    assert sum(1 for k in features.state_dict() if k.endswith("running_mean")) == 94  # the graph's 94 convolutions
    images = (torch.rand(4, 3, 32, 32) * 255).to(torch.uint8)
    assert features(images).shape == (4, 2048)
    fid = FrechetInceptionDistance(feature=features)
    fid.update(images, real=True)
    fid.update(images, real=False)
    assert abs(float(fid.compute())) < 1e-2  # identical sets
    with pytest.raises(FileNotFoundError, match="rFID needs pytorch-fid's"):
        InceptionV3Features.from_pretrained("nobody/no-inception")


def test_evaluator_counts_every_code_and_image():
    model = small_model()
    dataset = DemoCropDataset("heldout", resolution=32, num_samples=10, seed=0)
    result, pairs = evaluate_tokenizer(model, DataLoader(dataset, batch_size=4, collate_fn=collate_images), keep_first=3)
    indices = torch.cat([model.encode_indices(dataset[i][None]) for i in range(10)])
    assert result.images == 10 and result.used_codes == indices.unique().numel()
    assert result.extra["slots"] == 16 and 1 <= result.extra["live_slots"] <= 16
    assert pairs.shape == (2, 3, 3, 32, 32) and 5 < result.psnr < 60 and 0 < result.ssim <= 1


def test_evaluate_script_reports_rfid(tmp_path, inception_file):
    small_model().fold().save_pretrained(tmp_path / "model")
    out = subprocess.run(
        [sys.executable, str(ROOT / "training" / "evaluate_tokenizer.py"), "--pretrained_model_name_or_path", str(tmp_path / "model"),
         "--resolution", "32", "--eval_samples", "8", "--inception_weights", str(inception_file), "--output_json", str(tmp_path / "r.json")],
        capture_output=True, text=True, check=True,
    )
    assert "| rFID |" in out.stdout
    assert json.loads((tmp_path / "r.json").read_text())["rfid"] is not None


def test_training_output_is_pushed_with_its_card(tmp_path, hub):
    model = small_model(codebook_init_std=0.02)
    dataset = DemoCropDataset("heldout", resolution=32, num_samples=4, seed=0)
    evaluation, _ = evaluate_tokenizer(model, DataLoader(dataset, batch_size=4, collate_fn=collate_images))
    (tmp_path / "out" / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (tmp_path / "out" / "checkpoints" / "checkpoint-1" / "optimizer.bin").write_bytes(b"state")
    save_trained_tokenizer(model, str(tmp_path / "out"), evaluation=evaluation, eval_description="demo", recipe={"steps": 1},
                           push_to_hub=True, hub_model_id="org/fvq-trained", hub_token="hf_test")
    files = hub.files["org/fvq-trained"]
    assert {"config.json", "diffusion_pytorch_model.safetensors", "unfolded/config.json", "unfolded/diffusion_pytorch_model.safetensors", "README.md"} <= set(files)
    assert not any(name.startswith("checkpoints/") for name in files)
    card = files["README.md"].decode()
    assert "model-index" in card and "codebook usage" in card
    # the card says where the init departs from the paper
    assert "Departure from the paper" in card and "last Linear started from N(0, 0.02²)" in card
    assert "raw codebook started from N(0, 0.02²) instead of uniform(−1/K, 1/K)" in card
    assert FVQModel.from_pretrained("org/fvq-trained", subfolder="unfolded", token="hf_test").config.projector == "vqbridge"
