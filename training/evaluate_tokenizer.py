#!/usr/bin/env python
"""Evaluate an FVQ tokenizer: exact codebook usage, perplexity, PSNR, SSIM, and LPIPS / rFID when their weights are given.

    # quick, in-memory (the protocol training uses)
    python training/evaluate_tokenizer.py --pretrained_model_name_or_path outputs/fvq-demo

    # the FVQ paper's numbers (Tables 1, 7, 8): raw 256 px centre crops, JPEG files, Y-channel PSNR, AlexNet LPIPS
    accelerate launch training/evaluate_tokenizer.py --pretrained_model_name_or_path org/fvq-16k --protocol fvq \
        --validation_data_dir /data/imagenet/val --alexnet_weights /weights/alexnet-owt-7be5be79.pth \
        --inception_weights /weights/weights-inception-2015-12-05-6726825d.pth --update_model_card

    # LlamaGen's (ADM's resize + centre crop, PNG)
    accelerate launch training/evaluate_tokenizer.py --pretrained_model_name_or_path org/fvq-16k --protocol adm \
        --validation_data_dir /data/imagenet/val --alexnet_weights ... --inception_weights ...

--protocol picks how images are cropped, stored and compared (fvq_hf.evaluation.protocols describes each step
and the code it reproduces): rFID, PSNR and SSIM all change with it. The protocol is printed with the numbers,
written into --output_json and, with --update_model_card, into the model folder's card (model-index metric names
and a table).
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from fvq_hf.data import (
    DEMO_EVAL_SETS,
    DemoCropDataset,
    HFImageDataset,
    ImageFolderDataset,
    collate_images,
    demo_eval_samples,
    shard_for_process,
)
from fvq_hf.evaluation import (
    PROTOCOLS,
    ProtocolImageFolder,
    collate_protocol_images,
    evaluate_tokenizer,
    get_protocol,
    protocol_hf_dataset,
)
from fvq_hf.models import load_tokenizer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--pretrained_model_name_or_path",
        required=True,
        help="Hub id or folder of an FVQModel or a MultiCodeFVQModel (the saved config's class decides)",
    )
    p.add_argument("--subfolder", default=None, help="subfolder of the model repository (e.g. unfolded)")
    p.add_argument(
        "--protocol",
        default="fast",
        choices=list(PROTOCOLS),
        help="fvq: the FVQ paper's (raw centre crop, JPEG, Y-PSNR, AlexNet LPIPS, torch-fidelity Inception); "
        "adm: LlamaGen's (ADM resize + centre crop, PNG); fast: in-memory tensors (default)",
    )
    p.add_argument("--validation_data_dir", default=None, help="a folder of evaluation images (e.g. ImageNet val)")
    p.add_argument("--dataset_name", default=None, help="a Hugging Face datasets image dataset to evaluate on")
    p.add_argument("--dataset_split", default="validation", help="its split")
    p.add_argument("--image_column", default="image", help="its image column")
    p.add_argument("--resolution", type=int, default=None, help="evaluation size (default: the model's sample_size)")
    p.add_argument(
        "--demo_split",
        default="parts",
        choices=sorted(DEMO_EVAL_SETS),
        help="demo set when no dataset is given: parts (the held-out cells of the training photos, the training "
        "distribution) or heldout (two photos never seen)",
    )
    p.add_argument(
        "--eval_samples",
        type=int,
        default=None,
        help="demo crops when no dataset is given (default: 64 tokens per code)",
    )
    p.add_argument("--batch_size", type=int, default=32, help="images per process per batch")
    p.add_argument("--max_batches", type=int, default=None, help="stop after this many batches per process")
    p.add_argument(
        "--perceptual_weights", default=None, help="VGG16 weights (Hub id or file): LPIPS for --protocol fast"
    )
    p.add_argument(
        "--alexnet_weights",
        default=None,
        help="AlexNet weights for LPIPS under --protocol fvq/adm: torchvision's alexnet-owt-7be5be79.pth, a full "
        "LPIPS-AlexNet checkpoint, or a Hub repository holding one (--alexnet_filename)",
    )
    p.add_argument(
        "--alexnet_filename", default=None, help="the AlexNet file inside the --alexnet_weights Hub repository"
    )
    p.add_argument(
        "--inception_weights",
        default=None,
        help="FID InceptionV3 weights (file or Hub repo) to also report rFID: pytorch-fid's pt_inception-2015-12-05 "
        "or torch-fidelity's weights-inception-2015-12-05 (the same graph; the protocol sets the preprocessing)",
    )
    p.add_argument("--dataset_label", default=None, help="what the images are, for the card (e.g. 'ImageNet val')")
    p.add_argument(
        "--update_model_card",
        action="store_true",
        help="add the metrics, named with the protocol, to README.md of the (local) model folder",
    )
    p.add_argument(
        "--mixed_precision", default="no", choices=["no", "fp16", "bf16"], help="autocast the forward passes (no: fp32)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out demo crops")
    p.add_argument("--output_json", default=None, help="write the metrics here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    distributed_without_gpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=distributed_without_gpu)
    model = load_tokenizer(args.pretrained_model_name_or_path, subfolder=args.subfolder).to(accelerator.device).eval()
    resolution = args.resolution or model.config.sample_size
    protocol = get_protocol(args.protocol)
    if protocol.in_memory:
        collate = collate_images
        if args.validation_data_dir:
            dataset = ImageFolderDataset(args.validation_data_dir, resolution, train=False)
            data = f"images in {args.validation_data_dir}"
        elif args.dataset_name:
            dataset = HFImageDataset(
                args.dataset_name, resolution, args.image_column, split=args.dataset_split, train=False
            )
            data = f"{args.dataset_name} [{args.dataset_split}]"
        else:
            samples = args.eval_samples or demo_eval_samples(
                model.config.codebook_size, resolution // model.downsample_factor
            )
            dataset = DemoCropDataset(args.demo_split, resolution, num_samples=samples, seed=args.seed)
            data = DEMO_EVAL_SETS[args.demo_split]
    else:
        collate = collate_protocol_images
        if args.validation_data_dir:
            dataset = ProtocolImageFolder(args.validation_data_dir, protocol, resolution)
            data = f"images in {args.validation_data_dir}"
        elif args.dataset_name:
            dataset = protocol_hf_dataset(
                args.dataset_name, protocol, resolution, image_column=args.image_column, split=args.dataset_split
            )
            data = f"{args.dataset_name} [{args.dataset_split}]"
        else:
            raise SystemExit(
                f"--protocol {protocol.name} is defined on image files: pass --validation_data_dir or --dataset_name "
                "(the paper's numbers are on the 50,000 ImageNet val images)"
            )
    shard = shard_for_process(dataset, accelerator.process_index, accelerator.num_processes)
    dataloader = DataLoader(shard, batch_size=args.batch_size, collate_fn=collate)

    lpips = fid = None
    if protocol.lpips_net == "vgg" and args.alexnet_weights:
        raise SystemExit("--protocol fast measures LPIPS with VGG16 (--perceptual_weights), not AlexNet")
    if protocol.lpips_net == "alex" and args.perceptual_weights:
        raise SystemExit(
            f"--protocol {protocol.name} measures LPIPS with AlexNet: pass --alexnet_weights, not --perceptual_weights"
        )
    if args.perceptual_weights or args.alexnet_weights:
        from fvq_hf.losses import LPIPS

        lpips = LPIPS(
            args.perceptual_weights or args.alexnet_weights, net=protocol.lpips_net, filename=args.alexnet_filename
        ).to(accelerator.device)
    if args.inception_weights:
        from torchmetrics.image.fid import FrechetInceptionDistance

        from fvq_hf.evaluation.inception import InceptionV3Features

        features = InceptionV3Features.from_pretrained(args.inception_weights, preprocessing=protocol.inception)
        fid = FrechetInceptionDistance(feature=features, sync_on_compute=True).to(accelerator.device)
    with accelerator.autocast():
        result, _ = evaluate_tokenizer(
            model, dataloader, lpips=lpips, fid=fid, protocol=protocol, max_batches=args.max_batches
        )
    result.extra.update(
        {"model": args.pretrained_model_name_or_path, "data": data, "num_processes": accelerator.num_processes}
    )
    if accelerator.is_main_process:
        print(f"{args.pretrained_model_name_or_path} on {result.images} {data}")
        print(f"protocol: {result.protocol}")
        print("| metric | value |\n|---|---|")
        print(f"| codebook usage | {result.usage:.2%} ({result.used_codes:,} of {model.config.codebook_size:,}) |")
        if "live_slots" in result.extra:
            print(f"| live bridge slots | {result.extra['live_slots']} of {result.extra['slots']} |")
        for level in result.extra.get("levels", []):  # a multi-code model: each depth or scale on its own
            slots = f", {level['live_slots']} of {level['slots']} slots alive" if "live_slots" in level else ""
            print(f"| usage, {level['level']} | {level['usage']:.2%} ({level['used_codes']:,} codes{slots}) |")
        print(f"| perplexity | {result.perplexity:.1f} |")
        print(f"| PSNR{' (Y channel)' if protocol.psnr == 'y' else ''} | {result.psnr:.2f} dB |")
        if protocol.in_memory:
            print(f"| SSIM | {result.ssim:.4f} |")
        else:
            print(f"| SSIM as published (data range 2 on [0, 1] images, inflated) | {result.ssim:.4f} |")
            print(f"| SSIM, correct data range 1 | {result.ssim_correct_range:.4f} |")
        if result.lpips is not None:
            print(f"| LPIPS ({'AlexNet' if result.lpips_net == 'alex' else 'VGG'}) | {result.lpips:.4f} |")
        if result.rfid is not None:
            print(f"| rFID | {result.rfid:.3f} |")
        if args.output_json:
            os.makedirs(os.path.dirname(os.path.abspath(args.output_json)), exist_ok=True)
            with open(args.output_json, "w") as handle:
                json.dump(result.as_dict(), handle, indent=2)
        if args.update_model_card:
            from fvq_hf.hub import update_model_card

            folder = os.path.join(args.pretrained_model_name_or_path, args.subfolder or "")
            if not os.path.isdir(folder):
                raise SystemExit(
                    "--update_model_card writes the card of a local model folder; download the model first"
                )
            update_model_card(os.path.join(folder, "README.md"), result, dataset_name=args.dataset_label or data)
            print(f"model card updated: {os.path.join(folder, 'README.md')}")
    return result.as_dict()


if __name__ == "__main__":
    main()
