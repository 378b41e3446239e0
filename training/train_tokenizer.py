#!/usr/bin/env python
"""Train an FVQ image tokenizer (VQBridge + learning annealing) with Accelerate.

    python training/train_tokenizer.py --config training/configs/demo-cpu.yaml        # the CPU demo
    accelerate launch training/train_tokenizer.py --config training/configs/fvq-16k.yaml \
        --train_data_dir /data/imagenet/train
    torchrun --nproc_per_node 8 training/train_tokenizer.py --dataset_name your/dataset --output_dir fvq-16k
    torchrun --standalone --nproc_per_node 2 training/train_tokenizer.py --train_data_dir my_photos ...  # 2 CPU processes
    python training/train_tokenizer.py --config training/configs/demo-cpu-rq.yaml    # RQ-VAE (--quantizer residual)
    python training/train_tokenizer.py --config training/configs/demo-cpu-var.yaml   # VAR (--quantizer multiscale)

Defaults are the paper's recipe for ``vq-16`` (arXiv 2509.10140, Table 6) as the official code runs it: Adam
(0.9, 0.95), lr 1e-4 per 128 images scaled by the global batch, gradient clipping 1.0, learning annealing on
generator and discriminator, L2 + VQ + 1.0·LPIPS + 0.5·hinge PatchGAN (from step 20,000) with the
discriminator's own hinge loss weighted 0.5 too, ADM's random crop + flip, and (with ``--use_ema``) an EMA of
fixed decay from the first step. One departure is on by default: a VQBridge slot that (almost) no token chose
for ``--slot_restart_steps`` steps is restarted from a live one (``fvq_hf.quantization.SlotRestart``; it acts
only where slots die, which small data makes common); ``--slot_restart_steps 0`` is the paper's recipe exactly,
and the model card records which was run. A YAML file (``--config``) can set every option; flags given on the command
line win over it. With no dataset the embedded demo photos are used, evaluated on their held-out cells and two
unseen photos; your own data is evaluated on ``--validation_data_dir``, ``--validation_split`` or the part
``--validation_fraction`` holds out, and otherwise not at all (the log and the card say so). ``--quantizer
residual`` or ``multiscale`` trains a ``MultiCodeFVQModel`` (RQ-VAE's depths, VAR's scales) with the same recipe,
its usage measured per depth or scale and overall; the default ``single`` is ``FVQModel``. A run refuses an
``--output_dir`` that holds another run, and a checkpoint that another run saved (``fvq_hf.training.runs``).

The file reads top to bottom: the options, the pieces a run is built from, the loss of one batch, evaluation
and the card's recipe, then ``main`` (set up, resume, the loop, the outputs).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import math
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, IterableDataset
from tqdm.auto import tqdm

from fvq_hf import CodebookUsage, FVQModel
from fvq_hf.data import (
    DEMO_EVAL_SETS,
    TRAIN_CROPS,
    DemoCropDataset,
    HFImageDataset,
    ImageFolderDataset,
    build_dataset,
    collate_images,
    demo_eval_samples,
    make_grid,
    shard_for_process,
    tensor_to_pil,
)
from fvq_hf.evaluation import evaluate_tokenizer
from fvq_hf.evaluation.evaluator import level_names, level_usage, live_slots
from fvq_hf.hub import quantizer_description
from fvq_hf.losses import (
    LPIPS,
    PatchGANDiscriminator,
    PerceptualWeightsUnavailable,
    adaptive_gan_weight,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from fvq_hf.models import MODEL_PRESETS, MULTICODE_PRESETS, MultiCodeFVQModel, load_tokenizer
from fvq_hf.quantization import PROJECTOR_TYPES, LevelUsage, SlotRestart, UsageStats
from fvq_hf.training import (
    SCHEDULES,
    FixedDecayEMA,
    TrainingProgress,
    TrainingRun,
    add_config_argument,
    add_run_arguments,
    append_metrics,
    applied_quantizer_lr_scale,
    averaged_copy,
    build_accelerator,
    get_scheduler,
    hardware_summary,
    parse_args_with_config,
    resumable_batches,
    tokenizer_param_groups,
)
from fvq_hf.training.outputs import save_trained_tokenizer

logger = get_logger(__name__)


# =============================================================================================== configuration
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(p)

    g = p.add_argument_group("model")
    g.add_argument(
        "--model_preset",
        default=None,
        choices=sorted(MODEL_PRESETS) + sorted(MULTICODE_PRESETS),
        help="tokenizer architecture to build (default: vq-16; rq-8x8x4 with --quantizer residual, var-10scale "
        "with --quantizer multiscale)",
    )
    g.add_argument(
        "--pretrained_model_name_or_path",
        default=None,
        help="Hub id or folder to fine-tune from (its unfolded/ subfolder is used when present)",
    )
    g.add_argument("--codebook_size", type=int, default=None, help="number of codes K (default: the preset's)")
    g.add_argument("--codebook_dim", type=int, default=None, help="code dimension d (default: the preset's)")
    g.add_argument("--projector", default="vqbridge", choices=PROJECTOR_TYPES, help="codebook projector")
    g.add_argument("--bridge", default=None, help="VQBridge preset such as L/4 or L/8 (default: the preset's)")
    g.add_argument(
        "--bridge_output_init_std",
        type=float,
        default=None,
        help="std of the bridge's last Linear at init; 0 is the paper's zero init",
    )
    g.add_argument(
        "--codebook_init_std",
        type=float,
        default=None,
        help="N(0, std²) init of the raw codebook; unset is the paper's uniform ±1/K",
    )
    g.add_argument(
        "--l2_normalize",
        action="store_true",
        help="LlamaGen's cosine lookup (its codebook_l2_norm): latents and codes l2-normalised at every lookup, "
        "as in LlamaGen's d = 8 tokenizer; not FVQ's init-time normalisation (--codebook_init_l2)",
    )
    g.add_argument(
        "--codebook_init_l2",
        action="store_true",
        help="FVQ's codebook_l2_norm: l2-normalise the raw codebook's rows once at init; the lookup stays plain L2 "
        "(off in the paper's runs)",
    )
    g.add_argument(
        "--slot_restart_steps",
        type=int,
        default=100,
        help="every N optimizer steps, restart each VQBridge slot that got under --slot_restart_threshold of its "
        "share of the tokens from the busiest slot (not in the paper; 0 turns it off: the paper's recipe)",
    )
    g.add_argument(
        "--slot_restart_threshold",
        type=float,
        default=0.1,
        help="a slot is dead below this fraction of its fair share (tokens / p²) of a window",
    )
    g.add_argument(
        "--slot_restart_noise",
        type=float,
        default=0.1,
        help="noise added to the donor slot's rows, relative to their RMS",
    )

    g = p.add_argument_group("multi-code tokenizers (RQ-VAE, VAR): MultiCodeFVQModel")
    g.add_argument(
        "--quantizer",
        default="single",
        choices=QUANTIZERS,
        help="single: one code per position (FVQModel); residual: RQ-VAE's --rq_depth codes per position; "
        "multiscale: VAR's token maps of --scales; both over one codebook through the projector",
    )
    g.add_argument(
        "--rq_depth", type=int, default=None, help="codes per position of --quantizer residual (default: the preset's)"
    )
    g.add_argument(
        "--scales",
        default=None,
        help="token-map sides of --quantizer multiscale, comma-separated and increasing, the last one the latent "
        "side (--resolution / downsampling), e.g. 1,2,3,4,6,8 (default: the preset's)",
    )
    g.add_argument(
        "--num_phi",
        type=int,
        default=None,
        help="φ convolutions shared over the scales (VAR: 4; default: the preset's)",
    )
    g.add_argument(
        "--phi_ratio",
        type=float,
        default=None,
        help="φ(h) = (1 − r)·h + r·conv(h), r in [0, 1] (VAR: 0.5; default: the preset's)",
    )
    g.add_argument(
        "--cosine_search",
        action="store_const",
        const=True,
        default=None,
        help="multi-scale: choose codes by cosine similarity (VAR's using_znorm) instead of L2 distance, a departure "
        "from FVQ's VAR recipe; the VAR CPU demo sets it (87%% of its codes in use held out, ~10%% with L2)",
    )

    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset_name", default=None, help="a Hugging Face datasets image dataset (Hub name or local path)"
    )
    g.add_argument("--dataset_config_name", default=None, help="its configuration name")
    g.add_argument("--train_data_dir", default=None, help="a folder of images (searched recursively)")
    g.add_argument("--image_column", default="image", help="the image column of --dataset_name")
    g.add_argument("--streaming", action="store_true", help="stream --dataset_name instead of downloading it")
    g.add_argument("--validation_data_dir", default=None, help="a folder of held-out images for evaluation")
    g.add_argument(
        "--validation_split", default=None, help="a split of --dataset_name for evaluation (e.g. validation)"
    )
    g.add_argument(
        "--validation_fraction",
        type=float,
        default=0.0,
        help="hold out this fraction of --train_data_dir or --dataset_name (a draw seeded by --seed, the same every "
        "run, never trained on) and evaluate on it; without it or a validation set, your data is not evaluated",
    )
    g.add_argument(
        "--resolution", type=int, default=256, help="training crop size; a multiple of the downsampling factor"
    )
    g.add_argument(
        "--demo_samples", type=int, default=4096, help="crops per epoch of the demo photos (no dataset given)"
    )
    g.add_argument(
        "--eval_samples",
        type=int,
        default=None,
        help="crops of each held-out demo set (demo data only); default: 64 tokens per code: a "
        "trained tokenizer's codes are not uniform, and at 16 per code a rarer code is often missed by chance",
    )
    g.add_argument(
        "--train_crop",
        default="adm",
        choices=TRAIN_CROPS,
        help="training crop of a folder or dataset: adm (the official one: short side resized to a random length in "
        "[r, r/0.8], random r×r crop) or short_side (a random square of the whole short side, resized to r); "
        "flipped either way. The demo photos keep their own crops",
    )
    g.add_argument("--dataloader_num_workers", type=int, default=0, help="data loading processes per training process")

    g = p.add_argument_group("optimisation")
    g.add_argument("--train_batch_size", type=int, default=16, help="images per process per step")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1, help="batches per optimizer step")
    g.add_argument("--max_train_steps", type=int, default=None, help="optimizer steps (overrides --num_train_epochs)")
    g.add_argument(
        "--num_train_epochs", type=int, default=40, help="passes over the data when --max_train_steps is not given"
    )
    g.add_argument("--learning_rate", type=float, default=1e-4, help="base rate per --lr_reference_batch images")
    g.add_argument(
        "--lr_reference_batch", type=int, default=128, help="the rate is scaled linearly from this global batch"
    )
    g.add_argument("--no_scale_lr", action="store_true", help="use --learning_rate as is, whatever the global batch")
    g.add_argument(
        "--lr_scheduler",
        default="annealing",
        choices=SCHEDULES,
        help="learning annealing (the paper's), cosine decay, or constant",
    )
    g.add_argument("--lr_warmup_ratio", type=float, default=0.1, help="warmup as a fraction of the steps")
    g.add_argument(
        "--quantizer_lr_scale",
        type=float,
        default=1.0,
        help="multiplier of the learning rate for the quantizer's parameters (raw codebook, projector, VAR's φ "
        "convolutions); the paper trains everything at one rate (1)",
    )
    g.add_argument("--adam_beta1", type=float, default=0.9, help="Adam β1 (generator and discriminator)")
    g.add_argument("--adam_beta2", type=float, default=0.95, help="Adam β2 (the paper: 0.95)")
    g.add_argument("--weight_decay", type=float, default=0.0, help="Adam weight decay (the paper: none)")
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping norm; 0 turns it off")
    g.add_argument(
        "--mixed_precision",
        default=None,
        choices=["no", "fp16", "bf16"],
        help="default: bf16 on GPUs that support it, else no",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and crops")
    g.add_argument(
        "--cpu",
        action="store_true",
        help="train on the CPU even where a GPU is present (automatic for torchrun without GPUs)",
    )
    g.add_argument("--use_ema", action="store_true", help="keep an EMA of the weights and save it as the final model")
    g.add_argument("--ema_decay", type=float, default=0.9999, help="EMA decay per optimizer step")
    g.add_argument(
        "--ema_schedule",
        default="fixed",
        choices=["fixed", "warmup"],
        help="fixed: --ema_decay from the first step, as the official code; "
        "warmup: diffusers' EMAModel, decay (1 + t) / (10 + t) capped at --ema_decay",
    )

    g = p.add_argument_group("losses")
    g.add_argument("--reconstruction_loss", default="l2", choices=["l2", "l1"], help="pixel reconstruction loss")
    g.add_argument("--codebook_weight", type=float, default=1.0, help="weight of codebook + commitment terms")
    g.add_argument("--perceptual_weight", type=float, default=1.0, help="LPIPS weight; 0 turns it off")
    g.add_argument("--perceptual_weights", default="timm/vgg16.tv_in1k", help="VGG16 weights: Hub id or local file")
    g.add_argument("--perceptual_random_init", action="store_true", help="random VGG16 (tests and CPU demos only)")
    g.add_argument("--gan_weight", type=float, default=0.5, help="hinge PatchGAN weight; 0 turns the discriminator off")
    g.add_argument("--gan_start_step", type=int, default=20000, help="step at which the GAN terms start")
    g.add_argument(
        "--disc_loss_weight",
        type=float,
        default=None,
        help="weight of the discriminator's own hinge loss, applied before backward and clipping "
        "(default: --gan_weight, as the official code; 1 trains it on the unweighted loss)",
    )
    g.add_argument(
        "--adaptive_gan_weight",
        action="store_true",
        help="balance the GAN gradient against the reconstruction's (VQGAN)",
    )
    g.add_argument("--disc_base_channels", type=int, default=64, help="PatchGAN channels of the first layer")
    g.add_argument("--disc_layers", type=int, default=3, help="PatchGAN strided layers")

    g = p.add_argument_group("checkpoints, evaluation, logging, outputs")
    g.add_argument(
        "--output_dir", default="outputs/fvq-tokenizer", help="where checkpoints, logs and the final tokenizer go"
    )
    g.add_argument("--checkpointing_steps", type=int, default=10000, help="save the full training state every N steps")
    g.add_argument("--checkpoints_total_limit", type=int, default=None, help="keep only the newest N checkpoints")
    g.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder to continue from")
    g.add_argument(
        "--validation_steps",
        "--eval_steps",
        type=int,
        default=5000,
        help="evaluate on the held-out images every N steps (and at the end)",
    )
    g.add_argument("--logging_steps", type=int, default=10, help="log losses and training usage every N steps")
    g.add_argument("--report_to", default="tensorboard", help="tensorboard, wandb, all or none")
    g.add_argument("--logging_dir", default="logs", help="under --output_dir")
    add_run_arguments(g)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parse_args_with_config(parser, argv)
    if args.dataset_name and args.train_data_dir:
        parser.error("pass --dataset_name or --train_data_dir, not both")
    if not args.quantizer_lr_scale > 0:
        parser.error(f"--quantizer_lr_scale {args.quantizer_lr_scale}: a positive multiplier (1 trains at one rate)")
    if args.validation_fraction:
        if not (args.dataset_name or args.train_data_dir):
            parser.error("--validation_fraction holds out part of your data: pass --train_data_dir or --dataset_name")
        if args.validation_data_dir or args.validation_split:
            parser.error("pass --validation_fraction or a validation set (--validation_data_dir/_split), not both")
    check_quantizer_args(parser, args)
    if args.disc_loss_weight is None:  # resolved here so the config and the card record the number
        args.disc_loss_weight = args.gan_weight
    return args


QUANTIZERS = ("single", "residual", "multiscale")
DEFAULT_PRESETS = {"single": "vq-16", "residual": "rq-8x8x4", "multiscale": "var-10scale"}
MULTICODE_OPTIONS = {
    "rq_depth": "residual",
    "scales": "multiscale",
    "num_phi": "multiscale",
    "phi_ratio": "multiscale",
    "cosine_search": "multiscale",
}


def check_quantizer_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Resolve the preset from --quantizer and refuse options that do not fit it, saying how to fix them; --scales
    becomes a canonical "1,2,3" string (the run record compares it on resume)."""
    kind = args.quantizer
    if args.model_preset is None:
        args.model_preset = DEFAULT_PRESETS[kind]
    preset_kind = MULTICODE_PRESETS.get(args.model_preset, {}).get("quantizer", "single")
    if preset_kind != kind:
        fits = ", ".join(
            sorted(MODEL_PRESETS)
            if kind == "single"
            else sorted(n for n, c in MULTICODE_PRESETS.items() if c["quantizer"] == kind)
        )
        parser.error(
            f"--model_preset {args.model_preset} is a {preset_kind} tokenizer, not --quantizer {kind}: pass "
            f"--quantizer {preset_kind}, or a {kind} preset ({fits})"
        )
    for option, needs in MULTICODE_OPTIONS.items():
        if getattr(args, option) is not None and kind != needs:
            parser.error(f"--{option} sets the {needs} quantizer: add --quantizer {needs} (or drop --{option})")
    if kind != "single":
        for flag in ("l2_normalize", "codebook_init_l2"):
            if getattr(args, flag):
                parser.error(f"--{flag} is an option of single-code tokenizers only (FVQModel): drop it")
    if args.rq_depth is not None and args.rq_depth < 1:
        parser.error(f"--rq_depth {args.rq_depth}: at least 1 code per position")
    if args.num_phi is not None and args.num_phi < 1:
        parser.error(f"--num_phi {args.num_phi}: at least one φ convolution")
    if args.phi_ratio is not None and not 0 <= args.phi_ratio <= 1:
        parser.error(f"--phi_ratio {args.phi_ratio}: a ratio in [0, 1] (VAR: 0.5)")
    if args.scales is not None:
        text = args.scales if isinstance(args.scales, str) else ",".join(map(str, args.scales))  # YAML: a list
        try:
            scales = [int(side) for side in text.replace(" ", "").split(",")]
        except ValueError:
            parser.error(f"--scales {text}: comma-separated integers, e.g. 1,2,3,4,6,8")
        if len(scales) < 2 or scales[0] < 1 or any(b <= a for a, b in itertools.pairwise(scales)):
            parser.error(
                f"--scales {text}: at least two positive sides, each larger than the one before (e.g. 1,2,3,4,6,8)"
            )
        args.scales = ",".join(map(str, scales))


