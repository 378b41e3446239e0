"""Does the tokenizer really use every code? The same small image tokenizer with each projector, with and without annealing.

    python benchmarks/codebook_usage.py                                   # K = 16,384, d = 256: 4 projectors × 2 schedules
    python benchmarks/codebook_usage.py --projectors none vqbridge --no-without-annealing
    python benchmarks/codebook_usage.py --codebook_size 65536 --steps 400 --device cuda

Every run trains the ``tiny`` FVQ tokenizer (4× downsampling, 8 × 8 tokens per 32 px crop) on random crops of the
demo photographs shipped in scikit-image, with the same seed, data order, optimizer and step budget; the
projector (``none``, ``linear``, 5-layer ``mlp``, ``vqbridge``) and the learning-rate schedule (learning annealing
or constant) are the only differences. Usage is exact: the fraction of the K codes chosen at least once over
all tokens of the held-out crops, which come from photographs never trained on. Reported per run: usage,
perplexity, PSNR, live bridge slots, seconds per training step. Prints a Markdown table, writes the JSON (a list
of runs) and a plot of held-out usage against step to ``benchmarks/results/``.

Initialisation is the project's recipe for projected codebooks (``--codebook_init_std``,
``--bridge_output_init_std``; see the README); the plain codebook keeps VQGAN's uniform(−1/K, 1/K), the
baseline the paper compares against.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from comparison import (
    BRIDGE_FOR_SIZE,
    PROJECTORS,
    add_init_arguments,
    describe_init,
    plot_curve,
    print_table,
    raw_codebook_init_std,
    slots_text,
)
from provenance import save_runs
from torch.utils.data import DataLoader

from fvq_hf import FVQModel
from fvq_hf.data import DemoCropDataset, collate_images
from fvq_hf.evaluation import evaluate_tokenizer
from fvq_hf.training import get_scheduler


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--projectors", nargs="+", default=PROJECTORS, choices=PROJECTORS)
    p.add_argument(
        "--no-without-annealing",
        dest="without_annealing",
        action="store_false",
        help="only run with learning annealing (default: each projector with and without)",
    )
    p.add_argument("--codebook_size", type=int, default=16384, help="K (a perfect square)")
    p.add_argument("--codebook_dim", type=int, default=256, help="d")
    p.add_argument(
        "--steps", type=int, default=50, help="optimizer steps per run (CPU budget: 8 runs in about 13 minutes)"
    )
    p.add_argument("--resolution", type=int, default=32, help="crop size in pixels (a multiple of 4)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument(
        "--eval_samples", type=int, default=1024, help="held-out crops; their tokens should outnumber K several times"
    )
    p.add_argument(
        "--eval_every", type=int, default=25, help="measure held-out usage every N steps (and at steps 0 and the last)"
    )
    add_init_arguments(p)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(__file__), "results", "codebook_usage"),
        help="path without extension for .json and .png",
    )
    return p.parse_args(argv)


def evaluate(model: FVQModel, heldout: DataLoader) -> dict:
    result, _ = evaluate_tokenizer(model, heldout)
    return {
        "usage": result.usage,
        "perplexity": result.perplexity,
        "used_codes": result.used_codes,
        "psnr": result.psnr,
        "live_slots": result.extra.get("live_slots"),
        "slots": result.extra.get("slots"),
    }


def run_one(projector: str, annealing: bool, args, heldout: DataLoader) -> dict:
    bridge = BRIDGE_FOR_SIZE.get(args.codebook_size, "L/4")  # smaller K: keep p = 4
    init_std = raw_codebook_init_std(projector, args.codebook_init_std)
    torch.manual_seed(args.seed)
    model = FVQModel.from_preset(
        "tiny",
        codebook_size=args.codebook_size,
        codebook_dim=args.codebook_dim,
        projector=projector,
        bridge=bridge,
        bridge_output_init_std=args.bridge_output_init_std,
        codebook_init_std=init_std,
    ).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, betas=(0.9, 0.95))
    scheduler = get_scheduler(
        "annealing" if annealing else "constant", optimizer, args.steps, warmup_ratio=0.1 if annealing else 0.0
    )
    # the same crops in the same order for every run
    train = DemoCropDataset("train", args.resolution, num_samples=args.steps * args.batch_size, seed=args.seed)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=False, collate_fn=collate_images)
    curve = [{"step": 0, **evaluate(model, heldout)}]
    train_seconds = 0.0  # held-out evaluations are not training time
    model.train()
    for step, batch in enumerate(loader, start=1):
        images = batch["pixel_values"].to(args.device)
        started = time.perf_counter()
        out = model(images)
        loss = F.mse_loss(out.sample, images) + out.codebook_loss + out.commitment_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - started
        if step % args.eval_every == 0 or step == args.steps:
            curve.append({"step": step, "train_loss": loss.item(), **evaluate(model, heldout)})
    final = curve[-1]
    return {
        "benchmark": "codebook_usage",
        "projector": projector,
        "annealing": annealing,
        "codebook_size": args.codebook_size,
        "codebook_dim": args.codebook_dim,
        "bridge": bridge if projector == "vqbridge" else None,
        "codebook_init": describe_init(init_std),
        "steps": args.steps,
        "usage": final["usage"],
        "used_codes": final["used_codes"],
        "perplexity": final["perplexity"],
        "psnr": final["psnr"],
        "live_slots": final["live_slots"] if projector == "vqbridge" else None,
        "slots": final["slots"] if projector == "vqbridge" else None,
        "seconds_per_step": train_seconds / args.steps,
        "heldout_tokens": args.eval_samples * (args.resolution // 4) ** 2,
        "curve": curve,
    }


def plot(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for run in runs:
        plot_curve(ax, run)
    ax.set_title(
        f"held-out codebook usage, tiny tokenizer, K = {runs[0]['codebook_size']:,}, d = {runs[0]['codebook_dim']}"
    )
    ax.set_xlabel("step")
    ax.set_ylabel("codes used on held-out crops (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    heldout_set = DemoCropDataset("heldout", args.resolution, num_samples=args.eval_samples, seed=args.seed)
    heldout = DataLoader(heldout_set, batch_size=256, collate_fn=collate_images)
    runs = []
    for annealing in [True, False] if args.without_annealing else [True]:
        for projector in args.projectors:
            run = run_one(projector, annealing, args, heldout)
            runs.append(run)
            slots = f", slots {slots_text(run)}" if run["live_slots"] is not None else ""
            print(
                f"  {projector:<8} annealing={annealing!s:<5} held-out usage {run['usage']:7.2%} PSNR {run['psnr']:.2f} dB"
                f"{slots}, {run['seconds_per_step']:.3f} s/step",
                flush=True,
            )

    print_table(
        runs,
        [
            ("projector", lambda r: r["projector"]),
            ("annealing", lambda r: "yes" if r["annealing"] else "no"),
            ("held-out usage", lambda r: f"{r['usage']:.2%}"),
            ("used codes", lambda r: f"{r['used_codes']:,}"),
            ("live slots", slots_text),
            ("perplexity", lambda r: f"{r['perplexity']:,.0f}"),
            ("PSNR (dB)", lambda r: f"{r['psnr']:.2f}"),
            ("s/step", lambda r: f"{r['seconds_per_step']:.3f}"),
        ],
    )
    save_runs(runs, args, plot)
    return runs


if __name__ == "__main__":
    main()
