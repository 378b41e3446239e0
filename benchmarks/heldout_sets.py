"""How much does the evaluation set decide the usage figure? One trained demo tokenizer, several held-out sets.

    python training/train_tokenizer.py --config training/configs/demo-cpu.yaml     # outputs/fvq-demo
    python benchmarks/heldout_sets.py --model outputs/fvq-demo                     # 1.3 min on 2 CPU cores

Usage (the fraction of the K codes chosen at least once) is counted, nothing decoded, on fixed crops of:

- ``cells``: the four held-out cells of every training photo (the demo's evaluation set, never trained on);
- ``band``: the bottom quarter of every training photo, one strip (the demo's evaluation set until commit f8cc028);
  a model trained clear of the cells has trained on three quarters of it;
- ``whole``: the whole training photos, trained on;
- ``unseen``: the two photos never seen;

each with 16 and 64 tokens per code (``--tokens_per_code``). Crop sides are drawn as in training (1-3x the
resolution, at most a held-out part's size). Prints a Markdown table, writes JSON and a bar chart to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import os

import torch
from comparison import print_table
from provenance import save_runs
from torch.utils.data import DataLoader

from fvq_hf import FVQModel
from fvq_hf.data import DemoCropDataset, collate_images, demo_eval_samples
from fvq_hf.evaluation import evaluate_tokenizer

# name: (DemoCropDataset split, held-out layout, what it is)
SETS = {
    "cells": ("parts", "cells", "held-out cells of the training photos (4 of a 4x4 grid), never trained on"),
    "band": ("parts", "band", "bottom quarter of the training photos (one strip)"),
    "whole": ("train", "none", "the whole training photos"),
    "unseen": ("heldout", "none", "two photos never seen (coffee, rocket)"),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="outputs/fvq-demo", help="a trained tokenizer folder or Hub id")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--tokens_per_code", nargs="+", type=int, default=[16, 64])
    p.add_argument("--resolution", type=int, default=None, help="crop size (default: the model's sample_size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fixed crops")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(__file__), "results", "heldout_sets"),
        help="path without extension for .json and .png",
    )
    return p.parse_args(argv)


def plot(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["set"] for r in runs))
    counts = sorted({r["tokens_per_code"] for r in runs})
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    width = 0.8 / len(counts)
    for j, count in enumerate(counts):
        values = [
            next(100 * r["usage"] for r in runs if r["set"] == n and r["tokens_per_code"] == count) for n in names
        ]
        ax.bar([i + j * width for i in range(len(names))], values, width, label=f"{count} tokens per code")
    ax.set_xticks([i + width * (len(counts) - 1) / 2 for i in range(len(names))], names)
    ax.set_ylabel("codes used (%)")
    ax.set_ylim(min(100 * r["usage"] for r in runs) - 5, 100)
    ax.legend(loc="lower left")
    ax.set_title(f"one tokenizer, K = {runs[0]['codebook_size']:,}: usage by evaluation set")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def model_name(source: str) -> str:
    """How the results name the model: a Hub id as given, a folder by its path inside the repository, a folder
    elsewhere by its own name (committed results never name machine folders)."""
    if not os.path.isdir(source):
        return source
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    relative = os.path.relpath(os.path.abspath(source), root)
    return os.path.basename(os.path.abspath(source)) if relative.startswith("..") else relative


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    model = FVQModel.from_pretrained(args.model).to(args.device).eval()
    args.model = model_name(args.model)  # the results (and their settings) name it, not the machine's folder
    resolution = args.resolution or model.config.sample_size
    per_side = resolution // model.downsample_factor
    runs = []
    for name in args.sets:
        split, layout, description = SETS[name]
        for count in args.tokens_per_code:
            samples = demo_eval_samples(model.config.codebook_size, per_side, count)
            dataset = DemoCropDataset(
                split, resolution, num_samples=samples, train=False, seed=args.seed, heldout_layout=layout
            )
            loader = DataLoader(dataset, batch_size=256, collate_fn=collate_images)
            result, _ = evaluate_tokenizer(model, loader, reconstruct_images=0)
            runs.append(
                {
                    "benchmark": "heldout_sets",
                    "model": args.model,
                    "set": name,
                    "description": description,
                    "tokens_per_code": count,
                    "crops": samples,
                    "codebook_size": model.config.codebook_size,
                    "usage": result.usage,
                    "used_codes": result.used_codes,
                    "perplexity": result.perplexity,
                    "live_slots": result.extra.get("live_slots"),
                    "slots": result.extra.get("slots"),
                }
            )
            print(f"  {name:<7} {count:>3} tokens per code: usage {result.usage:7.2%}", flush=True)
    print_table(
        runs,
        [
            ("set", lambda r: r["set"]),
            ("what", lambda r: r["description"]),
            ("tokens per code", lambda r: str(r["tokens_per_code"])),
            ("crops", lambda r: f"{r['crops']:,}"),
            ("usage", lambda r: f"{r['usage']:.2%}"),
            ("used codes", lambda r: f"{r['used_codes']:,}"),
            ("perplexity", lambda r: f"{r['perplexity']:,.0f}"),
        ],
    )
    save_runs(runs, args, plot)
    return runs


if __name__ == "__main__":
    main()
