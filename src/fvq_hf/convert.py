"""Convert official FVQ and LlamaGen tokenizer checkpoints into FVQModel or diffusers VQModel folders.

    fvq-convert fvq_16k.pt fvq-16k                        # an FVQModel folder, bridge folded into the codebook
    fvq-convert fvq_16k.pt fvq-16k-bridge --no-fold       # keep raw codebook + VQBridge (to fine-tune)
    fvq-convert vq_ds16_c2i.pt llamagen-vq16 --to diffusers
    fvq-convert fvq_16k.pt fvq-16k --push-to-hub your-org/fvq-16k

Reads the LlamaGen training layout (``{"model", "optimizer", …, "args"[, "ema"]}``, EMA weights preferred),
with or without FVQ's ``quantize.qbridge`` (ViT or DiT flavour), and plain state dicts (``.pt`` or
``.safetensors``). Files are opened with ``torch.load(weights_only=True)``, allowing only the argparse
``Namespace`` the official files carry: nothing else is unpickled. Every key of the source is either carried
over, or named as skipped (``quantize.codebook_used``, a usage buffer); an unknown, missing or mis-shaped key
stops the conversion with its name.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field

import torch
from huggingface_hub import ModelCardData

from .hub import render_model_card
from .models import FVQModel
from .models.fvq_model import _block_types
from .quantization.projectors import BRIDGE_WIDTHS

# buffers of the official layout that are state, not weights: read and reported, never carried over
IGNORED_KEYS = ("quantize.codebook_used",)
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_ATTN_NAMES = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


class ConversionError(ValueError):
    """The source file cannot be converted; the message names the file or keys at fault and what to do."""


@dataclass
class SourceCheckpoint:
    """What was read from a source file."""

    path: str
    state_dict: dict[str, torch.Tensor]
    args: dict = field(default_factory=dict)
    weights_key: str = "state dict"
    steps: int | None = None
    format: str = "PyTorch pickle (weights_only)"


@dataclass
class ConversionResult:
    """What a conversion did: the model built, the keys carried over and the keys skipped."""

    model: FVQModel
    layout: str
    consumed_keys: list[str]
    ignored_keys: list[str]
    source: SourceCheckpoint


# ----------------------------------------------------------------------------------------------- reading
def load_checkpoint(path: str | os.PathLike) -> SourceCheckpoint:
    """Read a tokenizer checkpoint safely: ``.safetensors``, or a torch file under ``weights_only=True``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path!r}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            raw = load_file(path)
        except Exception as error:  # safetensors raises its own error types for a bad header
            raise ConversionError(f"{path!r} is not a readable safetensors file (truncated or corrupt?): {error}") from error
        return _pick_weights(path, raw, fmt="safetensors")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ConversionError(
            f"{path!r} holds pickled objects other than tensors, plain containers and argparse.Namespace, and "
            "fvq-convert does not unpickle them: unpickling can run arbitrary code. If you trust the file, load it "
            "yourself, save its state dict with safetensors.torch.save_file and convert that. "
            f"torch said: {str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise ConversionError(
            f"{path!r} is not a readable PyTorch checkpoint (truncated or corrupt?): {str(error).splitlines()[0]}"
        ) from error
    return _pick_weights(path, raw, fmt="PyTorch pickle (weights_only)")


def _pick_weights(path: str, raw, fmt: str) -> SourceCheckpoint:
    if not isinstance(raw, dict):
        raise ConversionError(f"{path!r} holds a {type(raw).__name__}, not a checkpoint dict or a state dict")
    args = raw.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else dict(args) if isinstance(args, dict) else {}
    steps = raw.get("steps")
    for key in ("ema", "model", "state_dict"):
        if isinstance(raw.get(key), dict):
            weights, weights_key = raw[key], key
            break
    else:
        weights, weights_key = raw, "state dict"
    names = {_unwrap(name): name for name in weights}
    if "encoder.conv_in.weight" not in names or "quantize.embedding.weight" not in names:
        sample = ", ".join(sorted(map(str, names))[:5]) or "none"
        raise ConversionError(
            f"{path!r} does not look like an FVQ or LlamaGen tokenizer checkpoint: it has no 'encoder.conv_in.weight' "
            f"or 'quantize.embedding.weight' among its {len(names)} keys (first: {sample})"
        )
    state = {}
    for name, original in names.items():
        value = weights[original]
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"{path!r}: entry {original!r} of the {weights_key} is a {type(value).__name__}, not a tensor")
        state[name] = value
    return SourceCheckpoint(path, state, args, weights_key, int(steps) if isinstance(steps, int) else None, fmt)


