"""training/train_tokenizer.py and evaluate_tokenizer.py, run as a user runs them (subprocesses)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import kill_at_checkpoint
from PIL import Image
from safetensors.torch import load_file

from fvq_hf import FVQModel

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "training" / "train_tokenizer.py")
EVALUATE = str(ROOT / "training" / "evaluate_tokenizer.py")

# a tokenizer of 256 codes × 32 dims on 16 px crops: seconds per run on 2 CPU cores
# fmt: off
TINY = [
    "--model_preset", "tiny", "--codebook_size", "256", "--codebook_dim", "32", "--bridge", "S/4",
    "--resolution", "16", "--train_batch_size", "8", "--learning_rate", "1e-3", "--no_scale_lr",
    "--demo_samples", "64", "--eval_samples", "24", "--perceptual_weight", "0", "--gan_weight", "0",
    "--report_to", "none", "--logging_steps", "1", "--seed", "3",
]
# fmt: on


def run(args, env_extra=None, check=True, launcher=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = (launcher or [sys.executable]) + args
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def metrics(output_dir):
    """The last logged values of every step (a resumed run logs the steps after its checkpoint again)."""
    rows = {}
    for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "loss" in row:
            rows[row["step"]] = row
    return rows


def test_full_tiny_run_saves_reloads_and_evaluates(tmp_path):
    out = tmp_path / "run"
    result = run(
        [
            TRAIN,
            *TINY,
            "--max_train_steps",
            "6",
            "--eval_steps",
            "3",
            "--checkpointing_steps",
            "3",
            "--perceptual_weight",
            "0.1",
            "--perceptual_random_init",
            "--gan_weight",
            "0.5",
            "--gan_start_step",
            "2",
            "--disc_layers",
            "1",
            "--use_ema",
            "--ema_decay",
            "0.9",
            "--report_to",
            "tensorboard",
            "--output_dir",
            str(out),
        ]
    )
    assert f"saved the folded tokenizer to {out}" in result.stdout
    # the demo is evaluated on two sets: the held-out cells of the training photos and two unseen photos
    assert "step 6: held-out cells of the training photos" in result.stdout
    assert "step 6: two photos never seen" in result.stdout
    summary = json.loads((out / "train_results.json").read_text())
    assert summary["steps"] == 6 and summary["num_processes"] == 1 and summary["evaluation"]["images"] == 24
    assert summary["evaluation_unseen"]["images"] == 24
    assert (out / "checkpoints" / "checkpoint-3").is_dir()
    logs = metrics(out)
    assert logs[6]["discriminator_loss"] != 0 and logs[6]["perceptual_loss"] > 0  # GAN and LPIPS were on
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "logs").rglob("*"))

    folded = FVQModel.from_pretrained(out)
    unfolded = FVQModel.from_pretrained(out, subfolder="unfolded")
    assert folded.config.folded and unfolded.config.projector == "vqbridge"
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(folded(images).indices, unfolded.eval()(images).indices)
    card = (out / "README.md").read_text()
    assert "model-index" in card and "codebook usage" in card and "Hardware:" in card
    assert "| metric | held-out cells of the training photos" in card and "| two photos never seen" in card
    assert card.count("type: usage") == 2  # a model-index entry for each set
    assert "dead-slot restart" in card and "not in the paper" in card  # on by default, and the card says so
    with_slots = [row for row in logs.values() if "train_live_slots_window" in row]
    assert len(with_slots) == 6 and all(1 <= row["train_live_slots_window"] <= 16 for row in with_slots)

    report = run(
        [
            EVALUATE,
            "--pretrained_model_name_or_path",
            str(out),
            "--resolution",
            "16",
            "--eval_samples",
            "24",
            "--seed",
            "3",
            "--output_json",
            str(tmp_path / "eval.json"),
        ]
    )
    assert "| codebook usage |" in report.stdout and "protocol:" in report.stdout
    assert "held-out cells of the training photos" in report.stdout
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    # the standalone evaluator reproduces the in-training evaluation of the saved (EMA) weights
    assert evaluation["used_codes"] == summary["evaluation"]["used_codes"]
    assert evaluation["psnr"] == pytest.approx(summary["evaluation"]["psnr"], abs=1e-3)


@pytest.mark.parametrize(
    "extra",
    [[], ["--gradient_accumulation_steps", "2", "--demo_samples", "40"], ["--slot_restart_steps", "3"]],
    ids=["plain", "accumulation-across-epochs", "slot-restart"],
)
def test_killed_run_resumes_exactly(tmp_path, extra):
    # with 5 batches per epoch and 2 per optimizer step, epochs end in the middle of an accumulation
    args = [*TINY, *extra, "--max_train_steps", "10", "--eval_steps", "100", "--checkpointing_steps", "4"]
    run([TRAIN, *args, "--output_dir", str(tmp_path / "straight")])

    killed = tmp_path / "killed"
    kill_at_checkpoint([TRAIN, *args, "--output_dir", str(killed)], killed / "checkpoints" / "checkpoint-4")
    assert not (killed / "train_results.json").exists()

    resumed = run([TRAIN, *args, "--output_dir", str(killed), "--resume_from_checkpoint", "latest"])
    assert "resumed from" in resumed.stdout
    if "--slot_restart_steps" in extra:  # the windows go on across the kill and slots are restarted after it
        assert "restarted bridge slot" in resumed.stdout
    first, second = metrics(tmp_path / "straight"), metrics(killed)
    assert sorted(second) == list(range(1, 11))
    for step in range(5, 11):
        for key in ("loss", "reconstruction_loss", "vq_loss", "lr", "train_usage_window", "train_live_slots_window"):
            assert second[step][key] == first[step][key], (step, key)
    a = load_file(tmp_path / "straight" / "diffusion_pytorch_model.safetensors")
    b = load_file(killed / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_cpu_run_sums_usage_over_ranks(tmp_path):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = run(
        [TRAIN, *TINY, "--max_train_steps", "3", "--eval_steps", "3", "--output_dir", str(out)], launcher=launcher
    )
    assert "2 process(es)" in result.stdout
    summary = json.loads((out / "train_results.json").read_text())
    assert summary["num_processes"] == 2
    # each rank evaluated half of the 24 held-out crops; the counts were summed over both
    assert summary["evaluation"]["images"] == 24
    single = run(
        [
            EVALUATE,
            "--pretrained_model_name_or_path",
            str(out),
            "--resolution",
            "16",
            "--eval_samples",
            "24",
            "--seed",
            "3",
            "--output_json",
            str(tmp_path / "single.json"),
        ]
    )
    assert single.returncode == 0
    alone = json.loads((tmp_path / "single.json").read_text())
    assert alone["used_codes"] == summary["evaluation"]["used_codes"] and alone["images"] == 24


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    for i in range(6):
        Image.new("RGB", (24, 20), (40 * i, 100, 200 - 20 * i)).save(data / f"ok_{i}.png")
    good = (data / "ok_0.png").read_bytes()
    (data / "truncated.png").write_bytes(good[: len(good) // 2])
    (data / "not_an_image.jpg").write_text("hello")
    out = tmp_path / "run"
    result = run(
        [
            TRAIN,
            *TINY,
            "--train_data_dir",
            str(data),
            "--train_batch_size",
            "4",
            "--max_train_steps",
            "4",
            "--eval_steps",
            "100",
            "--output_dir",
            str(out),
        ]
    )
    summary = json.loads((out / "train_results.json").read_text())
    assert summary["steps"] == 4 and summary["skipped_images"] > 0
    assert "unreadable image(s) were skipped" in result.stdout
    assert "not_an_image.jpg" in result.stderr or "truncated.png" in result.stderr


def test_discriminator_too_deep_for_the_crops(tmp_path):
    result = run(
        [TRAIN, *TINY, "--gan_weight", "0.5", "--max_train_steps", "1", "--output_dir", str(tmp_path / "run")],
        check=False,
    )
    assert result.returncode != 0 and "too small for a PatchGAN with --disc_layers 3" in result.stderr


def test_missing_perceptual_weights_stop_with_a_clear_message(tmp_path):
    result = run(
        [
            TRAIN,
            *TINY,
            "--perceptual_weight",
            "1.0",
            "--perceptual_weights",
            "nobody/no-vgg",
            "--max_train_steps",
            "2",
            "--output_dir",
            str(tmp_path / "run"),
        ],
        env_extra={"HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert result.returncode != 0
    assert "could not load VGG16 weights" in result.stderr and "perceptual weight 0" in result.stderr


def test_help_documents_every_option_through_accelerate_launch():
    sys.path.insert(0, str(ROOT / "training"))
    try:
        import train_tokenizer
    finally:
        sys.path.pop(0)
    parser = train_tokenizer.build_parser()
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert all(a.help for a in options), [a.dest for a in options if not a.help]
    launch = run(["-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu", TRAIN, "--help"])
    for action in options:
        assert action.option_strings[0] in launch.stdout
    for flag in (
        "--output_dir",
        "--resume_from_checkpoint",
        "--checkpoints_total_limit",
        "--push_to_hub",
        "--dataset_name",
    ):
        assert flag in launch.stdout


def test_yaml_config_sets_options_and_flags_win(tmp_path):
    sys.path.insert(0, str(ROOT / "training"))
    try:
        import train_tokenizer
    finally:
        sys.path.pop(0)
    config = tmp_path / "c.yaml"
    config.write_text("resolution: 64\nlearning_rate: 0.01\n")
    args = train_tokenizer.parse_args(["--config", str(config), "--learning_rate", "0.5"])
    assert args.resolution == 64 and args.learning_rate == 0.5
    config.write_text("resolutoin: 64\n")
    with pytest.raises(SystemExit):
        train_tokenizer.parse_args(["--config", str(config)])


def test_fine_tuning_continues_the_bridge_or_freezes_a_folded_codebook(tmp_path):
    base = tmp_path / "base"
    run([TRAIN, *TINY, "--max_train_steps", "2", "--eval_steps", "100", "--output_dir", str(base)])

    tuned = run(
        [
            TRAIN,
            *TINY,
            "--pretrained_model_name_or_path",
            str(base),
            "--max_train_steps",
            "2",
            "--eval_steps",
            "100",
            "--output_dir",
            str(tmp_path / "tuned"),
        ]
    )
    assert "raw codebook and vqbridge projector go on training" in tuned.stdout
    before = FVQModel.from_pretrained(base, subfolder="unfolded")
    after = FVQModel.from_pretrained(tmp_path / "tuned", subfolder="unfolded")
    assert not torch.equal(
        before.quantize.projector.final_layer.linear.weight, after.quantize.projector.final_layer.linear.weight
    )

    folded_only = tmp_path / "folded_only"
    FVQModel.from_pretrained(base).save_pretrained(folded_only)
    frozen = run(
        [
            TRAIN,
            *TINY,
            "--pretrained_model_name_or_path",
            str(folded_only),
            "--max_train_steps",
            "2",
            "--eval_steps",
            "100",
            "--output_dir",
            str(tmp_path / "frozen"),
        ]
    )
    assert "codebook frozen" in frozen.stdout
    result = FVQModel.from_pretrained(tmp_path / "frozen")
    original = FVQModel.from_pretrained(folded_only)
    assert torch.equal(result.quantize.embedding.weight, original.quantize.embedding.weight)
    assert not torch.equal(result.encoder.conv_in.weight, original.encoder.conv_in.weight)
    assert not (tmp_path / "frozen" / "unfolded").exists()


def test_parse_args_with_config_checks_keys_and_lets_flags_win(tmp_path):
    import argparse

    from fvq_hf.training import add_config_argument, parse_args_with_config, tracker_config

    parser = argparse.ArgumentParser()
    add_config_argument(parser)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--name", default="a")
    config = tmp_path / "c.yaml"
    config.write_text("steps: 7\nname: b\n")
    args = parse_args_with_config(parser, ["--config", str(config), "--name", "c"])
    assert (args.steps, args.name) == (7, "c")
    assert tracker_config(args) == {"config": str(config), "steps": 7, "name": "c"}
    config.write_text("- not\n- a mapping\n")
    with pytest.raises(SystemExit):
        parse_args_with_config(parser, ["--config", str(config)])


def test_resumable_batches_continue_mid_epoch_where_progress_says():
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from fvq_hf.training import TrainingProgress, resumable_batches

    loader = DataLoader(list(range(10)), batch_size=3, drop_last=True)  # 3 batches per epoch
    accelerator = Accelerator(cpu=True)
    progress = TrainingProgress()
    batches = resumable_batches(accelerator, loader, progress)
    first = [next(batches).tolist() for _ in range(4)]
    assert first[3] == first[0] and (progress.epoch, progress.batches_in_epoch) == (1, 1)

    resumed = TrainingProgress()
    resumed.load_state_dict(progress.state_dict())
    again = resumable_batches(accelerator, loader, resumed)
    assert next(again).tolist() == first[1] and (resumed.epoch, resumed.batches_in_epoch) == (1, 2)

    with pytest.raises(ValueError, match="gives no batch"):
        next(resumable_batches(accelerator, DataLoader([1], batch_size=2, drop_last=True), TrainingProgress()))


# The discriminator with its BatchNorm kept in inference mode: batch statistics make no two batch sizes
# comparable, the gradient bookkeeping under test does not depend on them.
_FIXED_NORM_RUNNER = """
import sys
import torch
sys.path.insert(0, {training!r})
import train_tokenizer
from fvq_hf.losses import PatchGANDiscriminator

