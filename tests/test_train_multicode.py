"""training/train_tokenizer.py on multi-code tokenizers (--quantizer residual / multiscale), run as a user runs it."""

import json
import sys

import pytest
import torch
from conftest import kill_at_checkpoint
from safetensors.torch import load_file
from test_training import EVALUATE, ROOT, TRAIN, metrics, run

from fvq_hf import MultiCodeFVQModel
from fvq_hf.data import DemoCropDataset
from fvq_hf.training import applied_quantizer_lr_scale, tokenizer_param_groups

sys.path.insert(0, str(ROOT / "training"))
try:
    import train_tokenizer
finally:
    sys.path.pop(0)

# 256 codes × 32 dims on 16 px crops (4 × 4 positions): seconds per run on one CPU thread
# fmt: off
TINY = [
    "--codebook_size", "256", "--codebook_dim", "32", "--bridge", "S/4",
    "--resolution", "16", "--train_batch_size", "8", "--learning_rate", "1e-3", "--no_scale_lr",
    "--demo_samples", "64", "--eval_samples", "24", "--perceptual_weight", "0", "--gan_weight", "0",
    "--report_to", "none", "--seed", "3",
]
KINDS = {
    "residual": ["--quantizer", "residual", "--model_preset", "rq-tiny", "--rq_depth", "3"],
    "multiscale": ["--quantizer", "multiscale", "--model_preset", "var-tiny", "--scales", "1,2,4"],
}
# fmt: on
LEVELS = {"residual": ["depth 1", "depth 2", "depth 3"], "multiscale": ["scale 1x1", "scale 2x2", "scale 4x4"]}


def level_counts(model, images):
    """Per-level code histograms (levels, K) of ``images``, counted here from the model's codes."""
    with torch.no_grad():
        indices = model.encode_indices(images)
    levels = model.quantize.level_indices(indices)
    return torch.stack([torch.bincount(level.reshape(-1), minlength=model.config.codebook_size) for level in levels])


@pytest.mark.parametrize("kind", ["residual", "multiscale"])
def test_multicode_run_reports_exact_per_level_usage(tmp_path, kind):
    out = tmp_path / kind
    # the multiscale run also trains its quantizer at a quarter of the rate (checked below)
    slower = ["--quantizer_lr_scale", "0.25"] if kind == "multiscale" else []
    result = run(
        [TRAIN, *TINY, *KINDS[kind], *slower, "--max_train_steps", "3", "--logging_steps", "1"]
        + ["--output_dir", str(out)]
    )
    assert f"MultiCodeFVQModel.from_pretrained('{out}')" in result.stdout
    assert "per level: " + LEVELS[kind][0] in result.stdout  # the log line of each evaluation

    summary = json.loads((out / "train_results.json").read_text())
    levels = summary["evaluation"]["extra"]["levels"]
    assert [level["level"] for level in levels] == LEVELS[kind]

    # the numbers are those of the saved model on the held-out cells, counted here independently
    model = MultiCodeFVQModel.from_pretrained(out).eval()
    images = torch.stack([DemoCropDataset("parts", 16, num_samples=24, seed=3)[i] for i in range(24)])
    counts = level_counts(model, images)
    assert [level["used_codes"] for level in levels] == (counts > 0).sum(1).tolist()
    assert [level["tokens"] for level in levels] == counts.sum(1).tolist()
    overall = int((counts.sum(0) > 0).sum())  # a code is used overall when any level chose it
    assert summary["evaluation"]["used_codes"] == overall
    assert summary["evaluation"]["usage"] == pytest.approx(overall / 256)
    tokens_per_image = 4 * 4 * 3 if kind == "residual" else 1 + 4 + 16
    assert summary["evaluation"]["extra"]["tokens_per_code"] == round(24 * tokens_per_image / 256, 2)

    # per-level usage in the metrics (training window and evaluation) and in the card
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    key = LEVELS[kind][-1].replace(" ", "_")
    assert sum(f"train_usage_window/{key}" in row for row in rows) == 3
    assert [row[f"eval/usage_{key}"] for row in rows if f"eval/usage_{key}" in row] == [levels[-1]["usage"]]
    card = (out / "README.md").read_text()
    assert f"| {LEVELS[kind][0]} (" in card and "| quantizer |" in card
    assert "from fvq_hf import MultiCodeFVQModel" in card and "to_diffusers()" not in card
    if slower:  # the quantizer's rate is logged beside the others' and the card names the departure
        assert all(row["lr_quantizer"] == pytest.approx(row["lr"] * 0.25) for row in rows if "lr" in row)
        assert "trained at 0.25 × the learning rate of the encoder and decoder" in card
        assert "quantizer (codebook, projector, φ) × 0.25" in card
    else:
        assert all("lr_quantizer" not in row for row in rows) and "× the learning rate" not in card

    if kind == "residual":  # the standalone evaluator loads the saved class and measures the same
        report = run(
            [EVALUATE, "--pretrained_model_name_or_path", str(out), "--resolution", "16", "--eval_samples", "24"]
            + ["--seed", "3", "--output_json", str(tmp_path / "eval.json")]
        )
        assert "| usage, depth 1 |" in report.stdout
        evaluation = json.loads((tmp_path / "eval.json").read_text())
        # the same numbers less tokens_per_code, which the training script adds
        assert evaluation["extra"]["levels"] == [
            {k: v for k, v in lv.items() if k != "tokens_per_code"} for lv in levels
        ]


