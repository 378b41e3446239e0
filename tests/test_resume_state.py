"""A killed run that resumes ends with the weights an uninterrupted one saves, with the EMA and the GAN on."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import kill_at_checkpoint
from safetensors.torch import load_file
from test_objectives import synthetic_codes

ROOT = Path(__file__).resolve().parents[1]


def run(script, args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "training" / script), *args],
                            capture_output=True, text=True, env=env, timeout=600, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def straight_and_resumed(tmp_path, script, args, weights):
    run(script, [*args, "--output_dir", str(tmp_path / "straight")])
    killed = tmp_path / "killed"
    kill_at_checkpoint([str(ROOT / "training" / script), *args, "--output_dir", str(killed)],
                       killed / "checkpoints" / "checkpoint-3")  # fmt: skip
    assert (
        "resumed from" in run(script, [*args, "--output_dir", str(killed), "--resume_from_checkpoint", "latest"]).stdout
    )
    return load_file(tmp_path / "straight" / weights), load_file(killed / weights)


def test_tokenizer_with_ema_and_gan_resumes_exactly(tmp_path):
    args = ["--model_preset", "tiny", "--codebook_size", "256", "--codebook_dim", "32", "--bridge", "S/4",
            "--resolution", "16", "--train_batch_size", "8", "--learning_rate", "1e-3", "--no_scale_lr",
            "--demo_samples", "64", "--eval_samples", "8", "--perceptual_weight", "0", "--gan_weight", "0.5",
            "--gan_start_step", "1", "--disc_layers", "1", "--use_ema", "--ema_decay", "0.5", "--report_to", "none",
            "--seed", "3", "--max_train_steps", "6", "--checkpointing_steps", "3", "--eval_steps", "1000"]  # fmt: skip
    a, b = straight_and_resumed(tmp_path, "train_tokenizer.py", args, "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_generator_with_ema_resumes_exactly(tmp_path):
    codes = synthetic_codes(tmp_path)
    args = ["--codes_dir", str(codes), "--transformer_preset", "tiny", "--dim", "64", "--n_layer", "2", "--n_head", "2",
            "--train_batch_size", "8", "--learning_rate", "1e-3", "--no_scale_lr", "--use_ema", "--ema_decay", "0.5",
            "--report_to", "none", "--seed", "0", "--num_validation_images", "1", "--validation_steps", "1000",
            "--max_train_steps", "6", "--checkpointing_steps", "3"]  # fmt: skip
    weights = "transformer/diffusion_pytorch_model.safetensors"
    a, b = straight_and_resumed(tmp_path, "train_generator.py", args, weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_hold_each_trained_model_once_and_resume_from_it(tmp_path):
    """The model given as ``pretrained`` lives only in its from_pretrained folder; the other prepared model (the
    discriminator's place) keeps Accelerate's file; both come back exactly, and so does a checkpoint written before
    (weights in Accelerate's files only)."""
    from accelerate import Accelerator

    from fvq_hf import FVQTransformer
    from fvq_hf.training.checkpoints import register_pretrained_folders, save_checkpoint

    def build():
        torch.manual_seed(0)
        accelerator = Accelerator(cpu=True)
        transformer = FVQTransformer(vocab_size=32, num_classes=4, dim=32, n_layer=1, n_head=2, block_size=4)
        other = torch.nn.Linear(3, 5)
        return accelerator, *accelerator.prepare(transformer, other)

    def scramble(*models):
        with torch.no_grad():
            for model in models:
                for parameter in model.parameters():
                    parameter.add_(1.0)

    accelerator, transformer, other = build()
    register_pretrained_folders(accelerator, {"transformer": transformer})
    expected = [{k: v.clone() for k, v in m.state_dict().items()} for m in (transformer, other)]
    path = save_checkpoint(accelerator, str(tmp_path / "new"), 1, pretrained={"transformer": transformer})
    accelerate_files = {
        name: load_file(os.path.join(path, name)) for name in os.listdir(path) if name.startswith("model")
    }
    assert set(accelerate_files) == {"model.safetensors"} and set(accelerate_files["model.safetensors"]) == {
        "weight",
        "bias",
    }
    assert FVQTransformer.from_pretrained(os.path.join(path, "transformer")).config.dim == 32
    scramble(transformer, other)
    accelerator.load_state(path)
    for model, state in zip((transformer, other), expected):
        assert all(torch.equal(value, state[name]) for name, value in model.state_dict().items())

    old, transformer, other = build()  # no hooks: the layout of checkpoints written before
    old_path = save_checkpoint(old, str(tmp_path / "old"), 1)
    assert {"model.safetensors", "model_1.safetensors"} <= set(os.listdir(old_path))
    accelerator, transformer, other = build()
    register_pretrained_folders(accelerator, {"transformer": transformer})
    scramble(transformer, other)
    accelerator.load_state(old_path)
    for model, state in zip((transformer, other), expected):
        assert all(torch.equal(value, state[name]) for name, value in model.state_dict().items())