class FixedNormPatchGAN(PatchGANDiscriminator):
    def train(self, mode=True):
        super().train(mode)
        for module in self.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        return self

train_tokenizer.PatchGANDiscriminator = FixedNormPatchGAN
train_tokenizer.main(sys.argv[1:])
"""


def _checkpoint(output_dir, step=1):
    """Weights and Adam first moments (0.1 × the step's gradient after one step) of tokenizer and discriminator.

    The tokenizer is saved once, as its ``from_pretrained`` folder ``model/``; Accelerate's ``model.safetensors``
    then holds the only other model, the discriminator."""
    folder = Path(output_dir) / "checkpoints" / f"checkpoint-{step}"
    moments = []
    for name in ("optimizer.bin", "optimizer_1.bin"):
        state = torch.load(folder / name, weights_only=True)["state"]
        moments.append([state[i]["exp_avg"] for i in sorted(state)])
    assert not (folder / "model_1.safetensors").exists()  # the tokenizer is not stored a second time
    tokenizer = load_file(folder / "model" / "diffusion_pytorch_model.safetensors")
    return tokenizer, load_file(folder / "model.safetensors"), moments


def _assert_same_gradients(a, b, ratio=1.0):
    scale = max(t.abs().max().item() for t in b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, ratio * y, rtol=1e-3, atol=1e-5 * scale)


def test_gan_step_with_accumulation_matches_one_double_batch_and_weights_the_discriminator_loss(tmp_path):
    runner = tmp_path / "run_fixed_norm.py"
    runner.write_text(_FIXED_NORM_RUNNER.format(training=str(ROOT / "training")))
    gan = [
        *TINY,
        "--gan_weight",
        "0.5",
        "--gan_start_step",
        "0",
        "--disc_layers",
        "1",
        "--max_grad_norm",
        "0",
        "--max_train_steps",
        "2",
        "--checkpointing_steps",
        "1",
        "--eval_steps",
        "100",
    ]
    run([str(runner), *gan, "--output_dir", str(tmp_path / "double")])
    run(
        [
            str(runner),
            *gan,
            "--train_batch_size",
            "4",
            "--gradient_accumulation_steps",
            "2",
            "--output_dir",
            str(tmp_path / "accumulated"),
        ]
    )
    run([str(runner), *gan, "--disc_loss_weight", "1", "--output_dir", str(tmp_path / "unweighted")])

    _, _, (g_moments, d_moments) = _checkpoint(tmp_path / "double")
    _, _, (g_moments_acc, d_moments_acc) = _checkpoint(tmp_path / "accumulated")
    _assert_same_gradients(g_moments_acc, g_moments)
    _assert_same_gradients(d_moments_acc, d_moments)  # both micro-batches, and nothing from the generator's loss
    # (the weights after that one Adam step are not compared: it moves every weight by about ±lr whatever the
    # gradient's size, so any two runs from the same init agree within it; the first moments above are the check)

    # the discriminator's loss is multiplied by the GAN weight before backward (0.5 by default with --gan_weight 0.5)
    _, _, (_, d_moments_unweighted) = _checkpoint(tmp_path / "unweighted")
    _assert_same_gradients(d_moments, d_moments_unweighted, ratio=0.5)
    assert json.loads((tmp_path / "double" / "train_results.json").read_text())["steps"] == 2
    assert "0.5·hinge" in (tmp_path / "double" / "README.md").read_text()


def _ema_and_weights(output_dir, step):
    folder = Path(output_dir) / "checkpoints" / f"checkpoint-{step}"
    states = [torch.load(path, weights_only=False) for path in sorted(folder.glob("custom_checkpoint_*.pkl"))]
    (ema,) = [s for s in states if isinstance(s, dict) and "shadow_params" in s]
    model = FVQModel.from_pretrained(folder / "model")  # the checkpoint's tokenizer, bridge unfolded
    return ema["shadow_params"], [p.detach() for p in model.parameters()]


def test_ema_has_a_fixed_decay_from_the_first_step_and_diffusers_warmup_is_selectable(tmp_path):
    args = [
        *TINY,
        "--use_ema",
        "--ema_decay",
        "0.5",
        "--max_train_steps",
        "3",
        "--checkpointing_steps",
        "1",
        "--eval_steps",
        "100",
    ]
    run([TRAIN, *args, "--output_dir", str(tmp_path / "fixed")])
    ema_1, weights_1 = _ema_and_weights(tmp_path / "fixed", 1)
    ema_2, weights_2 = _ema_and_weights(tmp_path / "fixed", 2)
    # step 1 already averages with the initial weights (diffusers' EMAModel would copy the weights: decay 0)
    assert any(not torch.equal(e, w) for e, w in zip(ema_1, weights_1) if e.numel() > 1)
    for e2, e1, w2 in zip(ema_2, ema_1, weights_2, strict=True):
        torch.testing.assert_close(e2, 0.5 * e1 + 0.5 * w2)
    card = (tmp_path / "fixed" / "README.md").read_text()
    assert (
        "decay 0.5 from the first step (official)" in card
        and "random crops of the demo photos, 1-3x the resolution" in card
    )

    run([TRAIN, *args, "--ema_schedule", "warmup", "--output_dir", str(tmp_path / "warmup")])
    ema_1, weights_1 = _ema_and_weights(tmp_path / "warmup", 1)
    assert all(torch.equal(e, w) for e, w in zip(ema_1, weights_1, strict=True))
    assert "diffusers EMAModel" in (tmp_path / "warmup" / "README.md").read_text()


def test_codebook_init_l2_reaches_the_model_and_l2_normalize_is_llamagens_cosine_lookup():
    sys.path.insert(0, str(ROOT / "training"))
    try:
        import train_tokenizer
    finally:
        sys.path.pop(0)
    helps = {a.dest: a.help for a in train_tokenizer.build_parser()._actions}
    assert "LlamaGen's cosine lookup" in helps["l2_normalize"] and "init" in helps["codebook_init_l2"]
    args = train_tokenizer.parse_args([*TINY, "--codebook_init_l2"])
    model, _ = train_tokenizer.build_model(args, print)
    assert model.config.codebook_init_l2 and not model.config.l2_normalize
    norms = model.quantize.embedding.weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    assert not train_tokenizer.build_model(train_tokenizer.parse_args(TINY), print)[0].config.get("codebook_init_l2")


def test_paper_configs_use_the_official_recipe_details():
    sys.path.insert(0, str(ROOT / "training"))
    try:
        import train_tokenizer
    finally:
        sys.path.pop(0)
    for size in ("16k", "65k", "262k"):
        args = train_tokenizer.parse_args(["--config", str(ROOT / "training" / "configs" / f"fvq-{size}.yaml")])
        assert (args.train_crop, args.ema_schedule, args.disc_loss_weight, args.gan_weight) == (
            "adm",
            "fixed",
            0.5,
            0.5,
        )
        assert not args.codebook_init_l2 and not args.l2_normalize
        assert args.slot_restart_steps == 0  # no dead-slot restart: the paper's recipe exactly
