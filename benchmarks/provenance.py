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


def save_runs(runs: list[dict], args, plot: Callable[[list[dict], str], None]) -> None:
    """Stamp every run with commit, machine and settings; write ``args.output``.json (a list of runs) and .png."""
    commit, info = git_commit(), machine(args.device)
    settings = {k: v for k, v in vars(args).items() if k != "output"}
    total = time.perf_counter() - _STARTED
    for run in runs:
        run.update(commit=commit, machine=info, settings=settings, benchmark_seconds=round(total, 1))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output + ".json", "w") as handle:
        json.dump(runs, handle, indent=1)
    plot(runs, args.output + ".png")
    print(f"\nwrote {args.output}.json and {args.output}.png ({total / 60:.1f} min in all)")
