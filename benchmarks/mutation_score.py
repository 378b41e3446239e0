"""Mutation score of the core modules: mutmut changes one thing at a time and runs the tests that reach it.

    pip install -e ".[mutation]"
    python benchmarks/mutation_score.py                      # the core modules, at most 30 minutes
    python benchmarks/mutation_score.py --modules src/fvq_hf/training/schedules.py --time_limit 120

The repository (tracked files and new, not ignored ones) is copied to a scratch folder and mutmut runs there, so
the working tree is never touched. Only fast in-process tests are selected (the training scripts' subprocess runs
cannot see mutmut's in-process switch); for each mutant mutmut runs just the selected tests that call the mutated
function. When the time limit ends the run, mutants not reached yet are counted as "not checked", never as
killed. The table and a JSON (commit, versions, CPU, counts, every survivor with its diff) are written; the JSON
goes to benchmarks/results/mutation.json unless --output says otherwise.

Not part of CI: a full run takes tens of minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# quantization, models, generation, training helpers, evaluation protocols
CORE_MODULES = [
    "src/fvq_hf/quantization/*.py",
    "src/fvq_hf/models/fvq_transformer.py",
    "src/fvq_hf/generation/sampling.py",
    "src/fvq_hf/generation/pipeline.py",
    "src/fvq_hf/training/schedules.py",
    "src/fvq_hf/training/ema.py",
    "src/fvq_hf/evaluation/protocols.py",
    "src/fvq_hf/evaluation/metrics.py",
]
# in-process tests of those modules, each a few seconds at most
CORE_TESTS = [
    "tests/test_quantizer.py",
    "tests/test_projectors.py",
    "tests/test_search.py",
    "tests/test_usage.py",
    "tests/test_slot_restart.py",
    "tests/test_slot_restart_windows.py",
    "tests/test_fvq_bridge_fixture.py",
    "tests/test_transformer.py",
    "tests/test_llamagen_fixture.py",
    "tests/test_generation.py",
    "tests/test_sampling_options.py",
    "tests/test_schedules.py",
    "tests/test_scheduler_options.py",
    "tests/test_objectives.py::test_l2_normalised_quantizer_losses_and_gradients_are_llamagens",
    "tests/test_evaluation_cmyk.py",
    "tests/test_evaluation.py::test_center_crop_without_resize_is_the_central_pixels",
    "tests/test_evaluation.py::test_adm_crop_resizes_the_short_side_first",
    "tests/test_evaluation.py::test_jpeg_round_trip_is_what_pillow_writes_to_a_jpeg_file",
    "tests/test_evaluation.py::test_quantization_follows_each_reference_code",
    "tests/test_evaluation.py::test_psnr_y_is_the_bt601_luma_psnr",
    "tests/test_evaluation.py::test_ssim_matches_piq_and_scikit_image_and_data_range_2_inflates_it",
    "tests/test_evaluation.py::test_fast_protocol_is_unchanged_by_a_free_text_description",
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modules", nargs="+", default=CORE_MODULES, help="files (globs) to mutate")
    p.add_argument("--tests", nargs="+", default=CORE_TESTS, help="pytest node ids that may kill them")
    p.add_argument("--time_limit", type=float, default=1800, help="seconds for mutmut run; the rest is not checked")
    p.add_argument("--max_children", type=int, default=2, help="mutants tested at once")
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "mutation.json"))
    p.add_argument("--keep", action="store_true", help="keep the scratch copy (its mutants/ folder) and print it")
    return p.parse_args(argv)


def copy_repository(target: Path) -> None:
    """Tracked files and new files git does not ignore, as the working tree has them now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            (target / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name.decode())


