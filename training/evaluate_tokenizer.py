#!/usr/bin/env python
"""Evaluate an FVQ tokenizer: exact codebook usage, perplexity, PSNR, SSIM, and LPIPS / rFID when their weights are given.

    python training/evaluate_tokenizer.py --pretrained_model_name_or_path outputs/fvq-demo
    accelerate launch training/evaluate_tokenizer.py --pretrained_model_name_or_path org/fvq-16k \
        --validation_data_dir /data/imagenet/val --resolution 256 \
        --perceptual_weights timm/vgg16.tv_in1k --inception_weights /weights/pt_inception-2015-12-05-6726825d.pth

Usage is counted over the whole set on every process. The protocol (crop, resize, comparison format) is
printed and saved with the numbers: rFID changes with it (REFERENCE.md §4). Writes JSON with --output_json.
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from fvq_hf import FVQModel
from fvq_hf.data import DemoCropDataset, HFImageDataset, ImageFolderDataset, collate_images, shard_for_process
from fvq_hf.evaluation import evaluate_tokenizer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained_model_name_or_path", required=True, help="Hub id or folder of an FVQModel")
    p.add_argument("--subfolder", default=None, help="subfolder of the model repository (e.g. unfolded)")
    p.add_argument("--validation_data_dir", default=None, help="a folder of evaluation images (centre crop + resize)")
    p.add_argument("--dataset_name", default=None, help="a Hugging Face datasets image dataset to evaluate on")
    p.add_argument("--dataset_split", default="validation", help="its split")
    p.add_argument("--image_column", default="image", help="its image column")
    p.add_argument("--resolution", type=int, default=None, help="evaluation size (default: the model's sample_size)")
    p.add_argument("--eval_samples", type=int, default=512, help="held-out demo crops when no dataset is given")
    p.add_argument("--batch_size", type=int, default=32, help="images per process per batch")
    p.add_argument("--max_batches", type=int, default=None, help="stop after this many batches per process")
    p.add_argument("--perceptual_weights", default=None, help="VGG16 weights (Hub id or file) to also report LPIPS")
    p.add_argument("--inception_weights", default=None, help="FID InceptionV3 weights (file or Hub repo) to also report rFID")
    p.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out demo crops")
    p.add_argument("--output_json", default=None, help="write the metrics here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    distributed_without_gpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=distributed_without_gpu)
    model = FVQModel.from_pretrained(args.pretrained_model_name_or_path, subfolder=args.subfolder).to(accelerator.device).eval()
    resolution = args.resolution or model.config.sample_size
    if args.validation_data_dir:
        dataset = ImageFolderDataset(args.validation_data_dir, resolution, train=False)
        data, crop = f"images in {args.validation_data_dir}", "centre crop of the largest square, bicubic resize"
    elif args.dataset_name:
        dataset = HFImageDataset(args.dataset_name, resolution, args.image_column, split=args.dataset_split, train=False)
        data, crop = f"{args.dataset_name} [{args.dataset_split}]", "centre crop of the largest square, bicubic resize"
    else:
        dataset = DemoCropDataset("heldout", resolution, num_samples=args.eval_samples, seed=args.seed)
        data, crop = "held-out demo crops (photos not used for training)", "fixed random crops, bicubic resize"
    shard = shard_for_process(dataset, accelerator.process_index, accelerator.num_processes)
    dataloader = DataLoader(shard, batch_size=args.batch_size, collate_fn=collate_images)

    lpips = fid = None
    if args.perceptual_weights:
        from fvq_hf.losses import LPIPS

        lpips = LPIPS(args.perceptual_weights).to(accelerator.device)
    if args.inception_weights:
        from torchmetrics.image.fid import FrechetInceptionDistance

        from fvq_hf.evaluation.inception import InceptionV3Features

        fid = FrechetInceptionDistance(feature=InceptionV3Features.from_pretrained(args.inception_weights), sync_on_compute=True).to(accelerator.device)
    protocol = f"{crop} to {resolution} px; reconstructions compared as in-memory uint8/float tensors (no JPEG/PNG round trip); PSNR on RGB, SSIM with data range 2"
    with accelerator.autocast():
        result, _ = evaluate_tokenizer(model, dataloader, lpips=lpips, fid=fid, protocol=protocol, max_batches=args.max_batches)
    result.extra.update({"model": args.pretrained_model_name_or_path, "data": data, "num_processes": accelerator.num_processes})
    if accelerator.is_main_process:
        print(f"{args.pretrained_model_name_or_path} on {result.images} {data}")
        print(f"protocol: {protocol}")
        print("| metric | value |\n|---|---|")
        print(f"| codebook usage | {result.usage:.2%} ({result.used_codes:,} of {model.config.codebook_size:,}) |")
        if "live_slots" in result.extra:
            print(f"| live bridge slots | {result.extra['live_slots']} of {result.extra['slots']} |")
        print(f"| perplexity | {result.perplexity:.1f} |\n| PSNR | {result.psnr:.2f} dB |\n| SSIM | {result.ssim:.4f} |")
        if result.lpips is not None:
            print(f"| LPIPS (VGG) | {result.lpips:.4f} |")
        if result.rfid is not None:
            print(f"| rFID | {result.rfid:.3f} |")
        if args.output_json:
            os.makedirs(os.path.dirname(os.path.abspath(args.output_json)), exist_ok=True)
            with open(args.output_json, "w") as handle:
                json.dump(result.as_dict(), handle, indent=2)
    return result.as_dict()


if __name__ == "__main__":
    main()