def test_killed_multicode_run_resumes_exactly(tmp_path):
    # the per-level usage window (3 steps) spans the kill at step 4: it is part of the checkpointed state
    args = [*TINY, *KINDS["residual"], "--max_train_steps", "7", "--logging_steps", "3", "--checkpointing_steps", "4"]
    args += ["--slot_restart_steps", "2", "--eval_samples", "8"]
    run([TRAIN, *args, "--output_dir", str(tmp_path / "straight")])
    killed = tmp_path / "killed"
    kill_at_checkpoint([TRAIN, *args, "--output_dir", str(killed)], killed / "checkpoints" / "checkpoint-4")
    resumed = run([TRAIN, *args, "--output_dir", str(killed), "--resume_from_checkpoint", "latest"])
    assert "resumed from" in resumed.stdout

    first, second = metrics(tmp_path / "straight"), metrics(killed)
    keys = ["loss", "train_usage_window", "train_live_slots_window"] + [
        f"train_usage_window/{name.replace(' ', '_')}" for name in LEVELS["residual"]
    ]
    for step in (6, 7):
        assert all(second[step][key] == first[step][key] for key in keys), step
    a = load_file(tmp_path / "straight" / "diffusion_pytorch_model.safetensors")
    b = load_file(killed / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    results = [json.loads((folder / "train_results.json").read_text()) for folder in (tmp_path / "straight", killed)]
    assert results[0]["evaluation"]["extra"]["levels"] == results[1]["evaluation"]["extra"]["levels"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--rq_depth", "4"], "--rq_depth sets the residual quantizer: add --quantizer residual"),
        (["--quantizer", "residual", "--scales", "1,2"], "--scales sets the multiscale quantizer"),
        (["--quantizer", "multiscale", "--scales", "1,3,2"], "each larger than the one before"),
        (["--quantizer", "multiscale", "--scales", "1,x"], "comma-separated integers"),
        (["--model_preset", "rq-tiny"], "rq-tiny is a residual tokenizer, not --quantizer single: pass --quantizer"),
        (["--quantizer", "residual", "--model_preset", "var-tiny"], "var-tiny is a multiscale tokenizer"),
        (["--quantizer", "residual", "--l2_normalize"], "--l2_normalize is an option of single-code"),
        (["--quantizer", "multiscale", "--phi_ratio", "2"], "--phi_ratio 2.0: a ratio in [0, 1]"),
        (["--quantizer", "residual", "--cosine_search"], "--cosine_search sets the multiscale quantizer"),
    ],
)
def test_flags_that_do_not_fit_the_quantizer_are_refused(capsys, flags, message):
    with pytest.raises(SystemExit):
        train_tokenizer.parse_args(flags)
    assert message in capsys.readouterr().err


