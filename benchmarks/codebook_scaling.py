"""Codebook usage at scale, the quantizer alone: each projector fits a fixed set of target vectors.

    python benchmarks/codebook_scaling.py                                # K = 16,384 and 65,536, d = 256, every projector
    python benchmarks/codebook_scaling.py --sizes 262144 --steps 300      # the 262k codebook (slow on a CPU)
    python benchmarks/codebook_scaling.py --no-annealing-too --device cuda

No image model: a ``VectorQuantizer`` with the projector under test is trained so that its codes cover
``--targets`` fixed vectors drawn from a centred Gaussian (an encoder whose outputs have settled). Only the
codebook loss trains (the targets do not move). Every run has the same seed, targets, optimizer (Adam) and
step budget; the projector and the schedule are the only differences. Reported: exact usage over all targets,
perplexity, mean squared quantisation error, live bridge slots, seconds per step. Prints a Markdown table,
writes JSON and a plot of usage against step to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

import torch

from fvq_hf.quantization import CodebookUsage, VectorQuantizer, build_projector, nearest_code
from fvq_hf.training import get_scheduler

# the paper's bridge for each size: about 1,024 bridge tokens as K grows
BRIDGE_FOR_SIZE = {16384: "L/4", 65536: "L/8", 262144: "L/8"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[16384, 65536], help="codebook sizes K")
    p.add_argument("--dim", type=int, default=256, help="code dimension d")
    p.add_argument("--projectors", nargs="+", default=["none", "linear", "mlp", "vqbridge"], choices=["none", "linear", "mlp", "vqbridge"])
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    p.add_argument("--targets", type=int, default=65536, help="fixed target vectors to cover")
    p.add_argument("--batch_size", type=int, default=1024, help="targets per step")
    p.add_argument("--target_std", type=float, default=1.0, help="standard deviation of the centred Gaussian targets")
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--bridge_output_init_std", type=float, default=1e-3, help="VQBridge last-layer init std (0: the paper's zeros)")
    p.add_argument("--no-annealing-too", dest="without_annealing", action="store_true", help="also run every projector without annealing")
    p.add_argument("--eval_every", type=int, default=50, help="measure usage over all targets every N steps")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "codebook_scaling"), help="path without extension for .json and .png")
    return p.parse_args(argv)


@torch.no_grad()
def measure(vq: VectorQuantizer, targets: torch.Tensor, chunk: int = 8192) -> dict:
    codebook = vq.get_codebook()
    usage = CodebookUsage(vq.codebook_size, device=targets.device)
    error = 0.0
    for start in range(0, targets.shape[0], chunk):
        indices, distances = nearest_code(targets[start : start + chunk], codebook, return_distances=True)
        usage.update(indices)
        error += float(distances.sum())
    stats = usage.compute()
    result = {"usage": stats.usage, "perplexity": stats.perplexity, "used_codes": stats.used_codes,
              "quantization_error": error / targets.numel()}
    bridge = vq.projector if hasattr(vq.projector, "slot_of") else None
    if bridge is not None:
        used = torch.nonzero(usage.counts > 0).flatten()
        result["live_slots"] = int(bridge.slot_of(used).unique().numel())
        result["slots"] = bridge.config.patch_size ** 2
    return result


def run_one(size: int, projector: str, annealing: bool, args, targets: torch.Tensor) -> dict:
    torch.manual_seed(args.seed)
    bridge = BRIDGE_FOR_SIZE.get(size, "L/8")
    vq = VectorQuantizer(
        size,
        args.dim,
        projector=build_projector(projector, size, args.dim, bridge_preset=bridge, output_init_std=args.bridge_output_init_std),
    ).to(args.device)
    optimizer = torch.optim.Adam(vq.parameters(), lr=args.learning_rate, betas=(0.9, 0.95))
    scheduler = get_scheduler("annealing" if annealing else "constant", optimizer, args.steps, warmup_ratio=0.1 if annealing else 0.0)
    generator = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    curve = [{"step": 0, **measure(vq, targets)}]
    train_seconds = 0.0  # the measurements over all targets are not training time
    for step in range(1, args.steps + 1):
        batch = targets[torch.randint(0, targets.shape[0], (args.batch_size,), generator=generator).to(targets.device)]
        started = time.perf_counter()
        _, _, (codebook_loss, _) = vq(batch, return_loss_breakdown=True)
        optimizer.zero_grad(set_to_none=True)
        codebook_loss.backward()
        optimizer.step()
        scheduler.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - started
        if step % args.eval_every == 0 or step == args.steps:
            curve.append({"step": step, **measure(vq, targets)})
    final = curve[-1]
    return {
        "benchmark": "codebook_scaling",
        "projector": projector,
        "annealing": annealing,
        "codebook_size": size,
        "codebook_dim": args.dim,
        "bridge": bridge if projector == "vqbridge" else None,
        "bridge_output_init_std": args.bridge_output_init_std if projector == "vqbridge" else None,
        "steps": args.steps,
        "usage": final["usage"],
        "perplexity": final["perplexity"],
        "quantization_error": final["quantization_error"],
        "live_slots": final.get("live_slots"),
        "slots": final.get("slots"),
        "psnr": None,  # no images in this benchmark
        "seconds_per_step": train_seconds / args.steps,
        "curve": curve,
    }


def plot(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["codebook_size"] for r in runs})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for run in (r for r in runs if r["codebook_size"] == size):
            label = f"{run['projector']}{'' if run['annealing'] else ' (no annealing)'}"
            ax.plot([c["step"] for c in run["curve"]], [100 * c["usage"] for c in run["curve"]], label=label,
                    linestyle="-" if run["annealing"] else "--")
        ax.set_title(f"K = {size:,}, d = {runs[0]['codebook_dim']}")
        ax.set_xlabel("step")
        ax.set_ylabel("usage over all targets (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    targets = args.target_std * torch.randn(args.targets, args.dim, generator=torch.Generator().manual_seed(args.seed)).to(args.device)
    runs = []
    for size in args.sizes:
        for annealing in [True, False] if args.without_annealing else [True]:
            for projector in args.projectors:
                run = run_one(size, projector, annealing, args, targets)
                runs.append(run)
                slots = f", slots {run['live_slots']}/{run['slots']}" if run["live_slots"] is not None else ""
                print(f"  K={size:>7,} {projector:<8} annealing={annealing!s:<5} usage {run['usage']:7.2%} "
                      f"error {run['quantization_error']:.4f}{slots}, {run['seconds_per_step']:.3f} s/step", flush=True)

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or None
    print("\n| K | projector | annealing | usage | live slots | perplexity | quantisation error | s/step |\n|---|---|---|---|---|---|---|---|")
    for r in runs:
        slots = f"{r['live_slots']}/{r['slots']}" if r["live_slots"] is not None else "–"
        print(f"| {r['codebook_size']:,} | {r['projector']} | {'yes' if r['annealing'] else 'no'} | {r['usage']:.2%} | {slots} | "
              f"{r['perplexity']:,.0f} | {r['quantization_error']:.4f} | {r['seconds_per_step']:.3f} |")
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__, "device": args.device,
               "threads": torch.get_num_threads()}
    if args.device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name()
    settings = {k: v for k, v in vars(args).items() if k != "output"}
    for r in runs:
        r.update(commit=commit, machine=machine, settings=settings)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output + ".json", "w") as handle:
        json.dump(runs, handle, indent=1)  # a list of runs
    plot(runs, args.output + ".png")
    print(f"\nwrote {args.output}.json and {args.output}.png")
    return runs


if __name__ == "__main__":
    main()