def _unwrap(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:  # DistributedDataParallel / torch.compile wrappers
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


# ----------------------------------------------------------------------------------------------- config
def _count(state: dict, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for key in state if (m := regex.match(key))})


def infer_config(source: SourceCheckpoint, **overrides) -> tuple[dict, str]:
    """The ``FVQModel`` config of a source checkpoint, and a description of its layout.

    Shapes come from the tensors; ``args`` give what tensors cannot (attention heads via ``QB_type``,
    normalisation via ``codebook_l2_norm``) and are checked against them; ``overrides`` win over both.
    """
    state, args = source.state_dict, source.args
    levels = _count(state, r"encoder\.conv_blocks\.(\d+)\.res\.0\.conv1\.weight")
    if levels == 0:
        raise ConversionError(f"{source.path!r}: no encoder.conv_blocks.*.res.0.conv1.weight keys; is this a VQGAN encoder?")
    codebook_size, codebook_dim = state["quantize.embedding.weight"].shape
    for arg, value, tensor_name in [
        ("codebook_size", codebook_size, "quantize.embedding.weight rows"),
        ("codebook_embed_dim", codebook_dim, "quantize.embedding.weight columns"),
    ]:
        if arg in args and args[arg] is not None and int(args[arg]) != value:
            raise ConversionError(f"{source.path!r}: args.{arg} = {args[arg]} but {tensor_name} = {value}; the file is inconsistent")
    block_out = tuple(state[f"encoder.conv_blocks.{i}.res.0.conv2.weight"].shape[0] for i in range(levels))
    down, up = _block_types(levels)
    config = {
        "in_channels": state["encoder.conv_in.weight"].shape[1],
        "out_channels": state["decoder.conv_out.weight"].shape[0],
        "block_out_channels": block_out,
        "down_block_types": down,
        "up_block_types": up,
        "layers_per_block": _count(state, r"encoder\.conv_blocks\.0\.res\.(\d+)\.conv1\.weight"),
        "latent_channels": state["encoder.conv_out.weight"].shape[0],
        "codebook_size": codebook_size,
        "codebook_dim": codebook_dim,
        "l2_normalize": bool(args.get("codebook_l2_norm", False)) if overrides.get("l2_normalize") is None else overrides["l2_normalize"],
        "sample_size": int(args.get("image_size", 256) or 256),
        "projector": "none",
    }
    bridge_keys = [k for k in state if k.startswith("quantize.qbridge.")]
    if bridge_keys:
        proj = state["quantize.qbridge.x_embedder.proj.weight"]  # (hidden, d, p, p)
        hidden, patch = proj.shape[0], proj.shape[-1]
        dit = "quantize.qbridge.pos_embed" in state
        config.update(
            projector="vqbridge",
            bridge_flavour="dit" if dit else "vit",
            bridge_patch_size=patch,
            bridge_hidden_size=hidden,
            bridge_num_heads=_bridge_heads(args.get("QB_type"), hidden),
            bridge_depth=_count(state, r"quantize\.qbridge\.blocks\.(\d+)\."),
            bridge_mlp_ratio=state["quantize.qbridge.blocks.0.mlp.fc1.weight"].shape[0] / hidden,
        )
        if dit:
            config["bridge_num_condition_embeddings"] = state["quantize.qbridge.y_embedder.embedding_table.weight"].shape[0]
        layout = f"FVQ with a {'DiT' if dit else 'ViT'}-flavoured VQBridge (p = {patch}, hidden {hidden})"
    elif config["l2_normalize"]:
        layout = "LlamaGen VQGAN with an l2-normalised codebook (cosine distance)"
    else:
        layout = "plain VQGAN codebook (LlamaGen layout; e.g. an FVQ model already converted to VQGAN format)"
    if "codebook_l2_norm" not in args and overrides.get("l2_normalize") is None:
        layout += "; the checkpoint's args do not say whether codes are l2-normalised, so they are taken as not (LlamaGen's released tokenizers are: pass --l2-normalize)"
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config, layout


