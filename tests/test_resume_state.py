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