def check_resolution(args, model) -> None:
    """End the run before anything is written when --resolution does not fit the model's latent grid."""
    f = model.downsample_factor
    if args.resolution % f:
        raise SystemExit(f"--resolution {args.resolution} is not a multiple of the model's downsampling factor {f}")
    if model.config.get("quantizer") == "multiscale":
        last, side = model.config.scales[-1], args.resolution // f
        if last != side:
            raise SystemExit(
                f"--resolution {args.resolution} gives {side} × {side} latents at {f}× downsampling, but the last "
                f"scale is {last}: pass --resolution {last * f}, or --scales ending in {side}"
            )


# =============================================================================================== building blocks
def build_model(args, log) -> tuple[FVQModel | MultiCodeFVQModel, bool]:
    """The tokenizer to train (``FVQModel``, or ``MultiCodeFVQModel`` for --quantizer residual / multiscale), and
    whether its codebook is frozen (fine-tuning a folded-only model)."""
    if args.pretrained_model_name_or_path:
        source = args.pretrained_model_name_or_path
        try:
            if os.path.isdir(source) and not os.path.isdir(os.path.join(source, "unfolded")):
                model = load_tokenizer(source)
            else:
                try:  # a Hub id: its unfolded/ when it has one
                    model = load_tokenizer(source, subfolder="unfolded")
                except OSError:
                    model = load_tokenizer(source)
        except (OSError, ValueError) as error:
            raise SystemExit(
                f"error: --pretrained_model_name_or_path {source}: no tokenizer could be loaded ({error})"
            ) from None
        kind = model.config.get("quantizer", "single")
        if kind != args.quantizer:
            raise SystemExit(f"error: {source} is a {kind} tokenizer: pass --quantizer {kind}")
        if not model.config.folded:
            log(f"fine-tuning from {source}: raw codebook and {model.config.projector} projector go on training")
        frozen = bool(model.config.folded)
        if frozen:
            model.quantize.embedding.weight.requires_grad_(False)
            log(
                f"{source} is folded (no raw codebook or bridge to train): "
                "training encoder and decoder with the codebook frozen"
            )
        return model, frozen
    overrides = {"projector": args.projector}
    for key in ("codebook_size", "codebook_dim", "bridge", "bridge_output_init_std", "codebook_init_std"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    for flag in ("l2_normalize", "codebook_init_l2"):
        if getattr(args, flag):
            overrides[flag] = True
    if args.quantizer == "single":
        return FVQModel.from_preset(args.model_preset, **overrides), False
    for key in MULTICODE_OPTIONS:
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if "scales" in overrides:
        overrides["scales"] = tuple(int(side) for side in overrides["scales"].split(","))
    return MultiCodeFVQModel.from_preset(args.model_preset, **overrides), False


def build_perceptual_loss(args, device, log) -> LPIPS | None:
    """LPIPS on VGG16 (None with --perceptual_weight 0); missing weights end the run with how to fix it."""
    if args.perceptual_weight <= 0:
        return None
    try:
        lpips = LPIPS(args.perceptual_weights, random_init=args.perceptual_random_init).to(device)
    except PerceptualWeightsUnavailable as error:
        raise SystemExit(f"error: {error}\n(--perceptual_weight 0 trains without LPIPS, e.g. offline)") from None
    if args.perceptual_random_init:
        log("warning: LPIPS uses a random VGG16 (--perceptual_random_init): for tests and CPU demos only")
    return lpips


def build_discriminator(args, channels: int) -> PatchGANDiscriminator | None:
    """The PatchGAN (None with --gan_weight 0), checked once on a crop so a too-deep one fails before training."""
    if args.gan_weight <= 0:
        return None
    discriminator = PatchGANDiscriminator(channels, args.disc_base_channels, args.disc_layers)
    try:
        with torch.no_grad():
            discriminator.eval()(torch.zeros(1, channels, args.resolution, args.resolution))
    except RuntimeError:
        raise SystemExit(
            f"--resolution {args.resolution} is too small for a PatchGAN with --disc_layers {args.disc_layers}: "
            "use fewer layers or larger crops"
        ) from None
    return discriminator.train()


def build_ema(args, model: FVQModel, device):
    """The EMA of the tokenizer's weights (None without --use_ema): fixed decay, or diffusers' warmup."""
    if not args.use_ema:
        return None
    if args.ema_schedule == "fixed":
        return FixedDecayEMA(model.parameters(), decay=args.ema_decay).to(device)
    from diffusers.training_utils import EMAModel

    ema = EMAModel(model.parameters(), decay=args.ema_decay, model_cls=type(model), model_config=model.config)
    ema.to(device)
    return ema


def build_slot_restart(args, model, codebook_frozen: bool, log) -> SlotRestart | None:
    """Dead-slot restart for a VQBridge being trained (None with --slot_restart_steps 0 or without a bridge)."""
    if args.slot_restart_steps <= 0 or model.config.projector != "vqbridge" or codebook_frozen:
        return None
    bridge = model.quantize.projector
    log(
        f"slot restart: every {args.slot_restart_steps} steps, a slot under {args.slot_restart_threshold:g} of its "
        f"share of the tokens is restarted from the busiest one (--slot_restart_steps 0: the paper's recipe)"
    )
    return SlotRestart(
        bridge,
        every=args.slot_restart_steps,
        threshold=args.slot_restart_threshold,
        noise=args.slot_restart_noise,
        seed=args.seed,
    )


def data_name(args) -> str:
    """The training data as cards and logs name it: the dataset, the folder's name (not a path on this machine), or
    the demo photos."""
    if args.dataset_name:
        return args.dataset_name
    if args.train_data_dir:
        return f"image folder {os.path.basename(os.path.normpath(args.train_data_dir))}"
    return "embedded demo photos"


def training_data(args, part: str = "train"):
    """The training images (``part="train"``), or the part of them --validation_fraction holds out (``"holdout"``,
    centre-cropped, never among the training ones)."""
    return build_dataset(
        args.dataset_name,
        args.train_data_dir,
        args.resolution,
        args.image_column,
        args.streaming,
        args.seed,
        args.demo_samples,
        config_name=args.dataset_config_name,
        crop=args.train_crop,
        holdout_fraction=args.validation_fraction,
        part=part,
    )


def build_eval_datasets(args, model: FVQModel) -> list[tuple[str, object, str]]:
    """The held-out sets as (log prefix, dataset, description), the first the one the card leads with; empty when
    the user's data has none (the run says so).

    --validation_data_dir or --validation_split give one set; --validation_fraction holds out part of the
    training data (never trained on). The demo photos (no data given) give two, as usage should be measured: the
    held-out cells of the training photographs (the training distribution, never trained on) and, harder, two
    photographs never seen, each with --eval_samples crops (default: 64 tokens per code). The demo's sets and
    their labels are used with the demo data only: they say nothing true of a user's images.
    """
    if args.validation_data_dir:
        dataset = ImageFolderDataset(args.validation_data_dir, args.resolution, train=False)
        name = os.path.basename(os.path.normpath(args.validation_data_dir))
        return [("eval", dataset, f"{len(dataset)} images in the folder {name}")]
    if args.dataset_name and args.validation_split:
        dataset = HFImageDataset(
            args.dataset_name,
            args.resolution,
            args.image_column,
            split=args.validation_split,
            train=False,
            config_name=args.dataset_config_name,
        )
        return [("eval", dataset, f"{args.dataset_name} [{args.validation_split}]")]
    if args.validation_fraction:
        dataset = training_data(args, part="holdout")
        description = (
            f"{len(dataset)} images held out of {data_name(args)} ({args.validation_fraction:g} of it, drawn with "
            f"seed {args.seed}; never trained on)"
        )
        return [("eval", dataset, description)]
    if args.dataset_name or args.train_data_dir:
        return []
    samples = args.eval_samples or demo_eval_samples(
        model.config.codebook_size, args.resolution // model.downsample_factor
    )
    return [
        (prefix, DemoCropDataset(split, args.resolution, num_samples=samples, seed=args.seed), DEMO_EVAL_SETS[split])
        for prefix, split in (("eval", "parts"), ("eval_unseen", "heldout"))
    ]


NOT_EVALUATED = (
    "no held-out data: pass --validation_fraction to hold out part of the training images, "
    "or --validation_data_dir / --validation_split"
)


# =============================================================================================== the losses of a batch
@contextlib.contextmanager
def frozen(module: torch.nn.Module | None, active: bool = True):
    """Within the block ``module``'s parameters take no gradient (the inputs still get theirs)."""
    params = [p for p in module.parameters() if p.requires_grad] if module is not None and active else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def generator_loss(args, out, images, lpips, discriminator, gan_active: bool, last_layer) -> tuple[torch.Tensor, dict]:
    """The tokenizer's loss: reconstruction + perceptual + VQ terms (+ the adversarial term once the GAN is on).

    Returns the total and its terms (for the log). Call it with the discriminator ``frozen``: the adversarial
    term trains the tokenizer only."""
    reconstruction = out.sample
    if args.reconstruction_loss == "l2":
        rec_loss = F.mse_loss(reconstruction.float(), images.float())
    else:
        rec_loss = F.l1_loss(reconstruction.float(), images.float())
    vq_loss = out.codebook_loss + out.commitment_loss
    zero = torch.zeros((), device=images.device)
    perceptual = lpips(reconstruction.float(), images.float()).mean() if lpips is not None else zero
    nll = rec_loss + args.perceptual_weight * perceptual
    loss = nll + args.codebook_weight * vq_loss
    gan_g = zero
    if gan_active:
        gan_g = hinge_generator_loss(discriminator(reconstruction))
        weight = adaptive_gan_weight(nll, gan_g, last_layer) if args.adaptive_gan_weight else 1.0
        loss = loss + args.gan_weight * weight * gan_g
    terms = {
        "reconstruction_loss": rec_loss,
        "vq_loss": vq_loss,
        "perceptual_loss": perceptual,
        "gan_generator_loss": gan_g,
    }
    return loss, terms


# =============================================================================================== evaluation, card
def run_evaluation(accelerator, unwrapped, ema, dataloader, lpips, description, args, step, prefix="eval"):
    """Evaluate the weights that will be saved (the EMA's when there is one) on a whole held-out set; log its
    numbers under ``prefix`` (``eval/usage``, ``eval_unseen/usage``, …)."""
    if ema is not None:
        ema.store(unwrapped.parameters())
        ema.copy_to(unwrapped.parameters())
    demo = not (args.dataset_name or args.train_data_dir or args.validation_data_dir)
    crop = "fixed random crops" if demo else "centre crop + resize"
    protocol = f"{crop} to {args.resolution} px, in-memory float tensors (no file format round trip)"
    result, pairs = evaluate_tokenizer(unwrapped, dataloader, lpips=lpips, protocol=protocol, keep_first=8)
    if ema is not None:
        ema.restore(unwrapped.parameters())
    result.extra["eval_data"] = description
    tokens_per_image = unwrapped.tokens_per_image(args.resolution)
    result.extra["tokens_per_code"] = round(result.images * tokens_per_image / unwrapped.config.codebook_size, 2)
    for level in result.extra.get("levels", []):
        level["tokens_per_code"] = round(level["tokens"] / unwrapped.config.codebook_size, 2)
    scalars = {**result.as_dict(), **result.extra}
    numbers = {
        f"{prefix}/{k}": v for k, v in scalars.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    levels = {}  # per depth or scale: eval/usage_depth_1, eval/live_slots_scale_4x4, …
    for level in result.extra.get("levels", []):
        levels[f"{prefix}/usage_{level_key(level)}"] = level["usage"]
        if "live_slots" in level:
            levels[f"{prefix}/live_slots_{level_key(level)}"] = level["live_slots"]
    numbers.update(levels)
    accelerator.log(numbers, step=step)
    if accelerator.is_main_process and pairs is not None:
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                grid = make_grid([tensor_to_pil(pairs[0]), tensor_to_pil(pairs[1])])
                tracker.writer.add_image(f"{prefix}/reconstructions", np.asarray(grid), step, dataformats="HWC")
        row = {f"{prefix}/{k}": v for k, v in result.as_dict().items() if k != "extra"}
        row.update({f"{prefix}/{k}": v for k, v in result.extra.items() if k in ("live_slots", "slots")})
        row.update(levels)
        append_metrics(accelerator, args.output_dir, step, row)
    return result


def level_key(level: dict) -> str:
    """A level's name as a metric key: ``depth_1``, ``scale_4x4``."""
    return level["level"].replace(" ", "_")


def slot_restart_summary(args, restart: SlotRestart | None) -> str:
    """The dead-slot restart as run, in words (for the card's recipe)."""
    if restart is None:
        return "off (the paper's recipe)" if args.slot_restart_steps <= 0 else "not applicable (no bridge trained)"
    return (
        f"every {restart.every} steps, under {restart.threshold:g} of a slot's share, noise {restart.noise:g} "
        f"(not in the paper): {restart.restarts} slot restart(s) in this run"
    )


def describe_evaluation(result, description: str) -> str:
    """One line: usage (codes, live slots), perplexity, PSNR, SSIM of an evaluation, and what it was on."""
    extra = result.extra
    slots = f", {extra['live_slots']}/{extra['slots']} slots alive" if "live_slots" in extra else ""
    line = (
        f"{description}: usage {result.usage:.2%} ({result.used_codes:,} codes{slots}), "
        f"perplexity {result.perplexity:.1f}, PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.3f}"
    )
    if "levels" in extra:  # a multi-code model: each depth or scale on its own
        line += "; per level: " + ", ".join(
            f"{level['level']} {level['usage']:.2%}"
            + (f" ({level['live_slots']}/{level['slots']} slots)" if "live_slots" in level else "")
            for level in extra["levels"]
        )
    return line


def training_departures(args, restart: SlotRestart | None, quantizer_lr_scale: float = 1.0) -> list[str]:
    """Where the training recipe departed from the paper's, one sentence each, for the model card
    (``quantizer_lr_scale``: the multiplier the optimizer applied, 1 where it had no quantizer to scale)."""
    departures = []
    if restart is not None:
        departures.append(
            "bridge slots left with too few tokens were restarted from the busiest ones "
            f"({slot_restart_summary(args, restart)})"
        )
    if quantizer_lr_scale != 1:
        departures.append(
            f"the quantizer (raw codebook, projector, φ) trained at {quantizer_lr_scale:g} × the learning rate "
            "of the encoder and decoder instead of one rate for all"
        )
    return departures


def recipe_summary(
    args, lr, global_batch, max_steps, restart: SlotRestart | None = None, config=None, quantizer_lr_scale: float = 1.0
) -> dict:
    """The recipe as run, for the model card (with the model's ``config``, a multi-code model's quantizer too;
    ``quantizer_lr_scale`` as for ``training_departures``)."""
    if not args.use_ema:
        ema = "no"
    elif args.ema_schedule == "fixed":
        ema = f"decay {args.ema_decay} from the first step (official)"
    else:
        ema = f"diffusers EMAModel, decay (1 + t) / (10 + t) up to {args.ema_decay}"
    if not (args.dataset_name or args.train_data_dir):
        augmentation = "random crops of the demo photos, 1-3x the resolution (the scales a held-out cell holds), + flip"
    elif args.train_crop == "adm":
        augmentation = "ADM random crop (short side resized to [r, r/0.8], random r×r crop) + flip"
    else:
        augmentation = "random square of the whole short side resized to r + flip"
    if args.no_scale_lr:
        learning_rate = f"{lr:.3g}"
    else:
        learning_rate = f"{lr:.3g} (base {args.learning_rate:g} per {args.lr_reference_batch} images)"
    quantizer = {}
    if config is not None and config.get("quantizer") is not None:
        quantizer = {"quantizer": quantizer_description(config)}
    if quantizer_lr_scale != 1:
        learning_rate += f"; quantizer (codebook, projector, φ) × {quantizer_lr_scale:g}"
    return {
        **quantizer,
        "steps": max_steps,
        "global batch": global_batch,
        "resolution": args.resolution,
        "learning rate": learning_rate,
        "schedule": f"{args.lr_scheduler}, warmup {args.lr_warmup_ratio:.0%}",
        "optimizer": (
            f"Adam β=({args.adam_beta1}, {args.adam_beta2}), weight decay {args.weight_decay}, "
            f"clip {args.max_grad_norm}"
        ),
        "losses": (
            f"{args.reconstruction_loss} + {args.codebook_weight}·VQ + {args.perceptual_weight}·LPIPS + "
            f"{args.gan_weight}·hinge GAN from step {args.gan_start_step}"
        ),
        "discriminator loss": f"{args.disc_loss_weight:g}·hinge" if args.gan_weight > 0 else "no discriminator",
        "mixed precision": args.mixed_precision,
        "EMA": ema,
        "dead-slot restart": slot_restart_summary(args, restart),
        "data": data_name(args) + (f" less {args.validation_fraction:g} held out" if args.validation_fraction else ""),
        "augmentation": augmentation,
        "seed": args.seed,
    }


# =============================================================================================== main
# what a tokenizer run saves in its output folder besides the run's own files
MODEL_FILES = ("config.json", "diffusion_pytorch_model.safetensors", "unfolded", "README.md")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.time()
    accelerator = build_accelerator(args)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.WARNING if accelerator.is_main_process else logging.ERROR,
    )
    set_seed(args.seed)

    # ---- everything that can be checked is checked before anything is written
    run = TrainingRun(
        accelerator,
        args,
        "train_tokenizer",
        MODEL_FILES,
        not_defining=("eval_samples", "quantizer", *MULTICODE_OPTIONS)
        if args.quantizer == "single"
        else ("eval_samples",),
        data=data_name(args),
        base_model=args.pretrained_model_name_or_path,
    )
    log, global_batch, lr = run.log, run.global_batch, run.learning_rate

    # ---- model, losses, optimizers
    model, codebook_frozen = build_model(args, log)
    check_resolution(args, model)
    model.register_to_config(sample_size=args.resolution)  # what tools that default to it should use
    lpips = build_perceptual_loss(args, accelerator.device, log)
    discriminator = build_discriminator(args, model.config.out_channels)
    adam = {"lr": lr, "betas": (args.adam_beta1, args.adam_beta2), "weight_decay": args.weight_decay}
    optimizer = torch.optim.Adam(tokenizer_param_groups(model, lr, args.quantizer_lr_scale), **adam)
    # what the card reports: no second group when there was no trainable quantizer to scale (a folded codebook)
    quantizer_lr_scale = applied_quantizer_lr_scale(optimizer.param_groups, args.quantizer_lr_scale)
    disc_optimizer = torch.optim.Adam(discriminator.parameters(), **adam) if discriminator is not None else None

    # ---- data
    try:
        train_dataset = training_data(args)
        eval_datasets = build_eval_datasets(args, model)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    iterable = isinstance(train_dataset, IterableDataset)
    if iterable:
        train_dataset.shard(accelerator.process_index, accelerator.num_processes)
    train_dataloader = DataLoader(
        train_dataset,
        batch_size=args.train_batch_size,
        shuffle=not iterable,
        collate_fn=collate_images,
        num_workers=args.dataloader_num_workers,
        drop_last=True,
    )
    eval_sets = [
        (
            prefix,
            DataLoader(
                shard_for_process(dataset, accelerator.process_index, accelerator.num_processes),
                batch_size=args.train_batch_size,
                collate_fn=collate_images,
                num_workers=args.dataloader_num_workers,
            ),
            description,
            "?" if isinstance(dataset, IterableDataset) else len(dataset),
        )
        for prefix, dataset, description in eval_datasets
    ]

    # ---- Accelerate, schedules, training state
    if discriminator is not None:
        model, optimizer, discriminator, disc_optimizer = accelerator.prepare(
            model, optimizer, discriminator, disc_optimizer
        )
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    if iterable:  # a stream shards itself; Accelerate would split its batches again
        if args.max_train_steps is None:
            raise SystemExit("a streamed or iterable dataset has no length: pass --max_train_steps")
        max_steps = args.max_train_steps
    else:
        train_dataloader = accelerator.prepare(train_dataloader)
        steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)  # per process
        max_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    # schedulers are stepped by hand once per optimizer step, so the annealing formula holds exactly
    scheduler = get_scheduler(args.lr_scheduler, optimizer, max_steps, args.lr_warmup_ratio)
    disc_scheduler = None
    if disc_optimizer is not None:
        disc_scheduler = get_scheduler(args.lr_scheduler, disc_optimizer, max_steps, args.lr_warmup_ratio)

    # since the last log; a multi-code model's per depth or scale (levels is None for one code per position)
    levels = level_names(unwrapped.config)
    if levels is None:
        usage = CodebookUsage(unwrapped.config.codebook_size, device=accelerator.device)
    else:
        usage = LevelUsage(unwrapped.config.codebook_size, len(levels), device=accelerator.device)
    ema = build_ema(args, unwrapped, accelerator.device)
    slot_restart = build_slot_restart(args, unwrapped, codebook_frozen, log)
    progress = TrainingProgress()
    stateful = (scheduler, disc_scheduler, usage, ema, progress, slot_restart)
    if run.begin(stateful, "fvq_tokenizer", pretrained={"model": unwrapped}):  # FVQModel.from_pretrained(…, "model")
        log(f"continuing at step {progress.global_step}")

    evaluated_on = (
        " + ".join(f"{count} ({description})" for _, _, description, count in eval_sets)
        if eval_sets
        else f"not evaluated ({NOT_EVALUATED})"
    )
    log(
        f"training {unwrapped.config.projector} {'' if levels is None else args.quantizer + ' '}tokenizer on "
        f"{data_name(args)}: {max_steps} steps, "
        f"{accelerator.num_processes} process(es), global batch {global_batch}, lr {lr:.3g} ({args.lr_scheduler}); "
        f"evaluation: {evaluated_on}"
    )
    progress_bar = tqdm(
        range(max_steps), initial=progress.global_step, desc="steps", disable=not accelerator.is_local_main_process
    )
    trained = [model, discriminator] if discriminator is not None else [model]
    disc_module = accelerator.unwrap_model(discriminator) if discriminator is not None else None
    last_layer = unwrapped.decoder.conv_out.weight
    last_evals: dict[str, tuple[object, str]] = {}  # prefix → (result, description)
    skipped_images = 0

    # ---- the loop: one batch per iteration, one optimizer step every --gradient_accumulation_steps batches
    batches = resumable_batches(accelerator, train_dataloader, progress)
    while progress.global_step < max_steps:
        batch = next(batches)
        images = batch["pixel_values"].to(accelerator.device)
        skipped_images += batch["skipped"]
        # a batch of unreadable files only (already named in the log) is passed over, on every process alike
        empty = torch.tensor(float(images.shape[0] == 0), device=accelerator.device)
        if (accelerator.reduce(empty, "max") if accelerator.num_processes > 1 else empty).item():
            continue
        gan_active = discriminator is not None and progress.global_step >= args.gan_start_step
        # Each network accumulates the gradient of its own loss only. Inside ``accumulate`` the prepared
        # optimizers' step and zero_grad act on the last micro-batch alone, so nothing may be cleared in between:
        # the adversarial term reaches the tokenizer through a frozen discriminator (the bare module, outside
        # DDP's gradient hooks) instead of leaving gradients in the discriminator that would need clearing.
        with accelerator.accumulate(*trained):
            out = model(images)
            with frozen(disc_module, gan_active):
                loss, terms = generator_loss(args, out, images, lpips, disc_module, gan_active, last_layer)
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            disc_loss = torch.zeros((), device=images.device)
            if gan_active:
                logits_real, logits_fake = discriminator(images), discriminator(out.sample.detach())
                disc_loss = args.disc_loss_weight * hinge_discriminator_loss(logits_real, logits_fake)
                accelerator.backward(disc_loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(discriminator.parameters(), args.max_grad_norm)
                disc_optimizer.step()
                disc_optimizer.zero_grad(set_to_none=True)
        usage.update(out.indices if levels is None else unwrapped.quantize.level_indices(out.indices))
        if slot_restart is not None:
            slot_restart.update(out.indices)
        if not accelerator.sync_gradients:  # a micro-batch: its gradients wait for the optimizer step
            continue
        restarted = slot_restart.step(optimizer) if slot_restart is not None else []  # collective
        if restarted:
            log(f"step {progress.global_step + 1}: restarted bridge slot(s) {restarted} from the busiest live one(s)")

        scheduler.step()
        if disc_scheduler is not None:
            with warnings.catch_warnings():  # before --gan_start_step its optimizer has not stepped yet, by design
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
                disc_scheduler.step()
        if ema is not None:
            ema.step(unwrapped.parameters())
        progress.global_step += 1
        progress_bar.update(1)
        step = progress.global_step

        if step % args.logging_steps == 0 or step == max_steps:
            counts = usage.global_counts()  # collective: every process calls it
            per_level = []
            if levels is not None:
                per_level, counts = level_usage(counts, unwrapped.config), counts.sum(0)
            stats = UsageStats.from_counts(counts)
            slots = live_slots(counts, unwrapped.config)
            usage.reset()
            rates = scheduler.get_last_lr()  # one per parameter group
            logs = {
                "loss": loss.detach().item(),
                **{name: value.detach().item() for name, value in terms.items()},
                "discriminator_loss": disc_loss.detach().item(),
                "lr": rates[0],
                "train_usage_window": stats.usage,
                "skipped_images": skipped_images,
            }
            if len(rates) > 1:
                logs["lr_quantizer"] = rates[1]
            if slots is not None:
                logs["train_live_slots_window"] = slots[0]
            for level in per_level:
                logs[f"train_usage_window/{level_key(level)}"] = level["usage"]
            if slot_restart is not None:
                logs["slot_restarts"] = slot_restart.restarts
            run.log_metrics(step, logs)
            postfix = {"loss": f"{logs['loss']:.4f}", "usage": f"{stats.usage:.1%}"}
            if slots is not None:
                postfix["slots"] = f"{slots[0]}/{slots[1]}"
            progress_bar.set_postfix(**postfix)

        if step % args.checkpointing_steps == 0 and step < max_steps:
            # checkpoint-N/model: the tokenizer as trained so far (unfolded), for FVQModel.from_pretrained
            logger.info(f"saved {run.save_checkpoint(step)}")

        if step % args.validation_steps == 0 or step == max_steps:
            for prefix, dataloader, description, _ in eval_sets:
                result = run_evaluation(accelerator, unwrapped, ema, dataloader, lpips, description, args, step, prefix)
                last_evals[prefix] = (result, description)
                log(f"step {step}: {describe_evaluation(result, description)}")

    # ---- outputs: the model and its card, the results, then (only then) the push
    progress_bar.close()
    accelerator.wait_for_everyone()
    wall_time = time.time() - started
    skipped_images = int(accelerator.reduce(torch.tensor(skipped_images, device=accelerator.device), "sum"))
    if skipped_images:
        log(f"warning: {skipped_images} unreadable image(s) were skipped (named in the log above)")
    summary, hardware = {}, hardware_summary(accelerator)
    if accelerator.is_main_process:
        if not eval_sets:
            not_evaluated = NOT_EVALUATED
        elif not last_evals:
            not_evaluated = "no step was trained"
        else:
            not_evaluated = ""
        (last_eval, eval_description), *more_evaluations = last_evals.values() or [(None, "")]
        summary = save_trained_tokenizer(
            averaged_copy(unwrapped, ema),
            args.output_dir,
            evaluation=last_eval,
            eval_description=eval_description,
            more_evaluations=[(description, result) for result, description in more_evaluations],
            recipe=recipe_summary(
                args, lr, global_batch, max_steps, slot_restart, unwrapped.config, quantizer_lr_scale
            ),
            training_departures=training_departures(args, slot_restart, quantizer_lr_scale),
            hardware=hardware,
            wall_time=wall_time,
            base_model=args.pretrained_model_name_or_path,
            codebook_frozen=codebook_frozen,
            not_evaluated=not_evaluated,
            repo_id=run.hub.repo_id if run.hub is not None else None,
        )
        evaluated = (
            "".join(f"\n  {describe_evaluation(result, description)}" for result, description in last_evals.values())
            or f" not evaluated ({not_evaluated})"
        )
        log(
            f"done in {wall_time / 60:.1f} min:{evaluated}\n"
            f"saved the folded tokenizer to {args.output_dir} "
            f"({type(unwrapped).__name__}.from_pretrained('{args.output_dir}')), "
            f"the unfolded one to {os.path.join(args.output_dir, 'unfolded')}"
        )
    results = {
        "evaluation": last_evals["eval"][0].as_dict() if "eval" in last_evals else None,
        **{
            f"evaluation_{prefix.removeprefix('eval_')}": result.as_dict()
            for prefix, (result, _) in last_evals.items()
            if prefix != "eval"
        },
        "not_evaluated": None if last_evals else (NOT_EVALUATED if not eval_sets else "no step was trained"),
        "steps": progress.global_step,
        "wall_time_seconds": wall_time,
        "num_processes": accelerator.num_processes,
        "skipped_images": skipped_images,
        "hardware": hardware,
        **summary,
    }
    return run.finish(results, "Upload FVQ tokenizer")


if __name__ == "__main__":
    main()
    sys.exit(0)