def _bridge_heads(qb_type, hidden: int) -> int:
    # heads are not visible in the tensors; the preset name in args.QB_type tells them (e.g. "L/4", "QBridge-L-8")
    if isinstance(qb_type, str):
        match = re.search(r"(XL|S|B|L)[-_/]?\d*", qb_type)
        if match and BRIDGE_WIDTHS[match.group(1)][0] == hidden:
            return BRIDGE_WIDTHS[match.group(1)][1]
    return max(1, hidden // 64)  # the presets' head dimension; override with --bridge-num-heads


# ----------------------------------------------------------------------------------------------- renaming
def _rename_resnet(rest: str) -> str:
    return rest.replace("nin_shortcut.", "conv_shortcut.")


def _rename_attention(rest: str) -> str:
    name, param = rest.split(".", 1)
    if name not in _ATTN_NAMES:
        raise KeyError(rest)
    return f"{_ATTN_NAMES[name]}.{param}"


def rename_key(key: str) -> str | None:
    """The diffusers / fvq_hf name of an official (LlamaGen-layout) key; ``None`` for a skipped buffer.

    Raises ``KeyError`` for a key the layout does not have.
    """
    if key in IGNORED_KEYS:
        return None
    if key.startswith("quantize.qbridge."):
        return "quantize.projector." + key[len("quantize.qbridge.") :]
    if key in ("quantize.embedding.weight",) or re.fullmatch(r"(post_)?quant_conv\.(weight|bias)", key):
        return key
    if m := re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)", key):
        return key
    if m := re.fullmatch(r"(encoder|decoder)\.norm_out\.(weight|bias)", key):
        return f"{m[1]}.conv_norm_out.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.conv_blocks\.(\d+)\.(res|attn)\.(\d+)\.(.+)", key):
        part, level, kind, j, rest = m.groups()
        blocks = "down_blocks" if part == "encoder" else "up_blocks"
        if kind == "res":
            return f"{part}.{blocks}.{level}.resnets.{j}.{_rename_resnet(rest)}"
        return f"{part}.{blocks}.{level}.attentions.{j}.{_rename_attention(rest)}"
    if m := re.fullmatch(r"encoder\.conv_blocks\.(\d+)\.downsample\.conv\.(weight|bias)", key):
        return f"encoder.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}"
    if m := re.fullmatch(r"decoder\.conv_blocks\.(\d+)\.upsample\.conv\.(weight|bias)", key):
        return f"decoder.up_blocks.{m[1]}.upsamplers.0.conv.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid\.([012])\.(.+)", key):
        part, index, rest = m.groups()
        if index == "1":
            return f"{part}.mid_block.attentions.0.{_rename_attention(rest)}"
        return f"{part}.mid_block.resnets.{0 if index == '0' else 1}.{_rename_resnet(rest)}"
    raise KeyError(key)


