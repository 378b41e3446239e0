"""A user's own data, end to end, as a new user runs the scripts: a run never replaces or mixes another, every label
is true of the data it describes, and everything checkable is checked before the first step (issue #25)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_model
from PIL import Image
from test_training import TINY as TRAINING_TINY

from fvq_hf import FVQModel
from fvq_hf.data import ImageFolderDataset, build_dataset, holdout_split
from fvq_hf.data.codes import META_FILE, read_meta
from fvq_hf.data.labelled import export_image_folder, load_image_folder_with_classes, load_mnist_digits

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = str(ROOT / "training" / "train_tokenizer.py")
GENERATOR = str(ROOT / "training" / "train_generator.py")
EXTRACT = str(ROOT / "training" / "extract_codes.py")
# test_training.py's tiny tokenizer (256 codes × 32 dims on 16 px crops), on smaller batches and demo sets
TINY = [*TRAINING_TINY, "--train_batch_size", "4", "--demo_samples", "32", "--eval_samples", "8"]
# fmt: off
TINY_GPT = [
    "--transformer_preset", "tiny", "--dim", "64", "--n_layer", "2", "--n_head", "2", "--train_batch_size", "8",
    "--learning_rate", "1e-3", "--no_scale_lr", "--report_to", "none", "--logging_steps", "1", "--seed", "1",
    "--num_validation_images", "1", "--validation_steps", "100",
]
# fmt: on


def run(args, cwd=None, env_extra=None, launcher=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = (launcher or [sys.executable]) + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False, cwd=cwd)


def ok(result):
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def photos(folder: Path, count: int = 8) -> Path:
    """``count`` small photos (noise patterns, each different) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)).save(folder / f"photo_{i}.png")
    return folder