def test_quantizer_picks_its_default_preset_and_resolution_must_fit_the_last_scale():
    assert train_tokenizer.parse_args([]).model_preset == "vq-16"
    assert train_tokenizer.parse_args(["--quantizer", "residual"]).model_preset == "rq-8x8x4"
    args = train_tokenizer.parse_args(["--quantizer", "multiscale", "--model_preset", "var-tiny", "--scales", "1,2,4"])
    assert args.model_preset == "var-tiny" and args.scales == "1,2,4"
    model = MultiCodeFVQModel.from_preset("var-tiny", codebook_size=64, codebook_dim=8, bridge="S/4", scales=(1, 2, 4))
    args.resolution = 32  # 8 × 8 latents at 4× downsampling, but the last scale is 4
    with pytest.raises(SystemExit, match="pass --resolution 16, or --scales ending in 8"):
        train_tokenizer.check_resolution(args, model)
    args.resolution = 16
    train_tokenizer.check_resolution(args, model)


def test_configs_hold_the_official_multicode_recipes_and_small_demos():
    configs = ROOT / "training" / "configs"
    rq = train_tokenizer.parse_args(["--config", str(configs / "fvq-rq-16k.yaml")])
    var = train_tokenizer.parse_args(["--config", str(configs / "fvq-var-16k.yaml")])
    assert (rq.quantizer, rq.model_preset, rq.num_train_epochs, rq.lr_warmup_ratio) == ("residual", "rq-8x8x4", 10, 0.1)
    assert (var.quantizer, var.model_preset, var.num_train_epochs, var.lr_warmup_ratio) == (
        "multiscale",
        "var-10scale",
        40,
        0.0,
    )
    assert var.cosine_search is None  # FVQ's VAR run searches by L2 distance
    for args in (rq, var):
        assert (args.learning_rate, args.lr_reference_batch, args.adam_beta2, args.lr_scheduler) == (
            1e-4,
            128,
            0.95,
            "annealing",
        )
        assert (args.gan_weight, args.disc_loss_weight, args.gan_start_step, args.train_crop) == (
            0.5,
            0.5,
            20000,
            "adm",
        )
        assert args.slot_restart_steps == 0 and not args.use_ema and args.weight_decay == 0
        assert args.quantizer_lr_scale == 1  # one rate for everything, as the official trainers
    for name, preset in (("demo-cpu-rq", "rq-tiny"), ("demo-cpu-var", "var-tiny")):
        args = train_tokenizer.parse_args(["--config", str(configs / f"{name}.yaml")])
        assert args.model_preset == preset and args.resolution == 32
        assert args.dataset_name is None and args.train_data_dir is None  # the embedded photos, as demo-cpu.yaml
        model = MultiCodeFVQModel.from_preset(preset)
        train_tokenizer.check_resolution(args, model)
    # the VAR demo's departure: codes searched by cosine similarity, and the model it builds does so
    var_demo = train_tokenizer.parse_args(["--config", str(configs / "demo-cpu-var.yaml")])
    assert var_demo.cosine_search is True
    model, _ = train_tokenizer.build_model(var_demo, print)
    assert model.config.cosine_search and model.quantize.cosine_search
    # and its quantizer trains at a tenth of the rate of the encoder and decoder
    assert (var_demo.learning_rate, var_demo.quantizer_lr_scale) == (2e-4, 0.1)
    groups = tokenizer_param_groups(model, var_demo.learning_rate, var_demo.quantizer_lr_scale)
    assert [group.get("lr") for group in groups] == [None, pytest.approx(2e-5)]
    # weak bridge slots restarted at three times the single-code demo's threshold, over 300 steps
    single = train_tokenizer.parse_args(["--config", str(configs / "demo-cpu.yaml")])
    assert (var_demo.slot_restart_steps, var_demo.max_train_steps) == (25, 300)
    assert var_demo.slot_restart_threshold == pytest.approx(0.3)
    assert var_demo.slot_restart_threshold == pytest.approx(3 * single.slot_restart_threshold)


