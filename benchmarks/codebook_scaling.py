"""Codebook usage at scale, the quantizer alone: each projector fits a fixed set of target vectors.

    python benchmarks/codebook_scaling.py                                # K = 16,384 and 65,536, d = 256, every projector
    python benchmarks/codebook_scaling.py --sizes 262144 --projectors vqbridge --output benchmarks/results/codebook_scaling_262k
    python benchmarks/codebook_scaling.py --no-annealing-too --device cuda

No image model: a ``VectorQuantizer`` with the projector under test is trained so that its codes cover a fixed
set of ``--targets_per_code`` × K vectors drawn from a centred Gaussian (an encoder whose outputs have settled).
Only the codebook loss trains (the targets do not move). Every run has the same seed, targets, optimizer (Adam)
and step budget; the projector and the schedule are the only differences. Reported: exact usage over all
targets, perplexity, mean squared quantisation error, live bridge slots, seconds per step. Prints a Markdown
table, writes JSON and a plot of usage against step to ``benchmarks/results/``.

Why 4 targets per code: even a codebook whose codes are all equally good is only fully used if the targets
outnumber them. When each target's nearest code is an independent, uniform draw, the expected usage is
1 − exp(−targets / K): 63 % with one target per code, 98.2 % with four. The table shows this ceiling beside
each run. An exact measurement costs targets × K distances (about 70 s at K = 65,536 on 2 CPU cores), so
above ``--curve_max_size`` only the final usage is measured.

Initialisation: behind VQBridge the raw codebook starts N(0, ``--codebook_init_std``²) and the bridge's last
Linear N(0, ``--bridge_output_init_std``²), the project's recipe (see the README). Every baseline (plain codebook,
linear, MLP) runs twice (``--baseline_inits``): with VQGAN's uniform(−1/K, 1/K), what the paper's baselines use,
and with the bridge's N(0, ``--codebook_init_std``²), so the comparison cannot have been set up to win.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
from comparison import (
    BRIDGE_FOR_SIZE,
    PROJECTORS,
    add_baseline_init_argument,
    add_init_arguments,
    describe_init,
    plot_curve,
    print_table,
    raw_codebook_init_std,
    run_plan,
    slots_text,
)
from provenance import save_runs

from fvq_hf.quantization import CodebookUsage, VectorQuantizer, build_projector, nearest_code
from fvq_hf.training import get_scheduler


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[16384, 65536], help="codebook sizes K")
    p.add_argument("--dim", type=int, default=256, help="code dimension d")
    p.add_argument("--projectors", nargs="+", default=PROJECTORS, choices=PROJECTORS)
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    p.add_argument(
        "--targets_per_code", type=float, default=4.0, help="fixed target vectors per code (targets = this × K)"
    )
    p.add_argument("--batch_size", type=int, default=1024, help="targets per step")
    p.add_argument("--target_std", type=float, default=1.0, help="standard deviation of the centred Gaussian targets")
    p.add_argument("--learning_rate", type=float, default=1e-3)
    add_init_arguments(p)
    add_baseline_init_argument(p)
    p.add_argument(
        "--no-annealing-too",
        dest="without_annealing",
        action="store_true",
        help="also run every projector without annealing",
    )
    p.add_argument("--eval_every", type=int, default=10, help="measure usage over all targets every N steps")
    p.add_argument(
        "--curve_max_size",
        type=int,
        default=16384,
        help="larger codebooks get only the final measurement (each costs targets × K distances)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replot", metavar="JSON", help="only redraw the plot of an earlier results file (beside it, .png)")
    p.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(__file__), "results", "codebook_scaling"),
        help="path without extension for .json and .png",
    )
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
    result = {
        "usage": stats.usage,
        "perplexity": stats.perplexity,
        "used_codes": stats.used_codes,
        "quantization_error": error / targets.numel(),
    }
    bridge = vq.projector if hasattr(vq.projector, "slot_of") else None
    if bridge is not None:
        used = torch.nonzero(usage.counts > 0).flatten()
        result["live_slots"] = int(bridge.slot_of(used).unique().numel())
        result["slots"] = bridge.config.patch_size**2
    return result


def run_one(
    size: int, projector: str, annealing: bool, args, targets: torch.Tensor, baseline_init: str = "paper"
) -> dict:
    torch.manual_seed(args.seed)
    bridge = BRIDGE_FOR_SIZE.get(size, "L/8")
    init_std = raw_codebook_init_std(projector, args.codebook_init_std, baseline_init)
    vq = VectorQuantizer(
        size,
        args.dim,
        projector=build_projector(
            projector, size, args.dim, bridge_preset=bridge, output_init_std=args.bridge_output_init_std
        ),
        codebook_init_std=init_std,
    ).to(args.device)
    optimizer = torch.optim.Adam(vq.parameters(), lr=args.learning_rate, betas=(0.9, 0.95))
    scheduler = get_scheduler(
        "annealing" if annealing else "constant", optimizer, args.steps, warmup_ratio=0.1 if annealing else 0.0
    )
    generator = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    with_curve = size <= args.curve_max_size
    curve = [{"step": 0, **measure(vq, targets)}] if with_curve else []
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
        if (with_curve and step % args.eval_every == 0) or step == args.steps:
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
        "codebook_init": describe_init(init_std),
        "baseline_init": None if projector == "vqbridge" else baseline_init,
        "steps": args.steps,
        "targets": targets.shape[0],
        "uniform_assignment_usage": 1 - math.exp(-targets.shape[0] / size),
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
            plot_curve(ax, run)
        ceiling = next(r["uniform_assignment_usage"] for r in runs if r["codebook_size"] == size)
        ax.axhline(100 * ceiling, color="black", linewidth=0.8, linestyle=":", label="uniform-assignment ceiling")
        ax.set_title(f"K = {size:,}, d = {runs[0]['codebook_dim']}")
        ax.set_xlabel("step")
        ax.set_ylabel("usage over all targets (%)")
        ax.set_xlim(0, max(r["steps"] for r in runs) * 1.02)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.replot:
        with open(args.replot) as handle:
            runs = json.load(handle)
        plot(runs, os.path.splitext(args.replot)[0] + ".png")
        return runs
    torch.manual_seed(args.seed)
    runs = []
    for size in args.sizes:
        count = round(args.targets_per_code * size)
        targets = args.target_std * torch.randn(count, args.dim, generator=torch.Generator().manual_seed(args.seed)).to(
            args.device
        )
        for annealing in [True, False] if args.without_annealing else [True]:
            for projector, baseline_init in run_plan(args.projectors, args.baseline_inits):
                started = time.perf_counter()
                run = run_one(size, projector, annealing, args, targets, baseline_init)
                run["wall_seconds"] = time.perf_counter() - started
                runs.append(run)
                slots = f", slots {slots_text(run)}" if run["live_slots"] is not None else ""
                print(
                    f"  K={size:>7,} {projector:<8} {run['codebook_init']:<18} annealing={annealing!s:<5} "
                    f"usage {run['usage']:7.2%} "
                    f"error {run['quantization_error']:.4f}{slots}, {run['seconds_per_step']:.3f} s/step",
                    flush=True,
                )

    print_table(
        runs,
        [
            ("K", lambda r: f"{r['codebook_size']:,}"),
            ("projector", lambda r: r["projector"]),
            ("raw codebook init", lambda r: r["codebook_init"]),
            ("annealing", lambda r: "yes" if r["annealing"] else "no"),
            ("usage", lambda r: f"{r['usage']:.2%}"),
            ("ceiling", lambda r: f"{r['uniform_assignment_usage']:.1%}"),
            ("live slots", slots_text),
            ("perplexity", lambda r: f"{r['perplexity']:,.0f}"),
            ("quantisation error", lambda r: f"{r['quantization_error']:.4f}"),
            ("s/step", lambda r: f"{r['seconds_per_step']:.3f}"),
        ],
    )
    save_runs(runs, args, plot)
    return runs


if __name__ == "__main__":
    main()
