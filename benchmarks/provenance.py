"""What every benchmark records beside its numbers: the machine, the commit, the settings; and how runs are saved.

Imported by the scripts in this folder (run as ``python benchmarks/<script>.py``, so this folder is on the path).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable

_STARTED = time.perf_counter()  # the scripts import this module first: their whole run is timed from here


def machine(device: str) -> dict:
    """Platform, CPU model and count, versions of torch, numpy and Pillow, torch threads, device (and GPU on CUDA).

    Rounding differs between CPUs' BLAS kernels and between library versions, and on small data it can decide
    which codes survive, so every figure carries what produced it.
    """
    import numpy
    import PIL
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            lines = cpuinfo.read().splitlines()
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = set(next(line.split(":", 1)[1] for line in lines if line.startswith("flags")).split())
        # the instruction sets a CPU kernel's speed depends on (fp32 SIMD width, bf16 dot products, AMX tiles)
        info["cpu_flags"] = sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16"})
    except (OSError, StopIteration):
        pass
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["blas"] = [
        line.strip(" -")
        for line in torch.__config__.show().splitlines()
        if "Math Kernel Library" in line or "MKL-DNN" in line or "OpenBLAS" in line
    ]
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def git_commit() -> str | None:
    """The commit of the checkout these scripts live in, or None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            check=False,
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def settings_of(args) -> dict:
    """The options a benchmark ran with (all but where it writes), as they read back from JSON."""
    return json.loads(json.dumps({k: v for k, v in vars(args).items() if k != "output"}))


class FinishedRuns:
    """The runs a benchmark has finished so far, written to ``<output>.partial.json`` after each one.

    Run again after a kill (or the end of a working session), the same command takes the finished runs from the
    file and goes on with the next one. This is exact only for a benchmark whose runs seed themselves and build their
    own data (``codebook_usage.py``): the runs it skips are the ones it would have computed. A file written by
    another commit, machine (thread count included: it changes rounding) or set of options is refused, not mixed
    in: the table must come from one setting.
    """

    def __init__(self, args):
        self.path = args.output + ".partial.json"
        self.identity = {"commit": git_commit(), "machine": machine(args.device), "settings": settings_of(args)}
        self.runs: dict[str, dict] = {}
        self.earlier_seconds = 0.0  # wall time of the interrupted processes
        self.earlier_processes = 0
        if not os.path.exists(self.path):
            return
        with open(self.path) as handle:
            saved = json.load(handle)
        differs = [key for key, value in self.identity.items() if saved.get(key) != value]
        if differs:
            raise SystemExit(
                f"{self.path} holds {len(saved.get('runs', {}))} finished run(s) of another {' and '.join(differs)} "
                f"(commit {saved.get('commit')}, {saved.get('machine', {}).get('cpu_model')}, "
                f"{saved.get('machine', {}).get('torch_threads')} threads): run that setting again to finish it, "
                "or move the file away to start this one"
            )
        self.runs = saved["runs"]
        self.earlier_seconds = saved["seconds"]
        self.earlier_processes = saved["processes"]
        print(f"resuming: {len(self.runs)} finished run(s) read from {self.path}", flush=True)

    def get(self, key: str) -> dict | None:
        return self.runs.get(key)

    def add(self, key: str, run: dict) -> None:
        """Keep a finished run; the file is replaced atomically, so a kill leaves the last complete version."""
        self.runs[key] = run
        state = {
            **self.identity,
            "runs": self.runs,
            "seconds": self.earlier_seconds + time.perf_counter() - _STARTED,
            "processes": self.earlier_processes + 1,
        }
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        temporary = self.path + ".tmp"
        with open(temporary, "w") as handle:
            json.dump(state, handle)
        os.replace(temporary, self.path)

    def close(self) -> None:
        """The results are written: the partial file has served."""
        if os.path.exists(self.path):
            os.remove(self.path)


def save_runs(
    runs: list[dict], args, plot: Callable[[list[dict], str], None], finished: FinishedRuns | None = None
) -> None:
    """Stamp every run with commit, machine and settings; write ``args.output``.json (a list of runs) and .png.

    ``benchmark_seconds`` is the wall time of the whole benchmark, the interrupted processes a ``finished`` log
    resumed from included (``benchmark_processes`` counts them all)."""
    commit, info = git_commit(), machine(args.device)
    settings = settings_of(args)
    total = time.perf_counter() - _STARTED
    processes = 1
    if finished is not None:
        total += finished.earlier_seconds
        processes += finished.earlier_processes
    for run in runs:
        run.update(commit=commit, machine=info, settings=settings, benchmark_seconds=round(total, 1))
        if finished is not None:
            run["benchmark_processes"] = processes
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output + ".json", "w") as handle:
        json.dump(runs, handle, indent=1)
    plot(runs, args.output + ".png")
    if finished is not None:
        finished.close()
    sittings = f", {processes} processes" if processes > 1 else ""
    print(f"\nwrote {args.output}.json and {args.output}.png ({total / 60:.1f} min in all{sittings})")
