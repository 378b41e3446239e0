"""``fvq-convert``: one command for every official checkpoint, a tokenizer or a LlamaGen GPT (told apart by keys).

    fvq-convert fvq_16k.pt fvq-16k                        # an FVQModel folder, bridge folded into the codebook
    fvq-convert fvq_16k.pt fvq-16k-bridge --no-fold       # keep raw codebook + VQBridge (to fine-tune)
    fvq-convert vq_ds16_c2i.pt llamagen-vq16 --to diffusers
    fvq-convert fvq_16k.pt fvq-16k --push-to-hub your-org/fvq-16k
    fvq-convert c2i_L_256.pt llamagen-gpt-l                                     # an FVQTransformer folder
    fvq-convert c2i_L_256.pt llamagen-c2i-l --tokenizer vq_ds16_c2i.pt --l2-normalize   # a whole FVQPipeline
    fvq-convert c2i_3B_384.pt llamagen-gpt-3b             # a bare FSDP state dict: GPT-3B recognised by its shape
    fvq-convert rqvae_last.pt fvq-rq --quantizer residual  # FVQ's RQ-VAE: its file looks single-code, so say it
    fvq-convert var_last.pt fvq-var                       # FVQ's VAR tokenizer, recognised by its tensors
    fvq-convert vae_ch160v4096z32.pth var-original        # VAR's own released tokenizer

Tokenizers: the LlamaGen training layout or a plain state dict, with or without FVQ's VQBridge; ``args.QB_type``
gives the bridge's heads. Multi-code tokenizers (``MultiCodeFVQModel`` folders): FVQ's RQ-VAE with
``--quantizer residual`` (its tensors and args are those of a single-code file), FVQ's VAR tokenizer and VAR's own
release by their tensors (VAR's layout). GPTs: LlamaGen's c2i checkpoints; the heads come from ``args.gpt_model``
or from the tensors' width and depth (every model of LlamaGen's ``GPT_models``), else ``--num-heads``. Files are opened with
``torch.load(weights_only=True)`` (only argparse's ``Namespace`` beyond tensors and containers) or safetensors;
every key is carried over or named as skipped, and an unknown, missing or mis-shaped key stops with its name.
"""

from __future__ import annotations

import argparse
import json
import os