def test_quantizer_lr_scale_moves_the_quantizer_slower_and_nothing_else():
    torch.manual_seed(0)
    model = MultiCodeFVQModel.from_preset("var-tiny", codebook_size=64, codebook_dim=8, bridge="S/4", scales=(1, 2, 4))
    model.encoder.conv_in.weight.requires_grad_(False)  # a frozen parameter stays out of both groups
    groups = tokenizer_param_groups(model, 1e-3, 0.1)
    quantizer = {id(p) for p in model.quantize.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in trainable)
    assert all(id(p) not in quantizer for p in groups[0]["params"])
    assert {id(p) for p in groups[1]["params"]} == quantizer and groups[1]["lr"] == pytest.approx(1e-4)
    assert tokenizer_param_groups(model, 1e-3) == [{"params": trainable}]

    # one Adam step from a real loss: the first step moves each weight by about its group's rate
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(groups, lr=1e-3)
    images = torch.stack([DemoCropDataset("parts", 16, num_samples=4, seed=0)[i] for i in range(4)])
    out = model(images)
    (torch.nn.functional.mse_loss(out.sample, images) + out.codebook_loss + out.commitment_loss).backward()
    optimizer.step()
    moved = {name: (p.detach() - before[name]).abs().max().item() for name, p in model.named_parameters()}
    assert moved["encoder.conv_in.weight"] == 0
    assert max(v for k, v in moved.items() if k.startswith("quantize.")) == pytest.approx(1e-4, rel=0.05)
    assert max(v for k, v in moved.items() if not k.startswith("quantize.")) == pytest.approx(1e-3, rel=0.05)


def test_quantizer_lr_scale_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        train_tokenizer.parse_args(["--quantizer_lr_scale", "0"])
    assert "--quantizer_lr_scale 0.0: a positive multiplier" in capsys.readouterr().err
    model = MultiCodeFVQModel.from_preset("rq-tiny", codebook_size=16, codebook_dim=4, bridge="S/4")
    with pytest.raises(ValueError, match="quantizer_lr_scale must be positive"):
        tokenizer_param_groups(model, 1e-3, -0.1)


def test_a_frozen_codebook_gets_one_group_and_no_scale_in_the_card():
    # fine-tuning a folded tokenizer: its codebook is frozen, so there is no quantizer to train at another rate,
    # and the multiplier main() reports for the card is 1
    folded = MultiCodeFVQModel.from_preset("rq-tiny", codebook_size=16, codebook_dim=4, bridge="S/4").fold()
    folded.quantize.embedding.weight.requires_grad_(False)
    groups = tokenizer_param_groups(folded, 1e-3, 0.1)
    assert len(groups) == 1 and "lr" not in groups[0]
    applied = applied_quantizer_lr_scale(torch.optim.Adam(groups, lr=1e-3).param_groups, 0.1)
    assert applied == 1.0
    args = train_tokenizer.parse_args(["--quantizer_lr_scale", "0.1"])
    assert not any("quantizer" in line for line in train_tokenizer.training_departures(args, None, applied))
    unfolded = MultiCodeFVQModel.from_preset("rq-tiny", codebook_size=16, codebook_dim=4, bridge="S/4")
    assert applied_quantizer_lr_scale(tokenizer_param_groups(unfolded, 1e-3, 0.1), 0.1) == 0.1
    scaled = train_tokenizer.training_departures(args, None, 0.1)
    assert any("trained at 0.1 × the learning rate" in line for line in scaled)