def convert_state_dict(state: dict[str, torch.Tensor], model: FVQModel) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Rename and reshape an official state dict for ``model``.

    Returns the converted state dict, the source keys carried over and the source keys skipped; raises
    ``ConversionError`` naming every unknown, missing or mis-shaped key.
    """
    expected = model.state_dict()
    converted, consumed, ignored, unknown, misshaped, misshaped_targets = {}, [], [], [], [], set()
    for key, tensor in state.items():
        try:
            new = rename_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if new is None:
            ignored.append(key)
            continue
        if ".attentions." in new and re.search(r"\.to_(q|k|v|out\.0)\.weight$", new) and tensor.ndim == 4:
            tensor = tensor[:, :, 0, 0]  # LlamaGen's 1×1 convolutions are diffusers' Linear layers
        if new not in expected:
            unknown.append(key)
        elif tuple(tensor.shape) != tuple(expected[new].shape):
            misshaped.append(f"{key} {tuple(tensor.shape)} → {new} expects {tuple(expected[new].shape)}")
            misshaped_targets.add(new)
        else:
            converted[new] = tensor
            consumed.append(key)
    missing = sorted(set(expected) - set(converted) - misshaped_targets)
    problems = []
    if unknown:
        problems.append(f"unknown keys ({len(unknown)}): {', '.join(sorted(unknown))}")
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if misshaped:
        problems.append(f"mis-shaped keys ({len(misshaped)}): {'; '.join(misshaped)}")
    if problems:
        raise ConversionError(
            "the checkpoint does not match the model inferred from it (override the config with flags if the "
            "inference is wrong):\n  " + "\n  ".join(problems)
        )
    return converted, consumed, ignored


def convert_checkpoint(source: str | os.PathLike | SourceCheckpoint, **overrides) -> ConversionResult:
    """Build an unfolded ``FVQModel`` holding the weights of an official checkpoint (file path or loaded)."""
    if not isinstance(source, SourceCheckpoint):
        source = load_checkpoint(source)
    config, layout = infer_config(source, **overrides)
    model = FVQModel(**config)
    converted, consumed, ignored = convert_state_dict(source.state_dict, model)
    model.load_state_dict(converted, strict=True)
    return ConversionResult(model.eval(), layout, consumed, ignored, source)


# ----------------------------------------------------------------------------------------------- writing
def save_converted(
    result: ConversionResult, output_dir: str | os.PathLike, to: str = "fvq", fold: bool = True, repo_id: str | None = None
):
    """Write the converted model (FVQModel folder, folded or not, or a diffusers VQModel folder) with a model card."""
    if to not in ("fvq", "diffusers"):
        raise ValueError(f"--to must be 'fvq' or 'diffusers', got {to!r}")
    model = result.model
    c = model.config
    if to == "diffusers":
        out = model.to_diffusers()
        saved_as = "a diffusers `VQModel` (VQBridge folded into the codebook)" if c.projector != "none" else "a diffusers `VQModel`"
        usage = f'from diffusers import VQModel\n\nvq = VQModel.from_pretrained("{repo_id or output_dir}")\nreconstruction = vq.decode(vq.encode(images).latents).sample'
        library = "diffusers"
    else:
        out = model.fold() if fold else model
        saved_as = "an `FVQModel`, " + ("folded: one plain codebook, no projector" if out.config.folded or c.projector == "none" else "unfolded: raw codebook + VQBridge, ready to fine-tune")
        usage = (
            f'from fvq_hf import FVQModel\n\nmodel = FVQModel.from_pretrained("{repo_id or output_dir}")\n'
            "indices = model.encode_indices(images)      # (B, H/f, W/f)\n"
            "reconstruction = model.decode_indices(indices)"
        )
        library = "fvq_hf"
    out.save_pretrained(output_dir)

    downsample = model.downsample_factor
    if c.projector == "vqbridge":
        projector = f"VQBridge, {c.bridge_flavour} flavour, p = {c.bridge_patch_size}, hidden {c.bridge_hidden_size}, heads {c.bridge_num_heads}, depth {c.bridge_depth}"
        note = "The bridge was applied once to the raw codebook; the saved codebook is its output." if (to == "diffusers" or fold) else ""
    else:
        projector, note = "none (plain codebook)", ""
    if c.l2_normalize and to == "diffusers":
        note += (
            " The codebook is stored l2-normalised: with unit-length codes the L2 nearest code is the cosine nearest "
            "code, so the stock VQModel reproduces the tokenizer exactly at inference. Training it further as a "
            "VQModel would not keep the normalisation."
        )
    card = render_model_card(
        "converted_tokenizer.md",
        ModelCardData(library_name=library, tags=["fvq", "vqgan", "image-tokenizer", "vector-quantization"]),
        title=repo_id or os.path.basename(os.path.abspath(output_dir)),
        source_name=os.path.basename(result.source.path),
        source_format=result.source.format,
        weights_key=result.source.weights_key,
        steps=result.source.steps if result.source.steps is not None else "not recorded",
        layout=result.layout,
        source_args={k: v for k, v in result.source.args.items() if k in ("codebook_size", "codebook_embed_dim", "QB_type", "codebook_l2_norm", "vq_model", "image_size")},
        ignored_keys=result.ignored_keys,
        saved_as=saved_as,
        downsample=downsample,
        tokens=f"{c.sample_size // downsample} × {c.sample_size // downsample}",
        sample_size=c.sample_size,
        codebook_size=f"{c.codebook_size:,}",
        codebook_dim=c.codebook_dim,
        l2_normalize=c.l2_normalize,
        projector=projector,
        block_out_channels=tuple(c.block_out_channels),
        layers_per_block=c.layers_per_block,
        projector_note=note.strip(),
        usage=usage,
    )
    card.save(os.path.join(output_dir, "README.md"))
    return out


def push_folder(output_dir: str | os.PathLike, repo_id: str, token: str | None = None, private: bool | None = None) -> str:
    """Create ``repo_id`` if needed and upload the written folder (weights, config and card) in one commit."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    info = api.upload_folder(repo_id=repo_id, folder_path=output_dir, commit_message="Convert with fvq-convert")
    return str(info)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fvq-convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="official FVQ / LlamaGen tokenizer checkpoint (.pt, .pth, .safetensors)")
    parser.add_argument("dst", help="output folder")
    parser.add_argument("--to", choices=["fvq", "diffusers"], default="fvq", help="write an FVQModel (default) or a diffusers VQModel folder")
    parser.add_argument("--fold", action=argparse.BooleanOptionalAction, default=True, help="fold the VQBridge into the codebook (default); --no-fold keeps raw codebook + bridge")
    parser.add_argument("--push-to-hub", metavar="ID", default=None, help="also upload the folder to this Hub repository")
    parser.add_argument("--token", default=None, help="Hub token (default: the one `hf auth login` stored)")
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    group = parser.add_argument_group("config overrides (read from the checkpoint's args and tensors by default)")
    group.add_argument("--codebook-size", type=int, default=None)
    group.add_argument("--codebook-dim", type=int, default=None)
    group.add_argument("--l2-normalize", action=argparse.BooleanOptionalAction, default=None, help="cosine-distance codebook (LlamaGen's)")
    group.add_argument("--bridge-num-heads", type=int, default=None, help="VQBridge heads (not visible in the tensors)")
    group.add_argument("--norm-num-groups", type=int, default=None, help="GroupNorm groups (LlamaGen: 32)")
    group.add_argument("--sample-size", type=int, default=None, help="training resolution recorded in the config")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {
        "codebook_size": args.codebook_size,
        "codebook_dim": args.codebook_dim,
        "l2_normalize": args.l2_normalize,
        "bridge_num_heads": args.bridge_num_heads,
        "norm_num_groups": args.norm_num_groups,
        "sample_size": args.sample_size,
    }
    try:
        result = convert_checkpoint(args.src, **overrides)
        save_converted(result, args.dst, to=args.to, fold=args.fold, repo_id=args.push_to_hub)
    except (ConversionError, FileNotFoundError) as error:
        raise SystemExit(f"fvq-convert: {error}") from None
    print(f"read {args.src} ({result.source.weights_key} weights): {result.layout}")
    print(f"carried over {len(result.consumed_keys)} keys" + (f"; skipped {', '.join(result.ignored_keys)} (not weights)" if result.ignored_keys else ""))
    print(f"wrote {'a diffusers VQModel' if args.to == 'diffusers' else 'an FVQModel'} to {args.dst}")
    if args.push_to_hub:
        print(f"pushed: {push_folder(args.dst, args.push_to_hub, token=args.token, private=args.private or None)}")


if __name__ == "__main__":
    main()