from ..hub import push_folder
from ..models import FVQModel
from .checkpoint import ConversionError, read_checkpoint_file, split_container
from .multicode import (
    QUANTIZER_CHOICES,
    convert_residual_checkpoint,
    convert_var_checkpoint,
    could_be_rqvae,
    is_var_state,
    parse_scales,
)
from .tokenizer import convert_checkpoint, pick_tokenizer_weights, save_converted
from .transformer import convert_gpt_checkpoint, describe_conversion, is_gpt_state, save_converted_gpt


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fvq-convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "src",
        help="official FVQ / LlamaGen / VAR tokenizer, or LlamaGen c2i GPT, checkpoint (.pt, .pth, .safetensors)",
    )
    parser.add_argument("dst", help="output folder")
    parser.add_argument(
        "--to",
        choices=["fvq", "diffusers"],
        default="fvq",
        help="write an FVQModel (default) or a diffusers VQModel folder",
    )
    parser.add_argument(
        "--fold",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fold the VQBridge into the codebook (default); --no-fold keeps raw codebook + bridge",
    )
    parser.add_argument(
        "--push-to-hub", metavar="ID", default=None, help="also upload the folder to this Hub repository"
    )
    parser.add_argument("--token", default=None, help="Hub token (default: the one `hf auth login` stored)")
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    group = parser.add_argument_group("config overrides (read from the checkpoint's args and tensors by default)")
    group.add_argument("--codebook-size", type=int, default=None)
    group.add_argument("--codebook-dim", type=int, default=None)
    group.add_argument(
        "--l2-normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cosine lookup, latents and codes normalised at every lookup (LlamaGen's codebook_l2_norm)",
    )
    group.add_argument(
        "--bridge-num-heads",
        type=int,
        default=None,
        help="VQBridge heads (not visible in the tensors; args.QB_type gives them)",
    )
    group.add_argument(
        "--bridge-condition-index",
        type=int,
        default=None,
        help="DiT-flavoured bridge: the label row to compute it with (default: row 1000, the null class, of a "
        "1,001-row table)",
    )
    group.add_argument(
        "--codebook-init-l2",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record FVQ's codebook_l2_norm (raw codebook normalised once at init; lookup unchanged)",
    )
    group.add_argument("--norm-num-groups", type=int, default=None, help="GroupNorm groups (LlamaGen: 32)")
    group.add_argument("--sample-size", type=int, default=None, help="training resolution recorded in the config")
    multi = parser.add_argument_group("multi-code tokenizers (FVQ's RQ-VAE and VAR, VAR's own release)")
    multi.add_argument(
        "--quantizer",
        choices=QUANTIZER_CHOICES,
        default=None,
        help="default: multiscale for VAR's layout (recognised by its tensors), single otherwise. An FVQ RQ-VAE "
        "checkpoint has the same tensors and args as a single-code one: convert it with --quantizer residual",
    )
    multi.add_argument(
        "--rq-depth",
        type=int,
        default=None,
        help="with --quantizer residual: codes per position (default 4, the official RQ-VAE's constant)",
    )
    multi.add_argument(
        "--scales",
        default=None,
        help="multi-scale: token-map sides as a comma list (default: VAR's 1,2,3,4,5,6,8,10,13,16 when the "
        "checkpoint's quantize.ema_vocab_hit_SV has 10 rows)",
    )
    gpt = parser.add_argument_group("LlamaGen c2i GPT checkpoints (c2i_B_256.pt … c2i_XXL_384.pt)")
    gpt.add_argument(
        "--tokenizer",
        default=None,
        help="with a GPT: also write a whole FVQPipeline, with this tokenizer (a converted folder, a Hub id, or a "
        "tokenizer checkpoint converted with the overrides above)",
    )
    gpt.add_argument(
        "--id2label", default=None, help="JSON file of class names (default: ImageNet's for 1,000 classes)"
    )
    gpt.add_argument("--image-size", type=int, default=None, help="the GPT's image size when the file does not say")
    gpt.add_argument(
        "--num-heads",
        type=int,
        default=None,
        help="the GPT's attention heads (default: those of the LlamaGen model args.gpt_model names, or of the one "
        "with the tensors' width and depth; any other model needs this flag)",
    )
    return parser.parse_args(argv)


def _convert_gpt(args, raw) -> None:
    flags = [
        flag
        for flag, value in (("--quantizer", args.quantizer), ("--rq-depth", args.rq_depth), ("--scales", args.scales))
        if value is not None
    ]
    if flags:
        raise ConversionError(
            f"{args.src!r} is a LlamaGen GPT, and {', '.join(flags)} are for tokenizer checkpoints: drop them"
        )
    result = convert_gpt_checkpoint(args.src, image_size=args.image_size, num_heads=args.num_heads, raw=raw)
    tokenizer = None
    if args.tokenizer:
        if os.path.isfile(args.tokenizer):
            tokenizer = convert_checkpoint(args.tokenizer, **_tokenizer_overrides(args)).model
        else:
            tokenizer = FVQModel.from_pretrained(args.tokenizer)
        if not tokenizer.config.folded:
            tokenizer = tokenizer.fold()
    id2label = None
    if args.id2label:
        with open(args.id2label) as handle:
            id2label = {int(k): v for k, v in json.load(handle).items()}
    save_converted_gpt(
        result,
        args.dst,
        tokenizer=tokenizer,
        tokenizer_name=args.tokenizer,
        id2label=id2label,
        repo_id=args.push_to_hub,
    )
    print(f"read {describe_conversion(result)}")
    print(f"wrote {'an FVQPipeline' if tokenizer is not None else 'an FVQTransformer'} to {args.dst}")


def _tokenizer_overrides(args) -> dict:
    return {
        "codebook_size": args.codebook_size,
        "codebook_dim": args.codebook_dim,
        "l2_normalize": args.l2_normalize,
        "bridge_num_heads": args.bridge_num_heads,
        "bridge_condition_index": args.bridge_condition_index,
        "codebook_init_l2": args.codebook_init_l2,
        "norm_num_groups": args.norm_num_groups,
        "sample_size": args.sample_size,
    }


