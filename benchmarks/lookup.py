"""Nearest-code search: time and peak extra memory of the chunked search against the full distance matrix.

    python benchmarks/lookup.py                       # K = 16,384 / 65,536 / 262,144, d = 256, 4,096 tokens
    python benchmarks/lookup.py --sizes 16384 --repeats 5 --device cuda

Every measurement runs in a fresh subprocess. On CPU the peak extra memory is the rise of the process's
resident-set high-water mark during the search (reset just before it through /proc/self/clear_refs); on CUDA
it is torch.cuda.max_memory_allocated above what the inputs hold. Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from provenance import git_commit, machine

METHODS = {
    "chunked": "fvq_hf nearest_code, default chunk_size (2**24 distances)",
    "full": "fvq_hf nearest_code, chunk_size=None (the full N × K matrix)",
    "cdist": "torch.cdist(z, C).argmin(1), as diffusers' VQModel does",
}


def _rss_high_water_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(method: str, k: int, d: int, n: int, device: str, repeats: int) -> dict:
    import torch

    from fvq_hf.quantization import nearest_code

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(n, d, generator=gen).to(device)
    codebook = torch.randn(k, d, generator=gen).to(device)
    if method == "chunked":
        run = lambda: nearest_code(z, codebook)
    elif method == "full":
        run = lambda: nearest_code(z, codebook, chunk_size=None)
    else:
        run = lambda: torch.cdist(z, codebook).argmin(1)

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        run()  # CUDA context and kernels warmed up outside the timing
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset the RSS high-water mark to the current RSS
        base = _rss_high_water_kib() * 1024
    times, indices = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        indices = run()
        sync()
        times.append(time.perf_counter() - start)
    if device.startswith("cuda"):
        peak_extra = torch.cuda.max_memory_allocated() - base
    else:
        peak_extra = _rss_high_water_kib() * 1024 - base
    return {
        "method": method,
        "codebook_size": k,
        "codebook_dim": d,
        "tokens": n,
        "device": device,
        "seconds": statistics.median(times),
        "seconds_all": times,
        "peak_extra_bytes": peak_extra,
        "full_matrix_bytes": n * k * 4,
        "indices_checksum": int(indices.long().sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16384, 65536, 262144], help="codebook sizes K")
    parser.add_argument("--dim", type=int, default=256, help="code dimension d")
    parser.add_argument("--tokens", type=int, default=4096, help="number of vectors to quantise")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (the median is reported)")
    parser.add_argument("--device", default=None, help="cpu or cuda; default: cpu, and cuda too when present")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "lookup.json"))
    parser.add_argument(
        "--worker", nargs=6, metavar=("METHOD", "K", "D", "N", "DEVICE", "REPEATS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args.worker:
        method, k, d, n, device, repeats = args.worker
        print(json.dumps(worker(method, int(k), int(d), int(n), device, int(repeats))))
        return

    import torch

    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    runs = []
    for device in devices:
        for k in args.sizes:
            for method in args.methods:
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    method,
                    str(k),
                    str(args.dim),
                    str(args.tokens),
                    device,
                    str(args.repeats),
                ]
                out = subprocess.run(cmd, check=False, capture_output=True, text=True)
                if out.returncode != 0:
                    print(out.stderr, file=sys.stderr)
                    raise SystemExit(f"measurement {method} K={k} on {device} failed")
                run = json.loads(out.stdout.strip().splitlines()[-1])
                runs.append(run)
                print(
                    f"  {device} K={k:>7,} {method:<8} {run['seconds']:8.3f} s  +{run['peak_extra_bytes'] / 2**20:9.1f} MiB",
                    flush=True,
                )

    print()
    print("| device | K | method | time (s) | peak extra memory (MiB) | time vs full | memory: full / this |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        full = (
            next(
                r
                for r in runs
                if r["method"] == "full" and r["codebook_size"] == run["codebook_size"] and r["device"] == run["device"]
            )
            if "full" in args.methods
            else run
        )
        same = "" if run["indices_checksum"] == full["indices_checksum"] else " (indices differ!)"
        print(
            f"| {run['device']} | {run['codebook_size']:,} | {run['method']}{same} | {run['seconds']:.3f} | "
            f"{run['peak_extra_bytes'] / 2**20:,.1f} | {run['seconds'] / full['seconds']:.2f}× | "
            f"{full['peak_extra_bytes'] / max(run['peak_extra_bytes'], 1):.1f}× |"
        )
    result = {"benchmark": "nearest-code search", "methods": METHODS, "machine": machine(devices[-1]), "runs": runs}
    result["commit"] = git_commit()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(result, handle, indent=2)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
