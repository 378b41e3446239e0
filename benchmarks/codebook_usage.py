"""Does the tokenizer really use every code? The same small image tokenizer with each projector, with and without annealing.

    python benchmarks/codebook_usage.py                                   # K = 4,096, d = 256: 9 runs, 24 min on 2 CPU cores
    python benchmarks/codebook_usage.py --quantizer residual              # RQ-VAE, 4 codes per position (+ 1 reference run)
    python benchmarks/codebook_usage.py --quantizer multiscale            # VAR, scales 1, 2, 3, 4, 6, 8 (+ 1 reference run)
    python benchmarks/codebook_usage.py --quantizer multiscale --cosine_search --projectors none vqbridge \
        --no-without-annealing --no-restart-too                          # the VAR demo's cosine search, 3 runs
    python benchmarks/codebook_usage.py --quantizer multiscale --cosine_search --learning_rate 3e-4 \
        --quantizer_lr_scale 0.1 --no-restart-too                        # its first rates, every projector: 9 runs
    python benchmarks/codebook_usage.py --codebook_size 16384 --steps 600 --device cuda
    python benchmarks/codebook_usage.py --codebook_size 65536 --steps 1000 --device cuda
    python benchmarks/codebook_usage.py --projectors none vqbridge --no-without-annealing

Every run trains the ``tiny`` FVQ tokenizer (4× downsampling, 8 × 8 tokens per 32 px crop) on random crops of the
demo photographs shipped in scikit-image, with the same seed, data order, optimizer and step budget; the
projector (``none``, ``linear``, 5-layer ``mlp``, ``vqbridge``) and the learning-rate schedule (learning annealing
or constant) are the only differences, plus one VQBridge run without dead-slot restart (the paper's recipe
exactly). Usage is exact, the fraction of the K codes chosen at least once, and is measured as the paper measures
it, on images of the training distribution never trained on: four held-out cells of every training photograph (a
4 x 4 grid, one cell in each row and column). Beside it, the same on two photographs never seen. Each set has 64
tokens per code (``--eval_samples``); PSNR is measured on the first 1,024 crops of each, and the curve's points
before the last step measure usage on the cells only, which keeps the 9 runs within 30 minutes on 2 cores.
Reported per run: usage on both, perplexity, PSNR, live bridge slots, slot restarts, seconds per training step.
Prints a Markdown table, writes the JSON (a list of runs) and a plot of usage against step to
``benchmarks/results/``. A comparison can outlast a sitting (a whole VAR one takes over an hour on 2 cores): each
finished run is kept in ``<output>.partial.json``, and the same command run again on the same machine and commit goes
on from there, with the same figures as one uninterrupted run.

``--quantizer residual`` / ``multiscale`` run the same comparison for the multi-code tokenizers (``rq-tiny``,
``var-tiny``: one codebook shared by every depth or scale), and add the usage of each depth or scale. A scale of
pn × pn codes over N images can use at most min(K, N·pn²) codes, so each level's usage is also given as a fraction
of that bound: a small scale is not a collapse, a collapse at the small scales shows. One single-code VQBridge run
(``tiny``, same data, seed and budget) is added as the reference for PSNR against tokens per image.

Initialisation is the project's recipe for VQBridge (``--codebook_init_std``, ``--bridge_output_init_std``; see
the README); the baselines keep VQGAN's uniform(−1/K, 1/K) (``--baseline_inits paper fair`` adds runs with the
bridge's init).
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
    add_baseline_init_argument,
    add_init_arguments,
    describe_init,
    plot_curve,
    print_table,
    raw_codebook_init_std,
    run_label,
    run_plan,
    slots_text,
)
from provenance import FinishedRuns, save_runs
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fvq_hf import FVQModel, MultiCodeFVQModel
from fvq_hf.data import DemoCropDataset, collate_images, demo_eval_samples
from fvq_hf.evaluation import evaluate_tokenizer
from fvq_hf.quantization import SlotRestart
from fvq_hf.training import applied_quantizer_lr_scale, get_scheduler, tokenizer_param_groups


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--projectors", nargs="+", default=PROJECTORS, choices=PROJECTORS)
    p.add_argument(
        "--quantizer",
        default="single",
        choices=list(TOKENIZER_PRESETS),
        help="single (one code per position), residual (RQ-VAE) or multiscale (VAR); multi-code adds per-level usage",
    )
    p.add_argument("--rq_depth", type=int, default=4, help="codes per position of the residual quantizer")
    p.add_argument(
        "--scales",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=(1, 2, 3, 4, 6, 8),
        help="token-map sides of the multi-scale quantizer, comma separated, the last = resolution / 4",
    )
    p.add_argument(
        "--cosine_search",
        action="store_true",
        help="multiscale: every run searches codes by cosine similarity (VAR's using_znorm; the VAR CPU demo's "
        "departure) instead of L2 distance; results go to ..._multiscale_cosine",
    )
    p.add_argument(
        "--no-without-annealing",
        dest="without_annealing",
        action="store_false",
        help="only run with learning annealing (default: each projector with and without)",
    )
    p.add_argument("--codebook_size", type=int, default=4096, help="K (a perfect square)")
    p.add_argument("--codebook_dim", type=int, default=256, help="d")
    p.add_argument(
        "--steps", type=int, default=200, help="optimizer steps per run (CPU budget: 9 runs in about 30 minutes)"
    )
    p.add_argument("--resolution", type=int, default=32, help="crop size in pixels (a multiple of 4)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument(
        "--quantizer_lr_scale",
        type=float,
        default=1.0,
        help="every run trains its quantizer (raw codebook, projector, φ) at this multiple of --learning_rate, as "
        "train_tokenizer.py's option (the VAR demo: 0.1); results go to ..._lr<rate>_q<scale>",
    )
    p.add_argument(
        "--eval_samples", type=int, default=None, help="crops of each held-out set (default: 64 tokens per code)"
    )
    p.add_argument(
        "--psnr_samples", type=int, default=1024, help="crops of each held-out set decoded for PSNR (the rest: usage)"
    )
    p.add_argument(
        "--eval_every",
        type=int,
        default=100,
        help="measure usage on the held-out cells every N steps and at step 0 (both sets, with PSNR: at the last)",
    )
    p.add_argument(
        "--slot_restart_steps",
        type=int,
        default=25,
        help="VQBridge dead-slot restart window (the project's recipe; 0: off, the paper's)",
    )
    p.add_argument("--slot_restart_threshold", type=float, default=0.1, help="fraction of a slot's fair share")
    p.add_argument(
        "--no-restart-too",
        dest="without_restart",
        action="store_false",
        help="skip the VQBridge run without slot restart (default: one with annealing, to show what restart does)",
    )
    add_init_arguments(p)
    add_baseline_init_argument(p, default=("paper",))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--output",
        default=None,
        help="path without extension for .json and .png (default: results/codebook_usage[_residual|_multiscale])",
    )
    args = p.parse_args(argv)
    if args.output is None:
        suffix = "" if args.quantizer == "single" else f"_{args.quantizer}"
        suffix += "_cosine" if args.cosine_search else ""
        if args.quantizer_lr_scale != 1:  # a recipe of its own: never overwrite the one-rate results
            suffix += f"_lr{args.learning_rate:g}_q{args.quantizer_lr_scale:g}"
        args.output = os.path.join(os.path.dirname(__file__), "results", f"codebook_usage{suffix}")
    if not args.quantizer_lr_scale > 0:
        p.error(f"--quantizer_lr_scale {args.quantizer_lr_scale}: a positive multiplier (1 trains at one rate)")
    if args.cosine_search and args.quantizer != "multiscale":
        p.error("--cosine_search is an option of the multi-scale quantizer: add --quantizer multiscale")
    if args.quantizer == "multiscale" and args.scales[-1] * 4 != args.resolution:
        p.error(
            f"--scales ends at {args.scales[-1]}, but --resolution {args.resolution} gives {args.resolution // 4} "
            f"tokens a side at 4× downsampling: make the last scale {args.resolution // 4}"
        )
    return args


# the CPU-sized tokenizer of each kind: 4× downsampling, 8 × 8 positions at 32 px
TOKENIZER_PRESETS = {"single": "tiny", "residual": "rq-tiny", "multiscale": "var-tiny"}


def build_tokenizer(quantizer: str, args, **config) -> FVQModel | MultiCodeFVQModel:
    if quantizer == "single":
        return FVQModel.from_preset(TOKENIZER_PRESETS["single"], **config)
    if quantizer == "residual":
        extra = {"rq_depth": args.rq_depth}
    else:
        extra = {"scales": args.scales, "cosine_search": args.cosine_search}
    return MultiCodeFVQModel.from_preset(TOKENIZER_PRESETS[quantizer], **config, **extra)


def with_bounds(levels: list[dict], codebook_size: int) -> list[dict]:
    """The evaluator's per-level usage, each level with the most codes it could use on that set: min(K, its
    tokens), one token per code at best."""
    return [
        {
            **level,
            "bound": min(codebook_size, level["tokens"]),
            "of_bound": level["used_codes"] / min(codebook_size, level["tokens"]),
        }
        for level in levels
    ]


def evaluate(model: FVQModel, heldout: dict[str, DataLoader], psnr_samples: int | None = None) -> dict:
    """Usage, perplexity, PSNR and live slots on each held-out set: ``usage`` (the cells), ``unseen_usage``, …;
    for a multi-code tokenizer also ``levels`` / ``unseen_levels``, the usage of each depth or scale.

    ``psnr_samples=None``: usage on the cells only, nothing decoded (a point of the curve)."""
    numbers = {}
    curve_point = psnr_samples is None
    for name, loader in heldout.items():
        if curve_point and name != "parts":
            continue
        result, _ = evaluate_tokenizer(model, loader, reconstruct_images=0 if curve_point else psnr_samples)
        prefix = "" if name == "parts" else f"{name}_"
        numbers.update(
            {
                f"{prefix}usage": result.usage,
                f"{prefix}perplexity": result.perplexity,
                f"{prefix}used_codes": result.used_codes,
                **({} if curve_point else {f"{prefix}psnr": result.psnr}),
                f"{prefix}live_slots": result.extra.get("live_slots"),
                f"{prefix}slots": result.extra.get("slots"),
            }
        )
        if not curve_point and "levels" in result.extra:
            numbers[f"{prefix}levels"] = with_bounds(result.extra["levels"], model.config.codebook_size)
    return numbers


def run_one(
    projector: str,
    annealing: bool,
    args,
    heldout: dict[str, DataLoader],
    baseline_init: str,
    restart: bool,
    quantizer: str,
) -> dict:
    bridge = BRIDGE_FOR_SIZE.get(args.codebook_size, "L/4")  # smaller K: keep p = 4
    init_std = raw_codebook_init_std(projector, args.codebook_init_std, baseline_init)
    torch.manual_seed(args.seed)
    model = build_tokenizer(
        quantizer,
        args,
        codebook_size=args.codebook_size,
        codebook_dim=args.codebook_dim,
        projector=projector,
        bridge=bridge,
        bridge_output_init_std=args.bridge_output_init_std,
        codebook_init_std=init_std,
    ).to(args.device)
    param_groups = tokenizer_param_groups(model, args.learning_rate, args.quantizer_lr_scale)
    optimizer = torch.optim.Adam(param_groups, lr=args.learning_rate, betas=(0.9, 0.95))
    slot_restart = None
    if projector == "vqbridge" and restart:
        slot_restart = SlotRestart(
            model.quantize.projector,
            every=args.slot_restart_steps,
            threshold=args.slot_restart_threshold,
            seed=args.seed,
        )
    scheduler = get_scheduler(
        "annealing" if annealing else "constant", optimizer, args.steps, warmup_ratio=0.1 if annealing else 0.0
    )
    # the same crops in the same order for every run
    train = DemoCropDataset("train", args.resolution, num_samples=args.steps * args.batch_size, seed=args.seed)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=False, collate_fn=collate_images)
    curve = [{"step": 0, **evaluate(model, heldout)}]  # usage on the cells
    train_seconds = 0.0  # held-out evaluations are not training time
    model.train()
    label = f"{TOKENIZER_PRESETS[quantizer]}, {projector}{'' if annealing else ', no annealing'}"
    for step, batch in enumerate(tqdm(loader, desc=label, leave=False), start=1):
        images = batch["pixel_values"].to(args.device)
        started = time.perf_counter()
        out = model(images)
        loss = F.mse_loss(out.sample, images) + out.codebook_loss + out.commitment_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if slot_restart is not None:
            slot_restart.update(out.indices)
            slot_restart.step(optimizer)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - started
        if step % args.eval_every == 0 or step == args.steps:
            psnr_samples = args.psnr_samples if step == args.steps else None
            curve.append({"step": step, "train_loss": loss.item(), **evaluate(model, heldout, psnr_samples)})
    final = curve[-1]
    return {
        "benchmark": "codebook_usage",
        "quantizer": quantizer,
        "single_code_reference": quantizer != args.quantizer,
        "tokenizer_preset": TOKENIZER_PRESETS[quantizer],
        "tokens_per_image": model.tokens_per_image(args.resolution),
        "code_search": "cosine" if model.config.get("cosine_search") else "L2",
        "projector": projector,
        "annealing": annealing,
        "codebook_size": args.codebook_size,
        "codebook_dim": args.codebook_dim,
        "bridge": bridge if projector == "vqbridge" else None,
        "codebook_init": describe_init(init_std),
        "baseline_init": None if projector == "vqbridge" else baseline_init,
        "slot_restart": slot_restart is not None if projector == "vqbridge" else None,
        "slot_restarts": slot_restart.restarts if slot_restart is not None else None,
        "steps": args.steps,
        "learning_rate": args.learning_rate,
        "quantizer_lr_scale": applied_quantizer_lr_scale(param_groups, args.quantizer_lr_scale),
        **{key: value for key, value in final.items() if key not in ("step", "train_loss")},
        "seconds_per_step": train_seconds / args.steps,
        "heldout_tokens_per_set": args.eval_samples * model.tokens_per_image(args.resolution),
        "psnr_crops_per_set": min(args.psnr_samples, args.eval_samples),
        "curve": curve,
    }


def plot(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for run in runs:
        plot_curve(ax, run)
    preset = runs[0].get("tokenizer_preset", "tiny")  # the compared tokenizer (a reference run comes last)
    ax.set_title(
        f"held-out codebook usage, {preset} tokenizer, K = {runs[0]['codebook_size']:,}, d = {runs[0]['codebook_dim']}"
    )
    ax.set_xlabel("step")
    ax.set_ylabel("codes used on the held-out cells (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def level_text(run: dict) -> str:
    """Each level's used codes as a fraction of the most it could use there: ``1x1 100%, …``, ``d1 47%, …`` for depths."""
    if "levels" not in run:
        return "–"
    short = {"scale ": "", "depth ": "d"}  # "scale 4x4" → "4x4", "depth 1" → "d1"
    names = [level["level"] for level in run["levels"]]
    for long, brief in short.items():
        names = [name.replace(long, brief) for name in names]
    return ", ".join(f"{name} {level['of_bound']:.0%}" for name, level in zip(names, run["levels"], strict=True))


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.eval_samples is None:
        args.eval_samples = demo_eval_samples(args.codebook_size, args.resolution // 4)
    heldout = {
        name: DataLoader(
            DemoCropDataset(split, args.resolution, num_samples=args.eval_samples, seed=args.seed),
            batch_size=256,
            collate_fn=collate_images,
        )
        for name, split in (("parts", "parts"), ("unseen", "heldout"))
    }
    restart = args.slot_restart_steps > 0
    # (projector, baseline init, slot restart, tokenizer kind) of every run
    plan = [(p, init, restart, args.quantizer) for p, init in run_plan(args.projectors, args.baseline_inits)]
    # with annealing only: one VQBridge run without restart, the paper's recipe exactly
    paper_bridge = (
        [("vqbridge", "recipe", False, args.quantizer)]
        if restart and args.without_restart and "vqbridge" in args.projectors
        else []
    )
    # a multi-code comparison ends with the single-code VQBridge run, its PSNR at fewer tokens per image beside
    reference = [("vqbridge", "recipe", restart, "single")] if args.quantizer != "single" else []
    finished = FinishedRuns(args)  # the runs a killed run of this command finished: each run seeds itself
    runs = []
    for annealing in [True, False] if args.without_annealing else [True]:
        for projector, baseline_init, with_restart, kind in plan + (paper_bridge + reference if annealing else []):
            key = f"{kind}/{projector}/init={baseline_init}/restart={with_restart}/annealing={annealing}"
            run = finished.get(key)
            if run is None:
                run = run_one(projector, annealing, args, heldout, baseline_init, with_restart, kind)
                finished.add(key, run)
            runs.append(run)
            slots = f", slots {slots_text(run)}" if run["live_slots"] is not None else ""
            print(
                f"  {run_label(run):<28} annealing={annealing!s:<5} usage {run['usage']:7.2%} "
                f"(unseen {run['unseen_usage']:7.2%}) PSNR {run['psnr']:.2f} dB{slots}, "
                f"{run['seconds_per_step']:.3f} s/step",
                flush=True,
            )

    multicode = args.quantizer != "single"
    print_table(
        runs,
        [
            *(
                [("tokenizer", lambda r: f"{r['tokenizer_preset']}, {r['tokens_per_image']} tokens")]
                if multicode
                else []
            ),
            ("projector", run_label),
            *(
                [("learning rate (quantizer's)", lambda r: f"{r['learning_rate']:g} (× {r['quantizer_lr_scale']:g})")]
                if args.quantizer_lr_scale != 1
                else []
            ),
            ("annealing", lambda r: "yes" if r["annealing"] else "no"),
            ("usage, held-out cells", lambda r: f"{r['usage']:.2%}"),
            ("used codes", lambda r: f"{r['used_codes']:,}"),
            ("live slots", slots_text),
            ("usage, unseen photos", lambda r: f"{r['unseen_usage']:.2%}"),
            *([("per depth / scale, held-out cells (of its bound)", level_text)] if multicode else []),
            ("perplexity", lambda r: f"{r['perplexity']:,.0f}"),
            ("PSNR (dB)", lambda r: f"{r['psnr']:.2f}"),
            ("slot restarts", lambda r: "–" if r["slot_restarts"] is None else str(r["slot_restarts"])),
            ("s/step", lambda r: f"{r['seconds_per_step']:.3f}"),
        ],
    )
    save_runs(runs, args, plot, finished)
    return runs


if __name__ == "__main__":
    main()
