"""The benchmark scripts run end to end on tiny settings and write what they promise (no timings asserted)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import small_model
from torch.utils.data import DataLoader

from fvq_hf.data import DemoCropDataset, collate_images
from fvq_hf.evaluation import evaluate_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def test_codebook_scaling_writes_a_list_of_runs_and_a_plot(tmp_path):
    out = tmp_path / "scaling"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "codebook_scaling.py"),
            "--sizes",
            "256",
            "--dim",
            "16",
            "--targets_per_code",
            "2",
            "--batch_size",
            "64",
            "--steps",
            "4",
            "--eval_every",
            "2",
            "--no-annealing-too",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| K | projector | raw codebook init | annealing | usage |" in result.stdout
    runs = json.loads(out.with_suffix(".json").read_text())
    # every baseline with both raw-codebook inits, VQBridge once, each with and without annealing
    assert isinstance(runs, list) and len(runs) == 14
    assert {(r["projector"], r["codebook_init"], r["annealing"]) for r in runs} == {
        (p, init, a)
        for p, inits in [
            ("none", ("uniform(-1/K, 1/K)", "N(0, 0.02^2)")),
            ("linear", ("uniform(-1/K, 1/K)", "N(0, 0.02^2)")),
            ("mlp", ("uniform(-1/K, 1/K)", "N(0, 0.02^2)")),
            ("vqbridge", ("N(0, 0.02^2)",)),
        ]
        for init in inits
        for a in (True, False)
    }
    for run in runs:
        for key in (
            "codebook_size",
            "codebook_dim",
            "steps",
            "usage",
            "perplexity",
            "psnr",
            "seconds_per_step",
            "commit",
            "benchmark_seconds",
        ):
            assert key in run
        assert {"torch", "numpy", "pillow", "cpu_count", "torch_threads"} <= set(run["machine"])
        assert 0 <= run["usage"] <= 1 and [c["step"] for c in run["curve"]] == [0, 2, 4]
        assert run["targets"] == 512 and abs(run["uniform_assignment_usage"] - 0.8647) < 1e-3  # 1 − e^−2
    bridge = next(r for r in runs if r["projector"] == "vqbridge")
    assert bridge["slots"] == 64 and 1 <= bridge["live_slots"] <= 64  # L/8 on a 16 × 16 grid
    assert out.with_suffix(".png").stat().st_size > 1000


@pytest.mark.parametrize(("quantizer", "search"), [("residual", "L2"), ("multiscale", "L2"), ("multiscale", "cosine")])
def test_codebook_usage_of_multi_code_tokenizers_reports_each_level_against_its_bound(tmp_path, quantizer, search):
    out = tmp_path / quantizer
    args = ["--quantizer", quantizer, "--projectors", "none", "vqbridge", "--no-without-annealing", "--no-restart-too"]
    args += ["--rq_depth", "3"] if quantizer == "residual" else ["--scales", "1,2,4"]
    # the VAR demo's recipe: cosine search, the quantizer at a tenth of the rate
    args += ["--cosine_search", "--learning_rate", "3e-4", "--quantizer_lr_scale", "0.1"] if search == "cosine" else []
    small = ["--codebook_size", "256", "--codebook_dim", "16", "--resolution", "16", "--batch_size", "4"]
    small += ["--steps", "2", "--eval_every", "2", "--eval_samples", "8", "--output", str(out)]
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "codebook_usage.py"), *args, *small],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "per depth / scale, held-out cells (of its bound)" in result.stdout
    runs = json.loads(out.with_suffix(".json").read_text())
    # none and VQBridge over the multi-code tokenizer, then the single-code VQBridge reference
    assert [(r["quantizer"], r["projector"]) for r in runs] == [
        (quantizer, "none"),
        (quantizer, "vqbridge"),
        ("single", "vqbridge"),
    ]
    assert [r["code_search"] for r in runs] == [search, search, "L2"]  # the single-code reference searches by L2
    if search == "cosine":
        assert "vqbridge, cosine search" in result.stdout
        assert "| learning rate (quantizer's) |" in result.stdout and "| 0.0003 (× 0.1) |" in result.stdout
        assert {(r["learning_rate"], r["quantizer_lr_scale"]) for r in runs} == {(3e-4, 0.1)}
    else:
        assert {(r["learning_rate"], r["quantizer_lr_scale"]) for r in runs} == {(1e-3, 1.0)}
        assert "learning rate (quantizer's)" not in result.stdout
    sides = [4, 4, 4] if quantizer == "residual" else [1, 2, 4]
    assert runs[0]["tokens_per_image"] == sum(side * side for side in sides)
    assert runs[2]["tokens_per_image"] == 16 and runs[2]["single_code_reference"] and "levels" not in runs[2]
    for run in runs[:2]:
        for prefix in ("", "unseen_"):
            levels = run[f"{prefix}levels"]
            # 8 crops per set: a level of pn × pn codes can use at most min(256, 8·pn²) codes
            assert [level["bound"] for level in levels] == [min(256, 8 * side * side) for side in sides]
            for level in levels:
                assert 1 <= level["used_codes"] <= level["bound"]
                assert level["of_bound"] == level["used_codes"] / level["bound"]
            # a code is used overall when any level chose it
            used = [level["used_codes"] for level in levels]
            assert max(used) <= run[f"{prefix}used_codes"] <= sum(used)
    assert runs[1]["slots"] == 16


def test_codebook_usage_trains_every_projector_and_schedule_on_demo_photos(tmp_path):
    out = tmp_path / "usage"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "codebook_usage.py"),
            "--codebook_size",
            "256",
            "--codebook_dim",
            "16",
            "--resolution",
            "16",
            "--batch_size",
            "4",
            "--steps",
            "2",
            "--eval_every",
            "1",
            "--eval_samples",
            "8",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| projector | annealing | usage, held-out cells | used codes | live slots | usage, unseen photos |" in (
        result.stdout
    )
    runs = json.loads(out.with_suffix(".json").read_text())
    # 4 projectors × with and without annealing, and VQBridge with annealing but no slot restart (the paper's)
    assert len(runs) == 9 and sorted((r["projector"], r["annealing"], r["slot_restart"]) for r in runs) == sorted(
        [
            (p, a, True if p == "vqbridge" else None)
            for p in ("none", "linear", "mlp", "vqbridge")
            for a in (True, False)
        ]
        + [("vqbridge", True, False)]
    )
    for run in runs:
        for key in (
            "codebook_size",
            "codebook_dim",
            "steps",
            "usage",
            "perplexity",
            "psnr",
            "seconds_per_step",
            "commit",
        ):
            assert key in run
        assert run["codebook_size"] == 256 and run["heldout_tokens_per_set"] == 8 * 16
        # usage is exact over the 128 tokens of each held-out set: at most 128 of the 256 codes
        for prefix in ("", "unseen_"):
            assert 0 < run[f"{prefix}usage"] <= 128 / 256
            assert run[f"{prefix}used_codes"] == round(run[f"{prefix}usage"] * 256)
        assert [c["step"] for c in run["curve"]] == [0, 1, 2] and run["psnr"] > 0
    # the baselines keep VQGAN's init (the paper's), VQBridge gets the project's
    assert {r["codebook_init"] for r in runs if r["projector"] != "vqbridge"} == {"uniform(-1/K, 1/K)"}
    assert {r["codebook_init"] for r in runs if r["projector"] == "vqbridge"} == {"N(0, 0.02^2)"}
    assert out.with_suffix(".png").stat().st_size > 1000


def test_codebook_usage_resumes_a_killed_comparison_with_the_figures_of_an_uninterrupted_one(tmp_path):
    script = [sys.executable, str(ROOT / "benchmarks" / "codebook_usage.py")]
    settings = ["--projectors", "none", "linear", "vqbridge", "--no-without-annealing", "--no-restart-too"]
    settings += ["--codebook_size", "256", "--codebook_dim", "16", "--resolution", "16", "--batch_size", "4"]
    settings += ["--steps", "2", "--eval_every", "2", "--eval_samples", "8"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([*script, *settings, "--output", str(whole)], capture_output=True, text=True, check=True)

    partial = tmp_path / "killed.partial.json"
    process = subprocess.Popen([*script, *settings, "--output", str(killed)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not partial.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()  # as a session's end or an out-of-memory kill would: no chance to clean up
    process.wait()
    saved = json.loads(partial.read_text())
    assert len(saved["runs"]) == 1 and not killed.with_suffix(".json").exists()

    resumed = subprocess.run([*script, *settings, "--output", str(killed)], capture_output=True, text=True, check=True)
    assert f"resuming: 1 finished run(s) read from {partial}" in resumed.stdout
    assert not partial.exists()  # served its purpose once the results are written
    timing = {"seconds_per_step", "benchmark_seconds", "benchmark_processes"}
    expected = json.loads(whole.with_suffix(".json").read_text())
    got = json.loads(killed.with_suffix(".json").read_text())
    assert [run["projector"] for run in got] == ["none", "linear", "vqbridge"]
    assert [{k: v for k, v in run.items() if k not in timing} for run in got] == [
        {k: v for k, v in run.items() if k not in timing} for run in expected
    ]
    assert {run["benchmark_processes"] for run in got} == {2}

    # runs of another setting are refused, not mixed in, and nothing is overwritten
    saved["settings"]["steps"] = 3
    other = tmp_path / "other.partial.json"
    other.write_text(json.dumps(saved))
    command = [*script, *settings, "--output", str(tmp_path / "other")]
    refused = subprocess.run(command, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and f"{other} holds 1 finished run(s) of another settings" in refused.stderr
    assert json.loads(other.read_text()) == saved


def test_lookup_benchmark_table_and_json(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "lookup.py"),
            "--sizes",
            "2048",
            "--dim",
            "16",
            "--tokens",
            "256",
            "--repeats",
            "1",
            "--device",
            "cpu",
            "--output",
            str(tmp_path / "lookup.json"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| cpu | 2,048 | chunked |" in result.stdout and "indices differ" not in result.stdout
    data = json.loads((tmp_path / "lookup.json").read_text())
    assert {r["method"] for r in data["runs"]} == {"chunked", "full", "cdist"}


SAMPLING_TINY = ["--preset", "tiny", "--vocab_size", "64", "--num_classes", "10", "--num_tokens", "16"]
SAMPLING_TINY += ["--repeats", "1", "--bandwidth_mib", "8", "--device", "cpu"]


def run_sampling_benchmark(tmp_path, *flags):
    out = tmp_path / "sampling.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sampling.py"), *SAMPLING_TINY, *flags, "--output", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    machines = json.loads(out.read_text())["machines"]  # one entry per machine: this run's only
    (entry,) = machines.values()
    return result.stdout, entry


def test_sampling_benchmark_table_json_and_greedy_cache_equals_recomputation(tmp_path):
    flags = ["--batch_sizes", "1", "3", "--top_k", "1", "--uncached_stride", "1", "--compile_modes", "default"]
    stdout, data = run_sampling_benchmark(tmp_path, *flags)
    assert (
        "| machine | batch | method | s / batch | vs LlamaGen's loop | tokens/s |" in stdout
        and "tokens differ" not in stdout
    )
    for key in ("commit", "versions", "machine", "settings", "load_average_before", "load_average_after", "results"):
        assert key in data
    assert data["versions"]["torch"] == data["machine"]["torch"] and data["settings"]["num_tokens"] == 16
    (cpu,) = data["results"]
    # the tiny preset: 4 blocks × (wqkv 128·384 + wo 128·128 + w1, w3, w2 3 · 128·352) + head 64·128, fp32
    assert cpu["weight_bytes_per_token"] == 4 * (4 * (128 * 384 + 128 * 128 + 3 * 128 * 352) + 64 * 128)
    assert cpu["bandwidth"]["read_bytes_per_s"] > 0 and cpu["bandwidth"]["copy_bytes_per_s"] > 0
    runs = cpu["runs"]
    assert {(m, b) for m in ("cache", "recompute") for b in (1, 3)} <= {(r["method"], r["batch_size"]) for r in runs}
    for run in runs:
        assert run["num_tokens"] == 16 and len(run["seconds_all"]) >= 1 and run["seconds"] > 0
        assert abs(run["tokens_per_s"] - run["batch_size"] * 16 / run["seconds"]) < 1e-6 * run["tokens_per_s"]
        assert abs(run["fraction_of_bound"] * run["seconds"] - run["bandwidth_bound_s"]) < 1e-9
    # greedy: the recomputation loop (the real one, stride 1) picks exactly the cache's tokens
    assert all(r["same_tokens_as_cache"] and not r["estimated"] for r in runs if r["method"] == "recompute")
    # and so does the compiled decode step (fp32 and bf16), its first call (the compilation) recorded apart
    compiled = [r for r in runs if "compiled" in r["method"]]
    if "no C++ compiler found" not in stdout:
        assert {(r["method"], r["batch_size"]) for r in compiled} == {
            (m, b) for m in ("cache compiled:default", "cache bf16 compiled:default") for b in (1, 3)
        }
    assert all(r["same_tokens_as_cache"] and r["first_call_seconds"] > 0 for r in compiled)


def test_sampling_benchmark_strided_recomputation_estimate(tmp_path):
    # the compiled and bf16 rows are the test above's; here only the estimate of the recomputation loop
    flags = ["--batch_sizes", "2", "--uncached_stride", "4", "--compile_modes", "--no-bf16"]
    _, data = run_sampling_benchmark(tmp_path, *flags)
    recompute = [r for r in data["results"][0]["runs"] if r["method"] == "recompute"]
    assert len(recompute) == 1 and recompute[0]["estimated"] and recompute[0]["stride"] == 4


@pytest.mark.skipif(
    not os.environ.get("LLAMAGEN_REPO"), reason="set LLAMAGEN_REPO to a FoundationVision/LlamaGen checkout"
)
def test_sampling_benchmark_times_llamagen_on_the_same_weights(tmp_path):
    flags = ["--batch_sizes", "2", "--top_k", "1", "--no-uncached", "--llamagen_repo", os.environ["LLAMAGEN_REPO"]]
    _, data = run_sampling_benchmark(tmp_path, *flags)
    llamagen = [r for r in data["results"][0]["runs"] if r["method"] == "llamagen"]
    assert len(llamagen) == 1 and llamagen[0]["same_tokens_as_cache"]


def test_heldout_sets_counts_usage_of_one_model_on_each_set(tmp_path):
    model = small_model(codebook_size=256, codebook_dim=16, sample_size=16)
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "sets"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "heldout_sets.py"),
            "--model",
            str(tmp_path / "model"),
            "--tokens_per_code",
            "1",
            "2",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| set | what | tokens per code | crops | usage |" in result.stdout
    runs = json.loads(out.with_suffix(".json").read_text())
    assert [(r["set"], r["tokens_per_code"]) for r in runs] == [
        (name, count) for name in ("cells", "band", "whole", "unseen") for count in (1, 2)
    ]
    assert out.with_suffix(".png").stat().st_size > 0 and all("commit" in r for r in runs)
    # 1 token per code: 256 tokens, 16 crops of 16 tokens; the cells' figure is the evaluator's on those crops
    cells = runs[0]
    assert cells["crops"] == 16 and runs[1]["crops"] == 32
    loader = DataLoader(DemoCropDataset("parts", 16, num_samples=16, seed=0), batch_size=8, collate_fn=collate_images)
    expected, _ = evaluate_tokenizer(model, loader)
    assert cells["used_codes"] == expected.used_codes and 0 < cells["usage"] <= 1
