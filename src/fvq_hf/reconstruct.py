"""Tokenize and reconstruct the embedded demo photographs, or your own images; print codebook usage and PSNR.

fvq-reconstruct                                   # a freshly built "tiny" model
fvq-reconstruct --pretrained_model_name_or_path org/fvq-16k --resolution 256
fvq-reconstruct --pretrained_model_name_or_path outputs/my-tokenizer --images photo.jpg more_photos/
"""

from __future__ import annotations

import argparse
import os

import torch
from PIL import Image

from .data import center_crop_resize, load_demo_photos, make_grid, pil_to_tensor, tensor_to_pil
from .data.datasets import list_image_files
from .evaluation import psnr
from .models import MODEL_PRESETS, FVQModel
from .quantization import CodebookUsage


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pretrained_model_name_or_path",
        default=None,
        help="Hub id or local folder of an FVQModel; without it a fresh model is built from --preset",
    )
    parser.add_argument("--subfolder", default=None, help="subfolder of the model repository")
    parser.add_argument(
        "--preset", default="tiny", choices=sorted(MODEL_PRESETS), help="preset of the freshly built model"
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=64,
        help="side of the centre-cropped photos, a multiple of the downsampling factor",
    )
    parser.add_argument("--split", default="all", choices=["train", "heldout", "all"], help="which demo photographs")
    parser.add_argument(
        "--images",
        nargs="+",
        default=None,
        help="your own image files or folders (searched recursively) instead of the demo photographs",
    )
    parser.add_argument("--output_dir", default="outputs/reconstruct", help="where the comparison grid is written")
    parser.add_argument("--seed", type=int, default=0, help="seed of the freshly built model")
    return parser.parse_args(argv)


def load_images(paths: list[str]) -> dict[str, Image.Image]:
    """The images in ``paths`` (files, or folders searched recursively) as RGB, by path; an unreadable one stops
    with its name."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += list_image_files(path)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise SystemExit(f"error: --images {path}: no such file or folder")
    images = {}
    for file in files:
        try:
            with Image.open(file) as image:
                images[file] = image.convert("RGB")
        except OSError as error:
            raise SystemExit(f"error: --images {file} is not a readable image ({error})") from None
    return images


@torch.no_grad()
def reconstruct_demo(args: argparse.Namespace) -> dict:
    """Run the demo; returns mean usage, perplexity, PSNR and the grid's path."""
    torch.manual_seed(args.seed)
    if args.pretrained_model_name_or_path:
        model = FVQModel.from_pretrained(args.pretrained_model_name_or_path, subfolder=args.subfolder)
        source = args.pretrained_model_name_or_path
    else:
        model = FVQModel.from_preset(args.preset)
        source = f"freshly built preset {args.preset!r} (untrained)"
    model.eval()

    photos = load_images(args.images) if args.images else load_demo_photos(args.split)
    images = torch.stack([pil_to_tensor(center_crop_resize(p, args.resolution)) for p in photos.values()])
    indices = model.encode_indices(images)
    reconstructions = model.decode_indices(indices)

    usage = CodebookUsage(model.config.codebook_size)
    usage.update(indices)
    stats = usage.compute()
    scores = psnr(reconstructions, images)

    print(f"model: {source}; projector {model.config.projector}{' (folded)' if model.config.folded else ''}")
    print(
        f"{len(photos)} {'images' if args.images else 'demo photos'} at {args.resolution}px -> {indices.shape[1]}x{indices.shape[2]} tokens each"
    )
    for name, score in zip(photos, scores.tolist()):
        print(f"  {name:<24} PSNR {score:6.2f} dB")
    print(
        f"codebook usage: {stats.used_codes:,} of {stats.codebook_size:,} codes ({100 * stats.usage:.2f}%), "
        f"perplexity {stats.perplexity:.1f}, over {stats.total:,} tokens; mean PSNR {scores.mean():.2f} dB"
    )
    if not args.pretrained_model_name_or_path and model.config.projector == "vqbridge":
        print(
            "note: a fresh VQBridge starts with every code at zero (the paper's zero-initialised output layer), "
            "so an untrained model uses one code; training separates them."
        )
    os.makedirs(args.output_dir, exist_ok=True)
    grid_path = os.path.join(args.output_dir, "reconstructions.png")
    make_grid([tensor_to_pil(images), tensor_to_pil(reconstructions)]).save(grid_path)
    print(f"originals (top) and reconstructions (bottom): {grid_path}")
    return {"usage": stats.usage, "perplexity": stats.perplexity, "psnr": float(scores.mean()), "grid": grid_path}


def main(argv: list[str] | None = None) -> None:
    reconstruct_demo(parse_args(argv))


if __name__ == "__main__":
    main()
