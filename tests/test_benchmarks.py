"""The benchmark scripts run end to end on tiny settings and write what they promise (no timings asserted)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_codebook_scaling_writes_a_list_of_runs_and_a_plot(tmp_path):
    out = tmp_path / "scaling"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "codebook_scaling.py"), "--sizes", "256", "--dim", "16", "--targets_per_code", "2",
         "--batch_size", "64", "--steps", "4", "--eval_every", "2", "--no-annealing-too", "--output", str(out)],
        capture_output=True, text=True, check=True,
    )
    assert "| K | projector | annealing | usage |" in result.stdout
    runs = json.loads(out.with_suffix(".json").read_text())
    assert isinstance(runs, list) and len(runs) == 8  # 4 projectors × with and without annealing
    assert {r["projector"] for r in runs} == {"none", "linear", "mlp", "vqbridge"} and {r["annealing"] for r in runs} == {True, False}
    for run in runs:
        for key in ("codebook_size", "codebook_dim", "steps", "usage", "perplexity", "psnr", "seconds_per_step", "commit"):
            assert key in run
        assert 0 <= run["usage"] <= 1 and [c["step"] for c in run["curve"]] == [0, 2, 4]
        assert run["targets"] == 512 and abs(run["uniform_assignment_usage"] - 0.8647) < 1e-3  # 1 − e^−2
    bridge = next(r for r in runs if r["projector"] == "vqbridge")
    assert bridge["slots"] == 64 and 1 <= bridge["live_slots"] <= 64  # L/8 on a 16 × 16 grid
    assert out.with_suffix(".png").stat().st_size > 1000


def test_codebook_usage_trains_every_projector_and_schedule_on_demo_photos(tmp_path):
    out = tmp_path / "usage"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "codebook_usage.py"), "--codebook_size", "256", "--codebook_dim", "16",
         "--resolution", "16", "--batch_size", "4", "--steps", "2", "--eval_every", "1", "--eval_samples", "8", "--output", str(out)],
        capture_output=True, text=True, check=True,
    )
    assert "| projector | annealing | held-out usage |" in result.stdout
    runs = json.loads(out.with_suffix(".json").read_text())
    assert len(runs) == 8 and {(r["projector"], r["annealing"]) for r in runs} == {
        (p, a) for p in ("none", "linear", "mlp", "vqbridge") for a in (True, False)}
    for run in runs:
        for key in ("codebook_size", "codebook_dim", "steps", "usage", "perplexity", "psnr", "seconds_per_step", "commit"):
            assert key in run
        assert run["codebook_size"] == 256 and run["heldout_tokens"] == 8 * 16
        # usage is exact over the 128 held-out tokens: at most 128 of the 256 codes
        assert 0 < run["usage"] <= 128 / 256 and run["used_codes"] == round(run["usage"] * 256)
        assert [c["step"] for c in run["curve"]] == [0, 1, 2] and run["psnr"] > 0
    # the plain codebook keeps VQGAN's init; every projector gets the same raw-codebook init
    assert {r["codebook_init"] for r in runs if r["projector"] != "none"} == {"N(0, 0.02^2)"}
    assert out.with_suffix(".png").stat().st_size > 1000


def test_lookup_benchmark_table_and_json(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "lookup.py"), "--sizes", "2048", "--dim", "16", "--tokens", "256", "--repeats", "1",
         "--device", "cpu", "--output", str(tmp_path / "lookup.json")],
        capture_output=True, text=True, check=True,
    )
    assert "| cpu | 2,048 | chunked |" in result.stdout and "indices differ" not in result.stdout
    data = json.loads((tmp_path / "lookup.json").read_text())
    assert {r["method"] for r in data["runs"]} == {"chunked", "full", "cdist"}
