#!/usr/bin/env python
"""Train a class-conditional generator (LlamaGen's GPT) on the codes of an FVQ tokenizer, with Accelerate.

    python training/extract_codes.py --pretrained_model_name_or_path outputs/fvq-mnist-tokenizer \
        --output_dir outputs/mnist-codes --no_flip
    python training/train_generator.py --codes_dir outputs/mnist-codes --output_dir outputs/fvq-gen-mnist
    torchrun --nproc_per_node 2 training/train_generator.py --codes_dir outputs/mnist-codes ...   # 2 CPU processes
    accelerate launch --multi_gpu training/train_generator.py --codes_dir imagenet-codes --transformer_preset GPT-L \
        --train_batch_size 256 --learning_rate 1e-4 --num_train_epochs 300 --output_dir fvq-gpt-l

Defaults follow the FVQ paper's generator recipe (§4.3, LlamaGen's c2i GPT unchanged): AdamW (0.9, 0.95) with
weight decay 0.05 on ≥ 2-D weights, lr 1e-4 per 256 sequences scaled by the global batch (as a float: LlamaGen's
integer division gives 0 below 256), 5 % of the steps constant then linear decay to 1 % (``--lr_scheduler
generator``; ``annealing``, ``cosine``, ``constant`` selectable), class dropout 0.1 for guidance, clipping 1.0,
bf16 on GPUs that support it. The output folder is an ``FVQPipeline`` (tokenizer + transformer + class names)
with a model card; checkpoints resume exactly (``--resume_from_checkpoint latest``) and hold the transformer as a
``from_pretrained`` folder. A run refuses an ``--output_dir`` that holds another run, and a checkpoint that another
run saved (``fvq_hf.training.runs``).

The file reads top to bottom: the options, the pieces a run is built from, sample grids, then ``main``.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fvq_hf import FVQModel, FVQPipeline, FVQTransformer, generate
from fvq_hf.data import make_grid, tensor_to_pil
from fvq_hf.data.codes import CodesDataset
from fvq_hf.models import TRANSFORMER_PRESETS
from fvq_hf.training import (
    GENERATOR_SCHEDULES,
    FixedDecayEMA,
    TrainingProgress,
    TrainingRun,
    add_config_argument,
    add_run_arguments,
    averaged_copy,
    build_accelerator,
    get_scheduler,
    hardware_summary,
    parse_args_with_config,
    resumable_batches,
)
from fvq_hf.training.outputs import save_trained_generator


# ----------------------------------------------------------------------------------------------- options
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser)
    data = parser.add_argument_group("data and models")
    data.add_argument("--codes_dir", required=True, help="a codes folder written by training/extract_codes.py")
    data.add_argument(
        "--pretrained_tokenizer", default=None, help="the tokenizer (default: the one the codes came from)"
    )
    data.add_argument(
        "--pretrained_tokenizer_subfolder", default=None, help="subfolder of --pretrained_tokenizer (e.g. unfolded)"
    )
    data.add_argument(
        "--transformer_preset", default="GPT-B", choices=sorted(TRANSFORMER_PRESETS), help="GPT size (LlamaGen's)"
    )
    data.add_argument("--pretrained_transformer", default=None, help="start from a saved FVQTransformer (fine-tune)")
    for name in ("dim", "n_layer", "n_head", "multiple_of"):
        data.add_argument(f"--{name}", type=int, default=None, help=f"override the preset's {name}")
    for name, default, what in (
        ("class_dropout_prob", 0.1, "probability of dropping the class label (for classifier-free guidance)"),
        ("token_dropout_p", 0.1, "dropout on the token embeddings"),
        ("resid_dropout_p", 0.1, "dropout on the residual branches"),
        ("ffn_dropout_p", 0.1, "dropout inside the feed-forward blocks"),
        ("drop_path_rate", 0.0, "stochastic depth rate"),
    ):
        data.add_argument(f"--{name}", type=float, default=default, help=what)
    data.add_argument(
        "--output_dir", default="outputs/fvq-generator", help="where checkpoints, logs and the pipeline go"
    )

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--train_batch_size", type=int, default=64, help="sequences per process and step")
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1, help="batches per optimizer step")
    optim.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_train_epochs")
    optim.add_argument(
        "--num_train_epochs", type=int, default=300, help="passes over the codes when --max_train_steps is not given"
    )
    optim.add_argument("--learning_rate", type=float, default=1e-4, help="per --lr_reference_batch sequences")
    optim.add_argument(
        "--lr_reference_batch", type=int, default=256, help="the rate is scaled linearly from this global batch"
    )
    optim.add_argument("--no_scale_lr", action="store_true", help="use --learning_rate as is")
    optim.add_argument(
        "--lr_scheduler",
        default="generator",
        choices=GENERATOR_SCHEDULES,
        help="generator (FVQ's: constant, then linear to 1 %%), annealing, cosine or constant",
    )
    optim.add_argument("--lr_constant_ratio", type=float, default=0.05, help="generator schedule: constant part")
    optim.add_argument("--lr_warmup_ratio", type=float, default=0.1, help="annealing/cosine/constant: warmup part")
    optim.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW β1")
    optim.add_argument("--adam_beta2", type=float, default=0.95, help="AdamW β2")
    optim.add_argument("--weight_decay", type=float, default=0.05, help="on weights with ≥ 2 dimensions")
    optim.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping norm; 0 turns it off")
    optim.add_argument("--use_ema", action="store_true", help="keep an EMA of the weights and save it")
    optim.add_argument("--ema_decay", type=float, default=0.9999, help="EMA decay per optimizer step (fixed)")
    optim.add_argument("--mixed_precision", default=None, choices=["no", "fp16", "bf16"], help="default: bf16 on GPUs")
    optim.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order, views and dropout")
    optim.add_argument(
        "--cpu", action="store_true", help="train on the CPU even where a GPU is present (automatic for torchrun)"
    )
    optim.add_argument("--dataloader_num_workers", type=int, default=0, help="data loading processes per process")

    run = parser.add_argument_group("logging, checkpoints, samples")
    run.add_argument("--logging_steps", type=int, default=50, help="log the loss every N steps")
    run.add_argument("--checkpointing_steps", type=int, default=1000, help="save the full training state every N steps")
    run.add_argument("--checkpoints_total_limit", type=int, default=2, help="keep only the newest N checkpoints")
    run.add_argument("--resume_from_checkpoint", default=None, help='"latest" or a checkpoint folder name')
    run.add_argument("--validation_steps", type=int, default=500, help="sample grid to TensorBoard every N steps")
    run.add_argument("--num_validation_images", type=int, default=8, help="per class (first 10 classes)")
    run.add_argument("--report_to", default="tensorboard", help='"tensorboard", "wandb", "all" or "none"')
    run.add_argument("--logging_dir", default="logs", help="under --output_dir")
    sampling = parser.add_argument_group("sampling defaults (saved with the pipeline)")
    sampling.add_argument("--guidance_scale", type=float, default=1.75, help="classifier-free guidance scale")
    sampling.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    sampling.add_argument("--top_k", type=int, default=0, help="sample from the k likeliest tokens; 0: all")
    sampling.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass; 1: all")
    fid = parser.add_argument_group("FID of generated images (optional)")
    fid.add_argument("--inception_weights", default=None, help="pytorch-fid's pt_inception weights (file or Hub)")
    fid.add_argument("--fid_reference_dir", default=None, help="real images to compare against")
    fid.add_argument("--fid_num_samples", type=int, default=5000, help="generated images compared")
    add_run_arguments(parser.add_argument_group("outputs"))
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = parse_args_with_config(build_parser(), argv)
    if args.fid_reference_dir and not args.inception_weights:
        raise SystemExit("--fid_reference_dir needs --inception_weights (pytorch-fid's FID Inception weights)")
    return args


# ----------------------------------------------------------------------------------------------- pieces
def build_transformer(args, dataset: CodesDataset) -> FVQTransformer:
    meta = dataset.meta
    block_size = meta["grid"][0] * meta["grid"][1]
    if args.pretrained_transformer:
        model = FVQTransformer.from_pretrained(args.pretrained_transformer)
        wanted = {"vocab_size": meta["codebook_size"], "block_size": block_size, "num_classes": meta["num_classes"]}
        wrong = {k: (model.config[k], v) for k, v in wanted.items() if model.config[k] != v}
        if wrong:
            raise SystemExit(f"--pretrained_transformer does not fit these codes (model vs codes): {wrong}")
        return model
    overrides = {k: getattr(args, k) for k in ("dim", "n_layer", "n_head", "multiple_of") if getattr(args, k)}
    dropouts = ("class_dropout_prob", "token_dropout_p", "resid_dropout_p", "ffn_dropout_p", "drop_path_rate")
    return FVQTransformer.from_preset(
        args.transformer_preset,
        vocab_size=meta["codebook_size"],
        block_size=block_size,
        num_classes=meta["num_classes"],
        **overrides,
        **{k: getattr(args, k) for k in dropouts},
    )


def build_optimizer(model: FVQTransformer, lr: float, args) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings only (LlamaGen's grouping), fused where available."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(args.adam_beta1, args.adam_beta2))


def build_scheduler(args, optimizer, max_steps: int):
    """The --lr_scheduler (fvq_hf.training.schedules), stepped by hand once per optimizer step."""
    return get_scheduler(args.lr_scheduler, optimizer, max_steps, args.lr_warmup_ratio, args.lr_constant_ratio)


@torch.no_grad()
def sample_grid(transformer, tokenizer, num_classes: int, per_class: int, args, seed: int):
    """One row per class (the first 10): a PIL grid of samples, and the tokens behind it."""
    classes = list(range(min(num_classes, 10)))
    labels = torch.tensor(classes).repeat_interleave(per_class)
    tokens = generate(
        transformer,
        labels,
        guidance_scale=args.guidance_scale,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        generator=torch.Generator(transformer.device).manual_seed(seed),
    )
    images = tensor_to_pil(tokenizer.decode_indices(tokens.to(tokenizer.device)))
    return make_grid([images[i * per_class : (i + 1) * per_class] for i in range(len(classes))]), tokens


def recipe_summary(args, lr: float, global_batch: int, max_steps: int, model: FVQTransformer) -> dict:
    schedule = {
        "generator": f"constant for {args.lr_constant_ratio:.0%} of the steps, then linear to 1 %",
        "annealing": "learning annealing (warmup, 30 % constant, linear to 1 %)",
        "cosine": "warmup then cosine decay to 1 %",
        "constant": "warmup then constant",
    }[args.lr_scheduler]
    return {
        "transformer": args.pretrained_transformer or args.transformer_preset,
        "parameters": f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M",
        "optimizer": f"AdamW β = ({args.adam_beta1}, {args.adam_beta2}), weight decay {args.weight_decay} on ≥ 2-D weights",
        "learning rate": f"{lr:.3g} ({args.learning_rate:g} per {args.lr_reference_batch} sequences"
        + (", not scaled)" if args.no_scale_lr else f", scaled to the global batch {global_batch})"),
        "schedule": schedule,
        "steps": max_steps,
        "class dropout (for guidance)": args.class_dropout_prob,
        "dropout (token / residual / FFN)": f"{args.token_dropout_p} / {args.resid_dropout_p} / {args.ffn_dropout_p}",
        "gradient clipping": args.max_grad_norm,
        "EMA": f"fixed decay {args.ema_decay}" if args.use_ema else "none",
        "mixed precision": args.mixed_precision,
    }


def load_tokenizer(args, dataset: CodesDataset) -> tuple[FVQModel, str]:
    """The folded tokenizer the codes came from (or --pretrained_tokenizer), and its name for the card; a tokenizer
    that cannot be loaded, or does not fit the codes, stops the run naming --pretrained_tokenizer."""
    meta = dataset.meta
    if args.pretrained_tokenizer:
        source, subfolder, where = (
            args.pretrained_tokenizer,
            args.pretrained_tokenizer_subfolder,
            "--pretrained_tokenizer",
        )
    else:
        source, subfolder = meta["tokenizer"], meta.get("tokenizer_subfolder")
        where = f"the tokenizer recorded in {os.path.join(args.codes_dir, 'meta.json')}"
    try:
        tokenizer = FVQModel.from_pretrained(source, subfolder=subfolder)
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SystemExit(
            f"error: could not load {where}, {source!r}{f' (subfolder {subfolder})' if subfolder else ''}: {first}\n"
            "Pass the tokenizer the codes were extracted with: --pretrained_tokenizer <folder or Hub id> "
            "(and --pretrained_tokenizer_subfolder if it is in one)."
        ) from None
    if tokenizer.config.codebook_size != meta["codebook_size"]:
        raise SystemExit(
            f"the tokenizer {source} has {tokenizer.config.codebook_size} codes, the codes in {args.codes_dir} come "
            f"from one with {meta['codebook_size']}: pass the right --pretrained_tokenizer"
        )
    if not tokenizer.config.folded:
        tokenizer = tokenizer.fold()
    tokenizer.register_to_config(sample_size=meta["resolution"])  # the resolution its codes were made at
    name = meta.get("tokenizer_name", source) if not args.pretrained_tokenizer else source
    return tokenizer.eval().requires_grad_(False), name


# ----------------------------------------------------------------------------------------------- main
# what a generator run saves in its output folder besides the run's own files
MODEL_FILES = ("model_index.json", "transformer", "vqvae", "README.md", "samples.png")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.time()
    accelerator = build_accelerator(args)
    set_seed(args.seed)

    # ---- everything that can be checked is checked before anything is written
    try:
        dataset = CodesDataset(args.codes_dir, seed=args.seed)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    run = TrainingRun(
        accelerator,
        args,
        "train_generator",
        MODEL_FILES,
        not_defining=("num_validation_images", "guidance_scale", "temperature", "top_k", "top_p", "fid_num_samples"),
        data={key: dataset.meta.get(key) for key in ("tokenizer", "source", "num_images", "resolution", "views")},
        base_model=args.pretrained_transformer,
    )
    log, global_batch, lr = run.log, run.global_batch, run.learning_rate

    # ---- data, models, optimizer
    tokenizer, tokenizer_name = load_tokenizer(args, dataset)
    tokenizer = tokenizer.to(accelerator.device)
    model = build_transformer(args, dataset)
    optimizer = build_optimizer(model, lr, args)
    dataloader = DataLoader(
        dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True, num_workers=args.dataloader_num_workers
    )
    if len(dataloader) == 0:
        raise SystemExit(f"{len(dataset)} sequences are fewer than one batch of {args.train_batch_size}")

    # ---- Accelerate, schedule, training state
    model, optimizer, dataloader = accelerator.prepare(model, optimizer, dataloader)
    unwrapped = accelerator.unwrap_model(model)
    steps_per_epoch = math.ceil(len(dataloader) / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    scheduler = build_scheduler(args, optimizer, max_steps)
    ema = FixedDecayEMA(unwrapped.parameters(), args.ema_decay) if args.use_ema else None  # LlamaGen's: fixed decay
    progress = TrainingProgress()
    # checkpoints hold FVQTransformer.from_pretrained(checkpoint, subfolder="transformer")
    if run.begin((scheduler, ema, progress), "fvq_generator", pretrained={"transformer": unwrapped}):
        log(f"continuing at step {progress.global_step}")
    parameters = sum(p.numel() for p in unwrapped.parameters())
    log(
        f"training a {parameters / 1e6:.1f} M-parameter transformer on {len(dataset)} sequences of "
        f"{unwrapped.config.block_size} tokens ({dataset.meta['num_classes']} classes): {max_steps} steps, "
        f"{accelerator.num_processes} process(es), global batch {global_batch}, lr {lr:.3g} ({args.lr_scheduler})"
    )
    progress_bar = tqdm(
        range(max_steps), initial=progress.global_step, desc="steps", disable=not accelerator.is_local_main_process
    )

    tensorboard = None  # sample grids go to TensorBoard only
    if accelerator.is_main_process and args.report_to in ("tensorboard", "all"):
        tensorboard = accelerator.get_tracker("tensorboard", unwrap=True)

    # ---- the loop: one batch per iteration, one optimizer step every --gradient_accumulation_steps batches
    batches = resumable_batches(accelerator, dataloader, progress)
    model.train()
    while progress.global_step < max_steps:
        tokens, labels = next(batches)
        # dropout and class dropout draw from a seed of (run, process, data position): a resumed run draws what an
        # uninterrupted one would, whatever else consumed the global generator (each DataLoader iterator does)
        torch.manual_seed(
            hash((args.seed, accelerator.process_index, progress.epoch, progress.batches_in_epoch)) % 2**63
        )
        with accelerator.accumulate(model):
            logits = model(tokens, labels).logits
            loss = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        if ema is not None:
            ema.step(unwrapped.parameters())
        progress.global_step += 1
        progress_bar.update(1)
        step = progress.global_step

        if step % args.logging_steps == 0 or step == max_steps:
            logs = {"loss": accelerator.reduce(loss.detach(), "mean").item(), "lr": scheduler.get_last_lr()[0]}
            run.log_metrics(step, logs)
            progress_bar.set_postfix(loss=f"{logs['loss']:.4f}")
        if step % args.checkpointing_steps == 0 and step < max_steps:
            run.save_checkpoint(step)
        if step % args.validation_steps == 0 and step < max_steps and tensorboard is not None:  # the last: below
            grid, _ = sample_grid(
                unwrapped, tokenizer, dataset.meta["num_classes"], args.num_validation_images, args, step
            )
            tensorboard.add_image("samples", np.asarray(grid), step, dataformats="HWC")
            model.train()

    # ---- outputs: the pipeline and its card, the results, then (only then) the push
    progress_bar.close()
    accelerator.wait_for_everyone()
    wall_time = time.time() - started
    summary = {}
    if accelerator.is_main_process:
        final = averaged_copy(unwrapped, ema).eval().to(accelerator.device)
        pipeline = FVQPipeline(
            vqvae=tokenizer,
            transformer=final,
            id2label=dataset.id2label,
            sampling_defaults={
                "guidance_scale": args.guidance_scale,
                "temperature": args.temperature,
                "top_k": args.top_k,
                "top_p": args.top_p,
            },
        )
        grid, _ = sample_grid(final, tokenizer, dataset.meta["num_classes"], args.num_validation_images, args, 0)
        if tensorboard is not None:
            tensorboard.add_image("samples", np.asarray(grid), progress.global_step, dataformats="HWC")
        metrics = {}
        if args.fid_reference_dir:
            from fvq_hf.evaluation.generation import generation_fid
            from fvq_hf.evaluation.inception import InceptionV3Features

            metrics["fid"] = generation_fid(
                pipeline,
                args.fid_reference_dir,
                InceptionV3Features.from_pretrained(args.inception_weights).to(accelerator.device),
                num_samples=args.fid_num_samples,
                generator=torch.Generator(accelerator.device).manual_seed(args.seed),
            )
            log(f"FID of {args.fid_num_samples} samples against {args.fid_reference_dir}: {metrics['fid']:.2f}")
        summary = save_trained_generator(
            pipeline,
            args.output_dir,
            sample_grid=grid,
            codes_meta={**dataset.meta, "tokenizer_name": tokenizer_name},
            recipe=recipe_summary(args, lr, global_batch, max_steps, final),
            hardware=hardware_summary(accelerator),
            wall_time=wall_time,
            final_loss=loss.detach().item() if progress.global_step else None,
            metrics=metrics,
            repo_id=run.hub.repo_id if run.hub is not None else None,
        )
        log(
            f"done in {wall_time / 60:.1f} min; saved the pipeline to {args.output_dir} "
            f"(FVQPipeline.from_pretrained('{args.output_dir}')) and a sample grid to {summary['sample_grid']}"
        )
    results = {
        "steps": progress.global_step,
        "wall_time_seconds": wall_time,
        "num_processes": accelerator.num_processes,
        **summary,
    }
    return run.finish(results, "Upload FVQ generator")


if __name__ == "__main__":
    main()