def _quantizer(args, weights) -> str:
    """The quantizer to convert to: ``--quantizer``, else multi-scale for VAR's layout, else single; bad
    combinations of the multi-code flags stop here, before any model is built."""
    var = is_var_state(weights)
    quantizer = args.quantizer or ("multiscale" if var else "single")
    if var and quantizer != "multiscale":
        raise ConversionError(
            f"{args.src!r} has VAR's layout (encoder.down.*, quantize.quant_resi.*): a multi-scale tokenizer. "
            f"Drop --quantizer {quantizer} (or pass --quantizer multiscale)."
        )
    if quantizer == "multiscale" and not var:
        raise ConversionError(
            f"{args.src!r} has the LlamaGen layout (encoder.conv_blocks.*), not VAR's: multi-scale checkpoints "
            "(FVQ's VAR trainer, VAR's vae_ch160v4096z32.pth) have encoder.down.* and quantize.quant_resi.* keys. "
            "Drop --quantizer multiscale; an FVQ RQ-VAE checkpoint needs --quantizer residual."
        )
    if args.rq_depth is not None and quantizer != "residual":
        raise ConversionError(
            "--rq-depth sets the depth of a residual quantizer: add --quantizer residual (an FVQ RQ-VAE checkpoint), "
            "or drop --rq-depth"
        )
    if args.scales is not None and quantizer != "multiscale":
        raise ConversionError(
            f"--scales is for multi-scale (VAR-layout) checkpoints, and this conversion is {quantizer}: drop --scales"
        )
    if quantizer != "single" and args.to == "diffusers":
        raise ConversionError(
            f"--to diffusers: a {quantizer} tokenizer has several codes per position and a stock diffusers VQModel "
            "holds one. Drop --to diffusers; the folder loads with fvq_hf.MultiCodeFVQModel.from_pretrained."
        )
    return quantizer


def _convert_tokenizer(args, raw, fmt, weights) -> None:
    quantizer = _quantizer(args, weights)
    source = pick_tokenizer_weights(args.src, raw, fmt)
    overrides = _tokenizer_overrides(args)
    if quantizer == "residual":
        result = convert_residual_checkpoint(source, rq_depth=args.rq_depth, **overrides)
    elif quantizer == "multiscale":
        result = convert_var_checkpoint(source, parse_scales(args.scales), **overrides)
    else:
        result = convert_checkpoint(source, **overrides)
    save_converted(result, args.dst, to=args.to, fold=args.fold, repo_id=args.push_to_hub)
    print(f"read {args.src} ({result.source.weights_key} weights): {result.layout}")
    print(
        f"carried over {len(result.consumed_keys)} keys"
        + (f"; skipped {', '.join(result.ignored_keys)} (not weights)" if result.ignored_keys else "")
    )
    if quantizer == "single" and args.quantizer is None and could_be_rqvae(source):
        print(
            "converted as a single-code tokenizer; an FVQ RQ-VAE checkpoint looks identical (same tensors, same "
            "args): if this is one, convert it again with --quantizer residual"
        )
    written = {"single": "an FVQModel", "residual": "a residual MultiCodeFVQModel"}.get(
        quantizer, "a multi-scale MultiCodeFVQModel"
    )
    print(f"wrote {'a diffusers VQModel' if args.to == 'diffusers' else written} to {args.dst}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        raw, fmt = read_checkpoint_file(args.src)
        weights = split_container(args.src, raw)[0]
        if is_gpt_state(weights):
            _convert_gpt(args, raw)
        else:
            _convert_tokenizer(args, raw, fmt, weights)
    except (ConversionError, FileNotFoundError, OSError) as error:
        raise SystemExit(f"fvq-convert: {error}") from None
    if args.push_to_hub:
        url = push_folder(
            args.dst,
            args.push_to_hub,
            token=args.token,
            private=args.private or None,
            commit_message="Convert with fvq-convert",
        )
        print(f"pushed: {url}")
