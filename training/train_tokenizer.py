#!/usr/bin/env python
"""Train an FVQ image tokenizer (VQBridge + learning annealing) with Accelerate.

    python training/train_tokenizer.py --config training/configs/demo-cpu.yaml        # the CPU demo
    accelerate launch training/train_tokenizer.py --config training/configs/fvq-16k.yaml --train_data_dir /data/imagenet/train
    torchrun --nproc_per_node 8 training/train_tokenizer.py --dataset_name your/dataset --output_dir fvq-16k

Defaults are the paper's recipe for ``vq-16`` (REFERENCE.md §2): Adam (0.9, 0.95), lr 1e-4 per 128 images
scaled by the global batch, gradient clipping 1.0, learning annealing on generator and discriminator,
L2 + VQ + 1.0·LPIPS + 0.5·hinge PatchGAN (from step 20,000). A YAML file (``--config``) can set every
option; flags given on the command line win over it. With no dataset the embedded demo photos are used.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader, IterableDataset
from tqdm.auto import tqdm

from fvq_hf import CodebookUsage, FVQModel
from fvq_hf.data import DemoCropDataset, ImageFolderDataset, build_dataset, collate_images, make_grid, shard_for_process, tensor_to_pil
from fvq_hf.evaluation import evaluate_tokenizer
from fvq_hf.losses import (
    LPIPS,
    PatchGANDiscriminator,
    PerceptualWeightsUnavailable,
    adaptive_gan_weight,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from fvq_hf.models import MODEL_PRESETS
from fvq_hf.quantization import PROJECTOR_TYPES
from fvq_hf.training import SCHEDULES, get_scheduler
from fvq_hf.training.checkpoints import resolve_checkpoint, save_checkpoint
from fvq_hf.training.outputs import save_trained_tokenizer

logger = get_logger(__name__)


# =============================================================================================== configuration
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML file whose keys are any of these options (flags override it)")

    g = p.add_argument_group("model")
    g.add_argument("--model_preset", default="vq-16", choices=sorted(MODEL_PRESETS), help="tokenizer architecture to build")
    g.add_argument("--pretrained_model_name_or_path", default=None, help="Hub id or folder to fine-tune from (its unfolded/ subfolder is used when present)")
    g.add_argument("--codebook_size", type=int, default=None, help="number of codes K (default: the preset's)")
    g.add_argument("--codebook_dim", type=int, default=None, help="code dimension d (default: the preset's)")
    g.add_argument("--projector", default="vqbridge", choices=PROJECTOR_TYPES, help="codebook projector")
    g.add_argument("--bridge", default=None, help="VQBridge preset such as L/4 or L/8 (default: the preset's)")
    g.add_argument("--bridge_output_init_std", type=float, default=None, help="std of the bridge's last Linear at init; 0 is the paper's zero init")
    g.add_argument("--codebook_init_std", type=float, default=None, help="N(0, std²) init of the raw codebook; unset is the paper's uniform ±1/K")
    g.add_argument("--l2_normalize", action="store_true", help="cosine-distance codebook (LlamaGen's d = 8 recipe)")

    g = p.add_argument_group("data")
    g.add_argument("--dataset_name", default=None, help="a Hugging Face datasets image dataset (Hub name or local path)")
    g.add_argument("--dataset_config_name", default=None, help="its configuration name")
    g.add_argument("--train_data_dir", default=None, help="a folder of images (searched recursively)")
    g.add_argument("--image_column", default="image", help="the image column of --dataset_name")
    g.add_argument("--streaming", action="store_true", help="stream --dataset_name instead of downloading it")
    g.add_argument("--validation_data_dir", default=None, help="a folder of held-out images for evaluation")
    g.add_argument("--validation_split", default=None, help="a split of --dataset_name for evaluation (e.g. validation)")
    g.add_argument("--resolution", type=int, default=256, help="training crop size; a multiple of the downsampling factor")
    g.add_argument("--demo_samples", type=int, default=4096, help="crops per epoch of the demo photos (no dataset given)")
    g.add_argument("--eval_samples", type=int, default=512, help="held-out demo crops to evaluate on (no validation set given)")
    g.add_argument("--dataloader_num_workers", type=int, default=0, help="data loading processes per training process")

    g = p.add_argument_group("optimisation")
    g.add_argument("--train_batch_size", type=int, default=16, help="images per process per step")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1, help="batches per optimizer step")
    g.add_argument("--max_train_steps", type=int, default=None, help="optimizer steps (overrides --num_train_epochs)")
    g.add_argument("--num_train_epochs", type=int, default=40, help="passes over the data when --max_train_steps is not given")
    g.add_argument("--learning_rate", type=float, default=1e-4, help="base rate per --lr_reference_batch images")
    g.add_argument("--lr_reference_batch", type=int, default=128, help="the rate is scaled linearly from this global batch")
    g.add_argument("--no_scale_lr", action="store_true", help="use --learning_rate as is, whatever the global batch")
    g.add_argument("--lr_scheduler", default="annealing", choices=SCHEDULES, help="learning annealing (the paper's), cosine decay, or constant")
    g.add_argument("--lr_warmup_ratio", type=float, default=0.1, help="warmup as a fraction of the steps")
    g.add_argument("--adam_beta1", type=float, default=0.9, help="Adam β1 (generator and discriminator)")
    g.add_argument("--adam_beta2", type=float, default=0.95, help="Adam β2 (the paper: 0.95)")
    g.add_argument("--adam_weight_decay", type=float, default=0.0, help="Adam weight decay (the paper: none)")
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping norm; 0 turns it off")
    g.add_argument("--mixed_precision", default=None, choices=["no", "fp16", "bf16"], help="default: bf16 on GPUs that support it, else no")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and crops")
    g.add_argument("--cpu", action="store_true", help="train on the CPU even where a GPU is present (automatic for torchrun without GPUs)")
    g.add_argument("--use_ema", action="store_true", help="keep an EMA of the weights and save it as the final model")
    g.add_argument("--ema_decay", type=float, default=0.9999, help="EMA decay per optimizer step")

    g = p.add_argument_group("losses")
    g.add_argument("--reconstruction_loss", default="l2", choices=["l2", "l1"], help="pixel reconstruction loss")
    g.add_argument("--codebook_weight", type=float, default=1.0, help="weight of codebook + commitment terms")
    g.add_argument("--perceptual_weight", type=float, default=1.0, help="LPIPS weight; 0 turns it off")
    g.add_argument("--perceptual_weights", default="timm/vgg16.tv_in1k", help="VGG16 weights: Hub id or local file")
    g.add_argument("--perceptual_random_init", action="store_true", help="random VGG16 (tests and CPU demos only)")
    g.add_argument("--gan_weight", type=float, default=0.5, help="hinge PatchGAN weight; 0 turns the discriminator off")
    g.add_argument("--gan_start_step", type=int, default=20000, help="step at which the GAN terms start")
    g.add_argument("--adaptive_gan_weight", action="store_true", help="balance the GAN gradient against the reconstruction's (VQGAN)")
    g.add_argument("--disc_base_channels", type=int, default=64, help="PatchGAN channels of the first layer")
    g.add_argument("--disc_layers", type=int, default=3, help="PatchGAN strided layers")

    g = p.add_argument_group("checkpoints, evaluation, logging, outputs")
    g.add_argument("--output_dir", default="outputs/fvq-tokenizer", help="where checkpoints, logs and the final tokenizer go")
    g.add_argument("--checkpointing_steps", type=int, default=10000, help="save the full training state every N steps")
    g.add_argument("--checkpoints_total_limit", type=int, default=None, help="keep only the newest N checkpoints")
    g.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder to continue from")
    g.add_argument("--eval_steps", type=int, default=5000, help="evaluate on held-out images every N steps (and at the end)")
    g.add_argument("--logging_steps", type=int, default=10, help="log losses and training usage every N steps")
    g.add_argument("--report_to", default="tensorboard", help="tensorboard, wandb, all or none")
    g.add_argument("--logging_dir", default="logs", help="under --output_dir")
    g.add_argument("--push_to_hub", action="store_true", help="upload the final folder (folded model, unfolded/, card)")
    g.add_argument("--hub_model_id", default=None, help="repository for --push_to_hub (default: the output folder's name)")
    g.add_argument("--hub_token", default=None, help="Hub token (default: the one `hf auth login` stored)")
    g.add_argument("--hub_private", action="store_true", help="create the Hub repository as private")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    if known.config:
        import yaml

        with open(known.config) as handle:
            values = yaml.safe_load(handle) or {}
        options = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - options)
        if unknown:
            parser.error(f"{known.config}: unknown option(s) {', '.join(unknown)}")
        parser.set_defaults(**values)
    args = parser.parse_args(argv)
    if args.dataset_name and args.train_data_dir:
        parser.error("pass --dataset_name or --train_data_dir, not both")
    return args


# =============================================================================================== building blocks
def build_model(args, log) -> tuple[FVQModel, bool]:
    """The tokenizer to train, and whether its codebook is frozen (fine-tuning a folded-only model)."""
    if args.pretrained_model_name_or_path:
        source = args.pretrained_model_name_or_path
        try:
            model = FVQModel.from_pretrained(source, subfolder="unfolded")
            log(f"fine-tuning from {source}/unfolded: raw codebook and {model.config.projector} projector go on training")
        except (OSError, EnvironmentError):
            model = FVQModel.from_pretrained(source)
        frozen = bool(model.config.folded)
        if frozen:
            model.quantize.embedding.weight.requires_grad_(False)
            log(f"{source} is folded (no raw codebook or bridge to train): training encoder and decoder with the codebook frozen")
        return model, frozen
    overrides = {"projector": args.projector}
    for key in ("codebook_size", "codebook_dim", "bridge", "bridge_output_init_std", "codebook_init_std"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.l2_normalize:
        overrides["l2_normalize"] = True
    return FVQModel.from_preset(args.model_preset, **overrides), False


def build_eval_dataset(args):
    if args.validation_data_dir:
        return ImageFolderDataset(args.validation_data_dir, args.resolution, train=False), f"images in {args.validation_data_dir}"
    if args.dataset_name and args.validation_split:
        from fvq_hf.data import HFImageDataset

        ds = HFImageDataset(args.dataset_name, args.resolution, args.image_column, split=args.validation_split, train=False, config_name=args.dataset_config_name)
        return ds, f"{args.dataset_name} [{args.validation_split}]"
    return DemoCropDataset("heldout", args.resolution, num_samples=args.eval_samples, seed=args.seed), "held-out demo crops (photos not used for training)"


def hardware_summary(accelerator) -> str:
    if torch.cuda.is_available():
        device = f"{accelerator.num_processes} × {torch.cuda.get_device_name()}"
    else:
        device = f"{accelerator.num_processes} CPU process(es), {os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    return f"{device}, torch {torch.__version__}, mixed precision {accelerator.mixed_precision}"


# =============================================================================================== main
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.time()
    if args.mixed_precision is None:
        args.mixed_precision = "bf16" if torch.cuda.is_available() and not args.cpu and torch.cuda.is_bf16_supported() else "no"
    report_to = None if args.report_to == "none" else args.report_to
    # Accelerate sets up multi-process CPU training (gloo) only when told to use the CPU
    distributed_without_gpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=args.cpu or distributed_without_gpu,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=report_to,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING if accelerator.is_main_process else logging.ERROR)

    def log(message: str) -> None:
        if accelerator.is_main_process:
            print(message, flush=True)

    set_seed(args.seed)
    checkpoints_dir = os.path.join(args.output_dir, "checkpoints")

    # ---- model, losses, optimizers
    model, codebook_frozen = build_model(args, log)
    if args.resolution % model.downsample_factor:
        raise SystemExit(f"--resolution {args.resolution} is not a multiple of the model's downsampling factor {model.downsample_factor}")
    lpips = None
    if args.perceptual_weight > 0:
        try:
            lpips = LPIPS(args.perceptual_weights, random_init=args.perceptual_random_init).to(accelerator.device)
        except PerceptualWeightsUnavailable as error:
            raise SystemExit(f"error: {error}") from None
        if args.perceptual_random_init:
            log("warning: LPIPS uses a random VGG16 (--perceptual_random_init): for tests and CPU demos only")
    discriminator = None
    if args.gan_weight > 0:
        discriminator = PatchGANDiscriminator(model.config.out_channels, args.disc_base_channels, args.disc_layers)
        try:
            with torch.no_grad():
                discriminator.eval()(torch.zeros(1, model.config.out_channels, args.resolution, args.resolution))
        except RuntimeError:
            raise SystemExit(f"--resolution {args.resolution} is too small for a PatchGAN with --disc_layers {args.disc_layers}: use fewer layers or larger crops") from None
        discriminator.train()

    global_batch = args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
    lr = args.learning_rate if args.no_scale_lr else args.learning_rate * global_batch / args.lr_reference_batch
    adam = {"lr": lr, "betas": (args.adam_beta1, args.adam_beta2), "weight_decay": args.adam_weight_decay}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], **adam)
    disc_optimizer = torch.optim.Adam(discriminator.parameters(), **adam) if discriminator is not None else None

    # ---- data
    train_dataset = build_dataset(
        args.dataset_name, args.train_data_dir, args.resolution, args.image_column, args.streaming, args.seed, args.demo_samples,
        config_name=args.dataset_config_name,
    )
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
    eval_dataset, eval_description = build_eval_dataset(args)
    eval_dataloader = DataLoader(
        shard_for_process(eval_dataset, accelerator.process_index, accelerator.num_processes),
        batch_size=args.train_batch_size,
        collate_fn=collate_images,
        num_workers=args.dataloader_num_workers,
    )

    prepared = accelerator.prepare(model, optimizer, *([discriminator, disc_optimizer] if discriminator is not None else []))
    model, optimizer = prepared[:2]
    if discriminator is not None:
        discriminator, disc_optimizer = prepared[2:]
    unwrapped = accelerator.unwrap_model(model)
    if iterable:
        if args.max_train_steps is None:
            raise SystemExit("a streamed or iterable dataset has no length: pass --max_train_steps")
        batches_per_epoch = None
    else:
        train_dataloader = accelerator.prepare(train_dataloader)
        batches_per_epoch = len(train_dataloader)  # per process, after sharding
    max_steps = args.max_train_steps or args.num_train_epochs * math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    # schedulers are stepped by hand once per optimizer step, so the annealing formula holds exactly
    scheduler = get_scheduler(args.lr_scheduler, optimizer, max_steps, args.lr_warmup_ratio)
    disc_scheduler = get_scheduler(args.lr_scheduler, disc_optimizer, max_steps, args.lr_warmup_ratio) if disc_optimizer else None

    usage = CodebookUsage(unwrapped.config.codebook_size, device=accelerator.device)  # since the last log
    ema = None
    if args.use_ema:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(unwrapped.parameters(), decay=args.ema_decay, model_cls=FVQModel, model_config=unwrapped.config)
        ema.to(accelerator.device)
    progress_state = TrainingProgress()
    for stateful in (scheduler, disc_scheduler, usage, ema, progress_state):
        if stateful is not None:
            accelerator.register_for_checkpointing(stateful)

    # ---- resume
    skipped_images = 0
    resume = resolve_checkpoint(checkpoints_dir, args.resume_from_checkpoint)
    if args.resume_from_checkpoint and resume is None:
        log(f"no checkpoint in {checkpoints_dir} yet: starting from scratch")
    if resume is not None:
        accelerator.load_state(resume[1])
        log(f"resumed from {resume[1]} at step {progress_state.global_step}")
    global_step, epoch = progress_state.global_step, progress_state.epoch
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        tracker_config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers("fvq_tokenizer", config=tracker_config)
    elif report_to:
        accelerator.init_trackers("fvq_tokenizer")
    metrics_file = os.path.join(args.output_dir, "metrics.jsonl")

    log(
        f"training {unwrapped.config.projector} tokenizer: {max_steps} steps, {accelerator.num_processes} process(es), "
        f"global batch {global_batch}, lr {lr:.3g} ({args.lr_scheduler}), {len(eval_dataset) if not isinstance(eval_dataset, IterableDataset) else '?'} eval images"
    )
    progress = tqdm(range(max_steps), initial=global_step, desc="steps", disable=not accelerator.is_local_main_process)
    last_layer = unwrapped.decoder.conv_out.weight
    last_eval = None

    # ---- the loop
    while global_step < max_steps:
        train_dataset.set_epoch(epoch)
        if hasattr(train_dataloader, "set_epoch"):
            train_dataloader.set_epoch(epoch)
        batches = iter(train_dataloader)
        done_in_epoch = progress_state.batches_in_epoch
        if done_in_epoch:  # resuming mid-epoch: skip what the interrupted run already trained on
            batches = iter(accelerator.skip_first_batches(train_dataloader, done_in_epoch)) if not iterable else itertools.islice(batches, done_in_epoch, None)
        for batch in batches:
            images = batch["pixel_values"].to(accelerator.device)
            skipped_images += batch["skipped"]
            progress_state.batches_in_epoch += 1
            gan_active = discriminator is not None and global_step >= args.gan_start_step
            with accelerator.accumulate(*( [model, discriminator] if discriminator is not None else [model])):
                out = model(images)
                reconstruction = out.sample
                if args.reconstruction_loss == "l2":
                    rec_loss = F.mse_loss(reconstruction.float(), images.float())
                else:
                    rec_loss = F.l1_loss(reconstruction.float(), images.float())
                vq_loss = out.codebook_loss + out.commitment_loss
                perceptual = lpips(reconstruction.float(), images.float()).mean() if lpips is not None else torch.zeros((), device=images.device)
                nll = rec_loss + args.perceptual_weight * perceptual
                loss = nll + args.codebook_weight * vq_loss
                gan_g = torch.zeros((), device=images.device)
                if gan_active:
                    gan_g = hinge_generator_loss(discriminator(reconstruction))
                    weight = adaptive_gan_weight(nll, gan_g, last_layer) if args.adaptive_gan_weight else 1.0
                    loss = loss + args.gan_weight * weight * gan_g
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

                disc_loss = torch.zeros((), device=images.device)
                if gan_active:
                    disc_optimizer.zero_grad(set_to_none=True)  # drop what the generator's loss left here
                    disc_loss = hinge_discriminator_loss(discriminator(images), discriminator(reconstruction.detach()))
                    accelerator.backward(disc_loss)
                    if accelerator.sync_gradients and args.max_grad_norm:
                        accelerator.clip_grad_norm_(discriminator.parameters(), args.max_grad_norm)
                    disc_optimizer.step()
                    disc_optimizer.zero_grad(set_to_none=True)
            usage.update(out.indices)
            if not accelerator.sync_gradients:
                continue

            # ---- one optimizer step done
            scheduler.step()
            if disc_scheduler is not None:
                disc_scheduler.step()
            if ema is not None:
                ema.step(unwrapped.parameters())
            global_step += 1
            progress_state.update(global_step, epoch)
            progress.update(1)

            if global_step % args.logging_steps == 0 or global_step == max_steps:
                stats = usage.compute()  # collective: every process calls it
                logs = {
                    "loss": loss.detach().item(),
                    "reconstruction_loss": rec_loss.detach().item(),
                    "vq_loss": vq_loss.detach().item(),
                    "perceptual_loss": perceptual.detach().item(),
                    "gan_generator_loss": gan_g.detach().item(),
                    "discriminator_loss": disc_loss.detach().item(),
                    "lr": scheduler.get_last_lr()[0],
                    "train_usage_window": stats.usage,
                    "skipped_images": skipped_images,
                }
                usage.reset()
                accelerator.log(logs, step=global_step)
                progress.set_postfix(loss=f"{logs['loss']:.4f}", usage=f"{stats.usage:.1%}")
                if accelerator.is_main_process:
                    with open(metrics_file, "a") as handle:
                        handle.write(json.dumps({"step": global_step, **logs}) + "\n")

            if global_step % args.checkpointing_steps == 0 and global_step < max_steps:
                path = save_checkpoint(accelerator, checkpoints_dir, global_step, args.checkpoints_total_limit)
                logger.info(f"saved {path}")

            if global_step % args.eval_steps == 0 or global_step == max_steps:
                last_eval = run_evaluation(accelerator, unwrapped, ema, eval_dataloader, lpips, eval_description, args, global_step)
                slots = f", live slots {last_eval.extra['live_slots']}/{last_eval.extra['slots']}" if "live_slots" in last_eval.extra else ""
                log(
                    f"step {global_step}: held-out usage {last_eval.usage:.2%} ({last_eval.used_codes:,} codes), "
                    f"perplexity {last_eval.perplexity:.1f}, PSNR {last_eval.psnr:.2f} dB, SSIM {last_eval.ssim:.3f}{slots}"
                )
            if global_step >= max_steps:
                break
        else:  # the epoch's batches are used up
            epoch += 1
            progress_state.update(global_step, epoch)
            progress_state.batches_in_epoch = 0

    # ---- outputs
    progress.close()
    accelerator.wait_for_everyone()
    wall_time = time.time() - started
    skipped_images = int(accelerator.reduce(torch.tensor(skipped_images, device=accelerator.device), "sum"))
    if skipped_images:
        log(f"warning: {skipped_images} unreadable image(s) were skipped (named in the log above)")
    summary, hardware = {}, hardware_summary(accelerator)
    if accelerator.is_main_process:
        final = unwrapped
        if ema is not None:
            final = FVQModel.from_config(unwrapped.config)
            final.load_state_dict(unwrapped.state_dict())
            ema.copy_to(final.parameters())
        summary = save_trained_tokenizer(
            final,
            args.output_dir,
            evaluation=last_eval,
            eval_description=eval_description,
            recipe=recipe_summary(args, lr, global_batch, max_steps),
            hardware=hardware,
            wall_time=wall_time,
            base_model=args.pretrained_model_name_or_path,
            codebook_frozen=codebook_frozen,
            push_to_hub=args.push_to_hub,
            hub_model_id=args.hub_model_id,
            hub_token=args.hub_token,
            hub_private=args.hub_private,
        )
        log(
            f"done in {wall_time / 60:.1f} min: held-out usage {last_eval.usage:.2%} ({last_eval.used_codes:,} of "
            f"{unwrapped.config.codebook_size:,} codes), PSNR {last_eval.psnr:.2f} dB\n"
            f"saved the folded tokenizer to {args.output_dir} (FVQModel.from_pretrained('{args.output_dir}')), "
            f"the unfolded one to {os.path.join(args.output_dir, 'unfolded')}"
            + (f"; pushed to {summary.get('hub_url')}" if args.push_to_hub else "")
        )
    accelerator.end_training()
    results = {
        "evaluation": last_eval.as_dict() if last_eval else None,
        "steps": global_step,
        "wall_time_seconds": wall_time,
        "num_processes": accelerator.num_processes,
        "skipped_images": skipped_images,
        "hardware": hardware,
        **summary,
    }
    if accelerator.is_main_process:
        with open(os.path.join(args.output_dir, "train_results.json"), "w") as handle:
            json.dump(results, handle, indent=2, default=str)
    return results


def run_evaluation(accelerator, unwrapped, ema, dataloader, lpips, description, args, step):
    if ema is not None:  # evaluate the weights that will be saved
        ema.store(unwrapped.parameters())
        ema.copy_to(unwrapped.parameters())
    protocol = f"{'centre crop + resize' if args.validation_data_dir or args.validation_split else 'fixed random crops'} to {args.resolution} px, in-memory float tensors (no file format round trip)"
    result, pairs = evaluate_tokenizer(unwrapped, dataloader, lpips=lpips, protocol=protocol, keep_first=8)
    if ema is not None:
        ema.restore(unwrapped.parameters())
    result.extra["eval_data"] = description
    scalars = {**result.as_dict(), **result.extra}
    accelerator.log({f"eval/{k}": v for k, v in scalars.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=step)
    if accelerator.is_main_process and pairs is not None:
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                grid = make_grid([tensor_to_pil(pairs[0]), tensor_to_pil(pairs[1])])
                tracker.writer.add_image("eval/reconstructions", np.asarray(grid), step, dataformats="HWC")
        with open(os.path.join(args.output_dir, "metrics.jsonl"), "a") as handle:
            handle.write(json.dumps({"step": step, **{f"eval/{k}": v for k, v in result.as_dict().items() if k != "extra"}}) + "\n")
    return result


class TrainingProgress:
    """Where training stands (saved in every checkpoint), so a resumed run takes up the data where it stopped."""

    def __init__(self):
        self.global_step = self.epoch = self.batches_in_epoch = 0

    def update(self, global_step: int, epoch: int) -> None:
        self.global_step, self.epoch = global_step, epoch

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(state)


def recipe_summary(args, lr, global_batch, max_steps) -> dict:
    return {
        "steps": max_steps,
        "global batch": global_batch,
        "resolution": args.resolution,
        "learning rate": f"{lr:.3g} (base {args.learning_rate:g} per {args.lr_reference_batch} images)" if not args.no_scale_lr else f"{lr:.3g}",
        "schedule": f"{args.lr_scheduler}, warmup {args.lr_warmup_ratio:.0%}",
        "optimizer": f"Adam β=({args.adam_beta1}, {args.adam_beta2}), weight decay {args.adam_weight_decay}, clip {args.max_grad_norm}",
        "losses": f"{args.reconstruction_loss} + {args.codebook_weight}·VQ + {args.perceptual_weight}·LPIPS + {args.gan_weight}·hinge GAN from step {args.gan_start_step}",
        "mixed precision": args.mixed_precision,
        "EMA": f"decay {args.ema_decay}" if args.use_ema else "no",
        "data": args.dataset_name or args.train_data_dir or "embedded demo photos",
        "seed": args.seed,
    }


if __name__ == "__main__":
    main()
    sys.exit(0)
