"""The training objectives do what they say: the tokenizer's L2 term is a squared error, the L2 (cosine) quantizer
normalises what it compares, and the generator learns from its class labels, on data it can fit."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from conftest import small_model

from fvq_hf import FVQPipeline
from fvq_hf.data.codes import META_FILE, write_shard
from fvq_hf.quantization import VectorQuantizer

ROOT = Path(__file__).resolve().parents[1]


def test_l2_normalised_quantizer_losses_and_gradients_are_llamagens():
    """LlamaGen's ``codebook_l2_norm`` quantizer written out: latents and codes normalised, then the usual losses
    and straight-through estimator on the normalised latents."""
    torch.manual_seed(0)
    vq = VectorQuantizer(32, 8, beta=0.25, l2_normalize=True)
    with torch.no_grad():
        vq.embedding.weight.normal_()
    z = (torch.randn(2, 8, 3, 3) * 3).requires_grad_()
    weights = torch.randn(2, 8, 3, 3)
    quantized, indices, (codebook_loss, commitment_loss) = vq(z, return_loss_breakdown=True)
    (quantized * weights).sum().add(codebook_loss + commitment_loss).backward()

    z_ref = z.detach().clone().requires_grad_()
    flat = F.normalize(z_ref.permute(0, 2, 3, 1).reshape(-1, 8), dim=-1)
    codes = F.normalize(vq.embedding.weight.detach(), dim=-1)
    nearest = torch.cdist(flat.detach(), codes).argmin(1)
    chosen = codes[nearest]
    ref_codebook, ref_commitment = F.mse_loss(chosen, flat.detach()), 0.25 * F.mse_loss(flat, chosen)
    ref_quantized = (flat + (chosen - flat).detach()).reshape(2, 3, 3, 8).permute(0, 3, 1, 2)
    (ref_quantized * weights).sum().add(ref_codebook + ref_commitment).backward()

    assert torch.equal(indices.flatten(), nearest)
    torch.testing.assert_close(quantized, ref_quantized)
    torch.testing.assert_close(codebook_loss, ref_codebook)
    torch.testing.assert_close(commitment_loss, ref_commitment)
    torch.testing.assert_close(z.grad, z_ref.grad)


def test_tokenizer_reconstruction_term_is_the_chosen_norm():
    sys.path.insert(0, str(ROOT / "training"))
    try:
        import train_tokenizer
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    images, reconstruction = torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1
    out = SimpleNamespace(sample=reconstruction, codebook_loss=torch.tensor(0.0), commitment_loss=torch.tensor(0.0))
    errors = {"l2": (reconstruction - images).pow(2).mean(), "l1": (reconstruction - images).abs().mean()}
    for name, expected in errors.items():
        args = train_tokenizer.parse_args(["--reconstruction_loss", name, "--perceptual_weight", "0"])
        _, terms = train_tokenizer.generator_loss(args, out, images, None, None, False, None)
        torch.testing.assert_close(terms["reconstruction_loss"], expected)


def codes_sequences() -> torch.Tensor:
    """Four classes, each one fixed sequence of 16 distinct tokens of 64."""
    return torch.randperm(64, generator=torch.Generator().manual_seed(0))[:64].view(4, 16)


def synthetic_codes(tmp_path) -> Path:
    """A codes folder (as extract_codes.py writes one) of ``codes_sequences()``, 8 images per class, and a tokenizer."""
    small_model(codebook_size=64).save_pretrained(tmp_path / "tokenizer")
    codes = codes_sequences().repeat(8, 1).view(32, 1, 4, 4)  # 8 images per class, one view each
    labels = torch.arange(4).repeat(8)
    (tmp_path / "codes").mkdir()
    write_shard(str(tmp_path / "codes"), 0, codes, labels)
    meta = {"tokenizer": str(tmp_path / "tokenizer"), "codebook_size": 64, "resolution": 16, "grid": [4, 4],
            "views": "one fixed sequence per class", "num_images": 32, "num_shards": 1, "shard_size": 32,
            "id2label": {str(c): f"class {c}" for c in range(4)}, "num_classes": 4, "source": "synthetic"}  # fmt: skip
    (tmp_path / "codes" / META_FILE).write_text(json.dumps(meta))
    return tmp_path / "codes"


def test_generator_learns_each_class_from_its_label(tmp_path):
    """Four classes, each one fixed token sequence: a short run drives the loss down and then greedy sampling
    writes each class's own sequence, which only a model that reads its labels can (the prefix tells nothing
    about the first token)."""
    codes = synthetic_codes(tmp_path)
    sequences = codes_sequences()
    args = ["--codes_dir", str(codes), "--output_dir", str(tmp_path / "gpt"), "--max_train_steps", "80",
            "--transformer_preset", "tiny", "--dim", "64", "--n_layer", "2", "--n_head", "2", "--train_batch_size", "8",
            "--learning_rate", "3e-3", "--no_scale_lr", "--report_to", "none", "--logging_steps", "1", "--seed", "0",
            "--num_validation_images", "1", "--validation_steps", "1000"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "training" / "train_generator.py"), *args],
                            capture_output=True, text=True, env=env, timeout=600, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    losses = [json.loads(line)["loss"] for line in (tmp_path / "gpt" / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]  # fmt: skip
    assert losses[0] > 3.0 and max(losses[-5:]) < 0.3  # from about ln 64 to a fit
    pipe = FVQPipeline.from_pretrained(tmp_path / "gpt")
    tokens = torch.stack([pipe(c, guidance_scale=1.0, top_k=1, output_type="latent").images[0] for c in range(4)])
    assert torch.equal(tokens.flatten(1), sequences)


def test_tokenizer_reconstruction_loss_goes_down_on_the_demo_photos(tmp_path):
    args = ["--model_preset", "tiny", "--codebook_size", "256", "--codebook_dim", "32", "--bridge", "S/4",
            "--resolution", "16", "--train_batch_size", "8", "--learning_rate", "1e-3", "--no_scale_lr",
            "--demo_samples", "64", "--eval_samples", "8", "--perceptual_weight", "0", "--gan_weight", "0",
            "--report_to", "none", "--logging_steps", "1", "--seed", "3", "--max_train_steps", "30",
            "--eval_steps", "1000", "--output_dir", str(tmp_path / "run")]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "training" / "train_tokenizer.py"), *args],
                            capture_output=True, text=True, env=env, timeout=600, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [row["reconstruction_loss"] for row in rows if "reconstruction_loss" in row]
    assert len(losses) == 30
    # random crops make single steps noisy: compare the first two steps with the mean of the last ten
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:2]) / 2