def toml_list(values) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def mutmut(scratch: Path, *args, timeout=None) -> subprocess.CompletedProcess | None:
    """mutmut in the scratch copy, its own process group (the time limit stops its workers too)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # import the mutated copy, not the tree
    command = [sys.executable, "-c", "from mutmut.__main__ import cli; cli()", *args]
    process = subprocess.Popen(
        command, cwd=scratch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None
    return subprocess.CompletedProcess(command, process.returncode, out.decode(errors="replace"), "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> dict:
    args = parse_args(argv)
    import mutmut as mutmut_package
    import torch

    def git(*command) -> str:
        return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    commit, dirty = git("rev-parse", "HEAD"), bool(git("status", "--porcelain"))  # what is copied, before the run
    scratch = Path(tempfile.mkdtemp(prefix="fvq-mutation-"))
    copy_repository(scratch)
    with open(scratch / "pyproject.toml", "a") as config:
        config.write(
            "\n[tool.mutmut]\n"
            'source_paths = ["src"]\n'
            f"only_mutate = {toml_list(args.modules)}\n"
            f"pytest_add_cli_args_test_selection = {toml_list(args.tests)}\n"
            'pytest_add_cli_args = ["-p", "no:cacheprovider"]\n'
            'also_copy = ["tests", "training"]\n'
        )
    start = time.time()
    run = mutmut(scratch, "run", "--max-children", str(args.max_children), timeout=args.time_limit)
    elapsed = time.time() - start
    if run is not None and run.returncode != 0 and "mutations/second" not in run.stdout:
        raise SystemExit(f"mutmut run failed:\n{run.stdout[-4000:]}")

    results = mutmut(scratch, "results", "--all", "true")
    statuses: dict[str, str] = {}
    for line in results.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            statuses[name] = status.strip()
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    per_module: dict[str, dict[str, int]] = {}
    for name, status in statuses.items():
        module = re.split(r"\.x[_\u01c1]", name, maxsplit=1)[
            0
        ]  # mutmut names: module.x_function or module.xǁClassǁmethod
        per_module.setdefault(module, {}).setdefault(status, 0)
        per_module[module][status] += 1
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    survived = counts.get("survived", 0)
    survivors = []
    for name in sorted(n for n, s in statuses.items() if s == "survived"):
        shown = mutmut(scratch, "show", name)
        survivors.append({"mutant": name, "diff": shown.stdout.strip() if shown else ""})

    record = {
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "modules": args.modules,
        "tests": args.tests,
        "time_limit_s": args.time_limit,
        "seconds": round(elapsed, 1),
        "finished": run is not None,
        "counts": counts,
        "counts_per_module": per_module,
        "mutants": len(statuses),
        "checked": killed + survived,
        "score": killed / (killed + survived) if killed + survived else None,
        # a mutant no selected test reaches ("no tests") is not killed either
        "score_counting_unreached": (
            killed / (killed + survived + counts.get("no tests", 0)) if killed + survived else None
        ),
        "survivors": survivors,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mutmut": getattr(mutmut_package, "__version__", "?"),
        "cpu": f"{cpu_model()}, {os.cpu_count()} cores",
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=1) + "\n")

    columns = sorted(counts)
    print("| module | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for module, module_counts in sorted(per_module.items()):
        print(f"| {module} | " + " | ".join(str(module_counts.get(c, 0)) for c in columns) + " |")
    print("| all | " + " | ".join(str(counts[c]) for c in columns) + " |")
    score = f"{record['score']:.1%}" if record["score"] is not None else "n/a"
    print(f"\nscore {score} = killed (incl. timeouts) / (killed + survived), {record['checked']} of "
          f"{len(statuses)} mutants checked in {elapsed / 60:.1f} min" + ("" if run else " (time limit reached)"))  # fmt: skip
    if record["score_counting_unreached"] is not None:
        print(f"{record['score_counting_unreached']:.1%} counting the {counts.get('no tests', 0)} mutants no selected "
              "test reaches as survivors")  # fmt: skip
    for survivor in survivors:
        print("\n" + survivor["diff"])
    print(f"\nwritten {args.output}")
    if args.keep:
        print(f"scratch copy kept: {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return record


if __name__ == "__main__":
    main()