def metric_steps(folder: Path) -> list[int]:
    """The steps of the training rows of metrics.jsonl, in the order written."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [row["step"] for row in rows if "loss" in row]


# ------------------------------------------------------------------------------------ 1: no run replaces another
def test_a_new_tokenizer_run_never_replaces_or_mixes_the_run_in_its_folder(tmp_path):
    data, out = photos(tmp_path / "mine"), tmp_path / "run"
    first = [*TINY, "--max_train_steps", "4", "--checkpointing_steps", "2", "--output_dir", out]
    ok(run([TOKENIZER, *first]))
    weights = (out / "diffusion_pytorch_model.safetensors").read_bytes()
    card, steps = (out / "README.md").read_text(), metric_steps(out)
    assert (out / "run.json").is_file() and (out / "checkpoints" / "checkpoint-2" / "run.json").is_file()

    # a second run from scratch, on other data, into the same folder: stopped before it writes anything
    second = run([TOKENIZER, *TINY, "--train_data_dir", data, "--max_train_steps", "3", "--output_dir", out])
    assert second.returncode != 0 and "already holds a run" in second.stderr
    for fix in ("new --output_dir", "--resume_from_checkpoint latest", "--overwrite_output_dir"):
        assert fix in second.stderr
    assert (out / "diffusion_pytorch_model.safetensors").read_bytes() == weights
    assert (out / "README.md").read_text() == card and metric_steps(out) == steps

    # resuming that run's checkpoint under other options: stopped, the difference shown
    resumed = run([TOKENIZER, *TINY, "--train_data_dir", data, "--max_train_steps", "4", "--output_dir", out,
                   "--resume_from_checkpoint", "latest"])  # fmt: skip
    assert resumed.returncode != 0 and "was saved by another run" in resumed.stderr
    assert "--train_data_dir: None (recorded)" in resumed.stderr and "data:" in resumed.stderr
    assert (out / "diffusion_pytorch_model.safetensors").read_bytes() == weights

    # a checkpoint without a record (an older version) whose state does not fit: a clear error, not Accelerate's
    (out / "checkpoints" / "checkpoint-2" / "run.json").unlink()
    other = run([TOKENIZER, *first, "--use_ema", "--resume_from_checkpoint", "latest"])
    assert other.returncode != 0 and "does not hold this run's training state" in other.stderr
    assert "Number of custom checkpoints" not in other.stderr + other.stdout and "Traceback" not in other.stderr

    # asked for explicitly: the previous run's files go, and the new run's metrics are its own
    ok(run([TOKENIZER, *TINY, "--train_data_dir", data, "--max_train_steps", "3", "--output_dir", out,
            "--overwrite_output_dir"]))  # fmt: skip
    assert metric_steps(out) == [1, 2, 3] and not (out / "checkpoints").exists()
    assert json.loads((out / "run.json").read_text())["options"]["train_data_dir"] == str(data)


def test_the_same_run_resumes_and_a_run_killed_before_its_first_checkpoint_restarts(tmp_path):
    out = tmp_path / "run"
    args = [TOKENIZER, *TINY, "--max_train_steps", "4", "--checkpointing_steps", "2", "--output_dir", out]
    ok(run(args))
    shutil_rmtree(out / "checkpoints")
    (out / "train_results.json").unlink()
    # the same run's record, no checkpoint: starting it again loses nothing, so it is allowed, and its metrics
    # start again instead of following the first attempt's
    result = ok(run([*args, "--resume_from_checkpoint", "latest"]))
    assert "starting from scratch" in result.stdout and metric_steps(out) == [1, 2, 3, 4]
    # its own checkpoint resumes
    (out / "train_results.json").unlink()
    assert "resumed from" in ok(run([*args, "--resume_from_checkpoint", "checkpoint-2"])).stdout


def test_a_run_that_failed_before_its_first_step_leaves_nothing_that_refuses_the_corrected_command(tmp_path):
    data, out = photos(tmp_path / "mine", 3), tmp_path / "run"
    args = [TOKENIZER, *TINY, "--train_data_dir", data, "--max_train_steps", "2", "--output_dir", out]
    failed = run([*args, "--train_batch_size", "4"])  # 3 images give no batch of 4
    assert failed.returncode != 0 and "gives no batch" in failed.stderr
    assert "already holds a run" not in ok(run([*args, "--train_batch_size", "2"])).stderr
    assert json.loads((out / "run.json").read_text())["options"]["train_batch_size"] == 2


def shutil_rmtree(path):
    import shutil

    shutil.rmtree(path)


# ------------------------------------------------------------------------------------ 2: labels true of the data
def test_own_folder_without_validation_is_not_evaluated_and_says_so(tmp_path):
    data, out = photos(tmp_path / "mine"), tmp_path / "run"
    result = ok(run([TOKENIZER, *TINY, "--train_data_dir", data, "--max_train_steps", "2", "--output_dir", out,
                     "--gan_weight", "0.5", "--disc_layers", "1", "--gan_start_step", "100"]))  # fmt: skip
    log = result.stdout + result.stderr
    assert "not evaluated (no held-out data: pass --validation_fraction" in result.stdout
    assert "held-out cells" not in log and "coffee" not in log
    summary = json.loads((out / "train_results.json").read_text())
    assert summary["evaluation"] is None and "--validation_fraction" in summary["not_evaluated"]
    card = (out / "README.md").read_text()
    assert "Not evaluated: no held-out data" in card and "model-index" not in card
    assert "held-out cells" not in card and "coffee" not in card
    assert str(tmp_path) not in card  # the card names the folder, not a path on this machine
    assert "image folder mine" in card
    # the discriminator's schedule steps before its optimizer does (GAN not started yet): no warning for that
    assert "lr_scheduler.step()" not in result.stderr


def test_validation_fraction_holds_out_part_of_the_users_folder(tmp_path):
    data, out = photos(tmp_path / "mine", 10), tmp_path / "run"
    result = ok(run([TOKENIZER, *TINY, "--train_data_dir", data, "--validation_fraction", "0.3",
                     "--max_train_steps", "2", "--output_dir", out]))  # fmt: skip
    assert "3 images held out of image folder mine (0.3 of it, drawn with seed 3; never trained on)" in result.stdout
    summary = json.loads((out / "train_results.json").read_text())
    assert summary["evaluation"]["images"] == 3 and "evaluation_unseen" not in summary
    card = (out / "README.md").read_text()
    # 3 images × 4 × 4 tokens over 256 codes
    assert "3 images (0.19 tokens per code)" in card and "coffee" not in card and "held-out cells" not in card
    assert "image folder mine less 0.3 held out" in card

    train = build_dataset(None, str(data), 16, seed=3, holdout_fraction=0.3)
    held = build_dataset(None, str(data), 16, seed=3, holdout_fraction=0.3, part="holdout")
    assert len(train) == 7 and len(held) == 3 and not set(train.files) & set(held.files)
    assert held.files == build_dataset(None, str(data), 16, seed=3, holdout_fraction=0.3, part="holdout").files
    assert not held.train and train.train  # held-out images get the evaluation's centre crop


def test_holdout_split_is_seeded_disjoint_and_refuses_to_leave_nothing():
    kept, held = holdout_split(100, 0.1, seed=0)
    assert len(held) == 10 and sorted(kept + held) == list(range(100))
    assert holdout_split(100, 0.1, seed=0) == (kept, held) and holdout_split(100, 0.1, seed=1)[1] != held
    assert len(holdout_split(5, 0.01)[1]) == 1  # at least one image
    with pytest.raises(ValueError, match="leaves none to train on"):
        holdout_split(1, 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        holdout_split(10, 1.5)


def test_demo_sets_only_with_the_demo_data(tmp_path):
    sys.path.insert(0, str(ROOT / "training"))
    try:
        import train_tokenizer
    finally:
        sys.path.pop(0)
    model = small_model(codebook_size=256)
    own = train_tokenizer.parse_args(["--train_data_dir", str(photos(tmp_path / "mine")), "--resolution", "16"])
    assert train_tokenizer.build_eval_datasets(own, model) == []
    dataset = train_tokenizer.parse_args(["--dataset_name", "someone/photos", "--resolution", "16"])
    assert train_tokenizer.build_eval_datasets(dataset, model) == []  # no validation split: none, said plainly
    demo = train_tokenizer.parse_args(["--resolution", "16", "--eval_samples", "4"])
    assert [prefix for prefix, *_ in train_tokenizer.build_eval_datasets(demo, model)] == ["eval", "eval_unseen"]
    with pytest.raises(SystemExit):  # nothing of the user's to hold out
        train_tokenizer.parse_args(["--validation_fraction", "0.1"])


# ------------------------------------------------------------------------------------ 3: the Hub, before training
def test_push_to_hub_without_a_token_or_a_reachable_hub_fails_before_training(tmp_path):
    home = tmp_path / "home"  # no stored token
    env = {"HF_HOME": str(home), "HF_TOKEN": "", "HF_HUB_OFFLINE": "1"}
    args = [TOKENIZER, *TINY, "--max_train_steps", "50", "--push_to_hub", "--output_dir", tmp_path / "run"]
    no_token = run(args, env_extra=env)
    assert no_token.returncode != 0 and "needs a Hub token" in no_token.stderr and "hf auth login" in no_token.stderr
    offline = run([*args, "--hub_token", "hf_test"], env_extra=env)
    assert offline.returncode != 0 and "cannot create or reach the Hub repository 'run'" in offline.stderr
    assert "HF_HUB_OFFLINE" in offline.stderr
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_push_comes_after_the_results_are_written(tmp_path, hub, monkeypatch):
    sys.path.insert(0, str(ROOT / "training"))
    try:
        import train_tokenizer
    finally:
        sys.path.pop(0)
    out = tmp_path / "run"
    results = train_tokenizer.main([*TINY, "--max_train_steps", "1", "--output_dir", str(out), "--push_to_hub",
                                    "--hub_model_id", "org/mine", "--hub_token", "hf_test"])  # fmt: skip
    files = hub.files["org/mine"]
    assert "train_results.json" in files and "README.md" in files and "run.json" not in files
    assert json.loads(files["train_results.json"])["steps"] == 1
    assert "org/mine" in files["README.md"].decode()  # the card names the repository it is published in
    assert results["hub_url"] and json.loads((out / "train_results.json").read_text())["hub_url"] == results["hub_url"]
    # the repository was created before the first step: the create request precedes every upload
    methods = [path for _, path in hub.requests]
    assert methods.index("/api/repos/create") < min(i for i, p in enumerate(methods) if "/commit/" in p)


# ------------------------------------------------------------------------------------ 4, 5, 7, 10, 11: generator data
@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """20 MNIST digits in class folders and a tiny tokenizer saved unfolded (as a training run's unfolded/)."""
    root = tmp_path_factory.mktemp("own")
    mnist = load_mnist_digits()
    labels = np.asarray(mnist.labels)
    export_image_folder(mnist, root / "digits", np.concatenate([np.flatnonzero(labels == c)[:2] for c in range(10)]))
    model = small_model(codebook_size=64, sample_size=16)
    model.save_pretrained(root / "tok" / "unfolded")
    model.fold().save_pretrained(root / "tok")
    return root


def test_codes_name_their_tokenizer_so_the_generator_finds_it_from_anywhere(labelled, tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    os.symlink(labelled / "tok", work / "tok")
    os.symlink(labelled / "digits", work / "digits")
    # a relative tokenizer path and its unfolded/ subfolder, typed in one directory …
    ok(run([EXTRACT, "--pretrained_model_name_or_path", "tok", "--subfolder", "unfolded", "--train_data_dir",
            "digits", "--output_dir", tmp_path / "codes", "--no_flip"], cwd=work))  # fmt: skip
    meta = read_meta(tmp_path / "codes")
    assert meta["tokenizer"] == str(work / "tok") and meta["tokenizer_subfolder"] == "unfolded"
    assert meta["grid"] == [4, 4]  # the tokenizer's trained resolution (16), not a preset's 32
    # … and the generator trained from another one
    result = ok(run([GENERATOR, "--codes_dir", tmp_path / "codes", *TINY_GPT, "--max_train_steps", "2",
                     "--output_dir", tmp_path / "gen"], cwd=elsewhere))  # fmt: skip
    assert "1 process(es)" in result.stdout  # finding 10: the start line says how many processes run
    card = (tmp_path / "gen" / "README.md").read_text()
    assert "`tok/unfolded`" in card and str(tmp_path) not in card

    # a tokenizer that cannot be found: one message naming the fix, no traceback
    meta["tokenizer"] = str(tmp_path / "gone")
    (tmp_path / "codes" / META_FILE).write_text(json.dumps(meta))
    missing = run([GENERATOR, "--codes_dir", tmp_path / "codes", *TINY_GPT, "--max_train_steps", "1",
                   "--output_dir", tmp_path / "gen2"])  # fmt: skip
    assert missing.returncode != 0 and "--pretrained_tokenizer" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "gen2").exists()
    ok(run([GENERATOR, "--codes_dir", tmp_path / "codes", *TINY_GPT, "--max_train_steps", "1", "--output_dir",
            tmp_path / "gen2", "--pretrained_tokenizer", labelled / "tok"]))  # fmt: skip


def test_a_wrong_resolution_is_refused_before_the_codes_folder_is_written(labelled, tmp_path):
    codes = tmp_path / "codes"
    args = [EXTRACT, "--pretrained_model_name_or_path", labelled / "tok", "--train_data_dir", labelled / "digits",
            "--output_dir", codes, "--no_flip"]  # fmt: skip
    wrong = run([*args, "--resolution", "30"])
    assert wrong.returncode != 0 and "--resolution 30 is not a positive multiple" in wrong.stderr
    assert "use e.g. 28" in wrong.stderr and not codes.exists()
    ok(run([*args, "--resolution", "32"]))  # the corrected command is not refused
    assert read_meta(codes)["grid"] == [8, 8]


def test_a_new_generator_run_never_replaces_the_run_in_its_folder(labelled, tmp_path):
    ok(run([EXTRACT, "--pretrained_model_name_or_path", labelled / "tok", "--train_data_dir", labelled / "digits",
            "--output_dir", tmp_path / "codes", "--no_flip"]))  # fmt: skip
    out = tmp_path / "gen"
    base = [GENERATOR, "--codes_dir", tmp_path / "codes", *TINY_GPT, "--output_dir", out]
    ok(run([*base, "--max_train_steps", "3", "--checkpointing_steps", "2"]))
    weights = (out / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
    again = run([*base, "--max_train_steps", "2", "--n_layer", "1"])
    assert again.returncode != 0 and "already holds a run" in again.stderr
    assert (out / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes() == weights
    other = run([*base, "--max_train_steps", "3", "--n_layer", "1", "--resume_from_checkpoint", "latest"])
    assert other.returncode != 0 and "--n_layer: 2 (recorded) vs 1 (now)" in other.stderr
    # any checkpoint holds a loadable transformer, to sample from
    from fvq_hf import FVQTransformer

    transformer = FVQTransformer.from_pretrained(out / "checkpoints" / "checkpoint-2", subfolder="transformer")
    assert transformer.config.n_layer == 2


def test_two_cpu_processes_with_torchrun_train_the_generator(labelled, tmp_path):
    ok(run([EXTRACT, "--pretrained_model_name_or_path", labelled / "tok", "--train_data_dir", labelled / "digits",
            "--output_dir", tmp_path / "codes", "--no_flip"]))  # fmt: skip
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = [GENERATOR, "--codes_dir", tmp_path / "codes", *TINY_GPT, "--train_batch_size", "4",
            "--max_train_steps", "2", "--output_dir", tmp_path / "gen"]  # fmt: skip
    result = ok(run(args, launcher=launcher))
    assert "2 process(es)" in result.stdout
    assert json.loads((tmp_path / "gen" / "train_results.json").read_text())["num_processes"] == 2


def test_images_beside_class_folders_are_named_not_silently_dropped(labelled, tmp_path):
    root = tmp_path / "classes"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / name / "a.png")
    for i in range(3):
        Image.new("RGB", (8, 8)).save(root / f"loose_{i}.png")
    with pytest.warns(UserWarning, match=r"3 image\(s\) directly in .* belong to no class folder .*loose_0.png"):
        images = load_image_folder_with_classes(root)
    assert len(images) == 2


# ------------------------------------------------------------------------------------ 6, 7, 8
def test_a_batch_of_unreadable_files_only_is_passed_over(tmp_path):
    data = photos(tmp_path / "mine", 3)
    (data / "broken.png").write_text("not an image")
    out = tmp_path / "run"
    result = ok(run([TOKENIZER, *TINY, "--train_data_dir", data, "--train_batch_size", "1",
                     "--max_train_steps", "6", "--output_dir", out]))  # fmt: skip
    summary = json.loads((out / "train_results.json").read_text())
    assert summary["steps"] == 6 and summary["skipped_images"] >= 1
    assert "broken.png" in result.stderr


def test_saved_sample_size_is_the_trained_resolution(tmp_path):
    out = tmp_path / "run"
    ok(run([TOKENIZER, *TINY, "--max_train_steps", "1", "--output_dir", out]))  # tiny preset: sample_size 32
    assert FVQModel.from_pretrained(out).config.sample_size == 16
    assert FVQModel.from_pretrained(out, subfolder="unfolded").config.sample_size == 16


def test_a_missing_or_misspelt_subfolder_is_an_error_not_the_root_model(tmp_path):
    small_model().fold().save_pretrained(tmp_path / "folded")
    with pytest.raises(FileNotFoundError, match="has no subfolder 'unfolded'"):
        FVQModel.from_pretrained(tmp_path / "folded", subfolder="unfolded")
    small_model().save_pretrained(tmp_path / "both" / "unfolded")
    small_model().fold().save_pretrained(tmp_path / "both")
    with pytest.raises(FileNotFoundError, match=r"has no subfolder 'unfoled' \(subfolders with a model: unfolded\)"):
        FVQModel.from_pretrained(tmp_path / "both", subfolder="unfoled")
    assert not FVQModel.from_pretrained(tmp_path / "both", subfolder="unfolded").config.folded


def test_the_image_folder_dataset_splits_without_overlap(tmp_path):
    data = photos(tmp_path / "mine", 6)
    kept = ImageFolderDataset(str(data), 16, holdout_fraction=0.5, holdout_seed=1)
    held = ImageFolderDataset(str(data), 16, train=False, holdout_fraction=0.5, part="holdout", holdout_seed=1)
    assert sorted(kept.files + held.files) == sorted(ImageFolderDataset(str(data), 16).files)
    assert isinstance(held[0], torch.Tensor)


def test_fvq_reconstruct_takes_the_users_own_images(tmp_path, capsys):
    from fvq_hf.reconstruct import main as reconstruct

    data = photos(tmp_path / "mine", 2)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "one.jpg")
    reconstruct(["--images", str(tmp_path / "one.jpg"), str(data), "--resolution", "16",
                 "--output_dir", str(tmp_path / "out")])  # fmt: skip
    printed = capsys.readouterr().out
    assert "3 images at 16px" in printed and "one.jpg" in printed and "photo_1.png" in printed
    assert (tmp_path / "out" / "reconstructions.png").is_file()
    with pytest.raises(SystemExit, match="no such file or folder"):
        reconstruct(["--images", str(tmp_path / "nope.png")])


def test_validation_fraction_holds_out_rows_of_a_datasets_dataset(tmp_path):
    from fvq_hf.data import HFImageDataset

    data = photos(tmp_path / "mine", 10)
    parts = {
        part: HFImageDataset(
            str(data),
            16,
            holdout_fraction=0.2,
            part=part,
            holdout_seed=3,
            train=part == "train",
            cache_dir=str(tmp_path / "cache"),
        )
        for part in ("train", "holdout")
    }
    rows = {part: [row["image"]["path"] for row in dataset.dataset] for part, dataset in parts.items()}
    assert len(rows["train"]) == 8 and len(rows["holdout"]) == 2 and not set(rows["train"]) & set(rows["holdout"])
    assert len(list(parts["holdout"])) == 2  # every held-out row is evaluated
    with pytest.raises(ValueError, match="cannot hold out rows of a streamed dataset"):
        HFImageDataset(str(data), 16, streaming=True, holdout_fraction=0.2)


def test_missing_perceptual_weights_name_the_flag_that_trains_without_them(tmp_path):
    result = run([TOKENIZER, *TINY, "--perceptual_weight", "1", "--perceptual_weights", "nobody/no-vgg",
                  "--max_train_steps", "1", "--output_dir", tmp_path / "run"], env_extra={"HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert result.returncode != 0 and "--perceptual_weight 0" in result.stderr


def test_any_tokenizer_checkpoint_loads_with_from_pretrained(tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    ok(run([TOKENIZER, *TINY, "--max_train_steps", "3", "--checkpointing_steps", "2", "--output_dir", out]))
    checkpoint = out / "checkpoints" / "checkpoint-2"
    model = FVQModel.from_pretrained(checkpoint, subfolder="model")
    assert not model.config.folded and model.config.sample_size == 16
    saved = load_file(checkpoint / "model" / "diffusion_pytorch_model.safetensors")  # the weights the resume loads
    assert all(torch.equal(value, saved[name]) for name, value in model.state_dict().items())
    assert not list(checkpoint.glob("model*.safetensors"))  # and their only copy: Accelerate's files hold none
