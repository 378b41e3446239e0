"""Convert official FVQ and LlamaGen tokenizer checkpoints into FVQModel or diffusers VQModel folders.

    fvq-convert fvq_16k.pt fvq-16k                        # an FVQModel folder, bridge folded into the codebook
    fvq-convert fvq_16k.pt fvq-16k-bridge --no-fold       # keep raw codebook + VQBridge (to fine-tune)
    fvq-convert vq_ds16_c2i.pt llamagen-vq16 --to diffusers
    fvq-convert fvq_16k.pt fvq-16k --push-to-hub your-org/fvq-16k

Reads the LlamaGen training layout (``{"model", "optimizer", …, "args"[, "ema"]}``, EMA weights preferred),
with or without FVQ's ``quantize.qbridge`` (a ViT- or DiT-flavoured VQBridge of any official preset, or the
``Qbridge-lin/1`` / ``Qbridge-lin/5`` baselines; ``Qbridge-none`` has no bridge weights), and plain state dicts
(``.pt`` or ``.safetensors``). ``args.QB_type`` gives the bridge's attention heads, which the tensors do not
show; an unknown name is an error unless ``--bridge-num-heads`` is given. Files are opened with
``torch.load(weights_only=True)``, allowing only the argparse ``Namespace`` the official files carry: nothing
else is unpickled. Every key of the source is either carried over, or named as skipped
(``quantize.codebook_used``, a usage buffer); an unknown, missing or mis-shaped key stops the conversion with
its name.

``args.codebook_l2_norm`` means cosine lookup in LlamaGen's code (``l2_normalize``) but only a normalised
initial raw codebook in FVQ's (``codebook_init_l2``, lookup plain L2); each checkpoint kind converts to its own
code's behaviour. A DiT-flavoured bridge with a 1,001-row label table is computed with row 1000, the null class,
as the official conversion to a plain codebook does.
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
from .quantization.projectors import parse_official_projector
from .quantization.vqbridge import BRIDGE_NUM_HEADS

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
def read_checkpoint_file(path: str | os.PathLike) -> tuple[object, str]:
    """Open a checkpoint safely: ``.safetensors``, or a torch file under ``weights_only=True`` that may hold
    argparse's ``Namespace`` and nothing else beyond tensors and plain containers. Returns (content, format)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path!r}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path), "safetensors"
        except Exception as error:  # safetensors raises its own error types for a bad header
            raise ConversionError(
                f"{path!r} is not a readable safetensors file (truncated or corrupt?): {error}"
            ) from error
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
    return raw, "PyTorch pickle (weights_only)"


def split_container(path: str, raw) -> tuple[dict[str, torch.Tensor], str, dict, int | None]:
    """The weights of a training checkpoint (EMA preferred, then ``model``, ``module``, ``state_dict``, else the
    dict itself) under key names without wrapper prefixes, its ``args`` as a dict and its ``steps``. The values are
    not checked yet (:func:`require_tensors`), so a caller can first say whether the keys are of its kind."""
    if not isinstance(raw, dict):
        raise ConversionError(f"{path!r} holds a {type(raw).__name__}, not a checkpoint dict or a state dict")
    args = raw.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else dict(args) if isinstance(args, dict) else {}
    steps = raw.get("steps")
    for key in ("ema", "model", "module", "state_dict"):
        if isinstance(raw.get(key), dict):
            weights, weights_key = raw[key], key
            break
    else:
        weights, weights_key = raw, "state dict"
    state = {strip_wrapper_prefix(name): value for name, value in weights.items()}
    return state, weights_key, args, int(steps) if isinstance(steps, int) else None


def require_tensors(path: str, state: dict, weights_key: str) -> None:
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(
                f"{path!r}: entry {name!r} of the {weights_key} is a {type(value).__name__}, not a tensor"
            )


def load_checkpoint(path: str | os.PathLike) -> SourceCheckpoint:
    """Read a tokenizer checkpoint safely (see :func:`read_checkpoint_file`)."""
    raw, fmt = read_checkpoint_file(path)
    return _pick_weights(os.fspath(path), raw, fmt)


def _pick_weights(path: str, raw, fmt: str) -> SourceCheckpoint:
    state, weights_key, args, steps = split_container(path, raw)
    if "encoder.conv_in.weight" not in state or "quantize.embedding.weight" not in state:
        sample = ", ".join(sorted(map(str, state))[:5]) or "none"
        raise ConversionError(
            f"{path!r} does not look like an FVQ or LlamaGen tokenizer checkpoint: it has no 'encoder.conv_in.weight' "
            f"or 'quantize.embedding.weight' among its {len(state)} keys (first: {sample})"
        )
    require_tensors(path, state, weights_key)
    return SourceCheckpoint(path, state, args, weights_key, steps, fmt)


def strip_wrapper_prefix(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:  # DistributedDataParallel / torch.compile wrappers
        name = name.removeprefix(prefix)
    return name


# ----------------------------------------------------------------------------------------------- config
def _count(state: dict, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for key in state if (m := regex.match(key))})


def infer_config(source: SourceCheckpoint, **overrides) -> tuple[dict, str]:
    """The ``FVQModel`` config of a source checkpoint, and a description of its layout.

    Shapes come from the tensors; ``args`` give what tensors cannot (attention heads via ``QB_type``, the meaning of
    ``codebook_l2_norm``) and are checked against them; ``overrides`` win over both.

    A checkpoint is FVQ's when it has ``quantize.qbridge.*`` keys or ``args.QB_type`` (``Qbridge-none`` has no
    bridge weights), LlamaGen's otherwise. The two code bases give ``codebook_l2_norm`` different meanings, and each
    kind converts to the behaviour of its own code: in LlamaGen's it is cosine lookup (``l2_normalize``); in FVQ's it
    only normalised the raw codebook once at init (``codebook_init_l2``), the lookup being plain L2.
    """
    state, args = source.state_dict, source.args
    levels = _count(state, r"encoder\.conv_blocks\.(\d+)\.res\.0\.conv1\.weight")
    if levels == 0:
        raise ConversionError(
            f"{source.path!r}: no encoder.conv_blocks.*.res.0.conv1.weight keys; is this a VQGAN encoder?"
        )
    codebook_size, codebook_dim = state["quantize.embedding.weight"].shape
    for arg, value, tensor_name in [
        ("codebook_size", codebook_size, "quantize.embedding.weight rows"),
        ("codebook_embed_dim", codebook_dim, "quantize.embedding.weight columns"),
    ]:
        if arg in args and args[arg] is not None and int(args[arg]) != value:
            raise ConversionError(
                f"{source.path!r}: args.{arg} = {args[arg]} but {tensor_name} = {value}; the file is inconsistent"
            )
    block_out = tuple(state[f"encoder.conv_blocks.{i}.res.0.conv2.weight"].shape[0] for i in range(levels))
    down, up = _block_types(levels)
    qb_type = args.get("QB_type")
    is_fvq = any(k.startswith("quantize.qbridge.") for k in state) or qb_type is not None
    l2_arg = args.get("codebook_l2_norm")
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
        "l2_normalize": False if is_fvq else bool(l2_arg),
        "codebook_init_l2": bool(l2_arg) if is_fvq else False,
        "sample_size": int(args.get("image_size", 256) or 256),
        "projector": "none",
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.get("l2_normalize") is not None:
        config["l2_normalize"] = overrides["l2_normalize"]
    if is_fvq:
        layout = _infer_projector(source, config, qb_type, overrides)
        if l2_arg:
            layout += (
                "; args.codebook_l2_norm = True, which in FVQ's code l2-normalised the raw codebook once at init "
                "(lookup is plain L2, as converted)"
            )
    elif config["l2_normalize"]:
        layout = "LlamaGen VQGAN with an l2-normalised codebook (cosine distance)"
    else:
        layout = "plain VQGAN codebook (LlamaGen layout; e.g. an FVQ model already converted to VQGAN format)"
    if not is_fvq and "codebook_l2_norm" not in args and overrides.get("l2_normalize") is None:
        layout += (
            "; the checkpoint's args do not say whether codes are l2-normalised, so they are taken as not "
            "(LlamaGen's released tokenizers are: pass --l2-normalize)"
        )
    config.update(overrides)
    return config, layout


def _infer_projector(source: SourceCheckpoint, config: dict, qb_type, overrides: dict) -> str:
    """Fill the projector fields of ``config`` for an FVQ checkpoint; return the layout description."""
    state, q = source.state_dict, "quantize.qbridge."
    heads_override = overrides.get("bridge_num_heads")
    if f"{q}x_embedder.proj.weight" in state:
        found = "vqbridge"
    elif f"{q}linear.weight" in state:
        found = "linear"
    elif any(k.startswith(f"{q}linear_5.") for k in state):
        found = "mlp"
    elif any(k.startswith(q) for k in state):
        keys = sorted(k for k in state if k.startswith(q))[:3]
        raise ConversionError(f"{source.path!r}: quantize.qbridge keys of no known projector ({', '.join(keys)}, …)")
    else:
        found = "none"
    named, preset, unknown_name = None, None, False
    if isinstance(qb_type, str):
        try:
            named, preset = parse_official_projector(qb_type)
        except ValueError as error:
            if heads_override is None or found != "vqbridge":
                raise ConversionError(
                    f"{source.path!r}: args.QB_type = {qb_type!r} is not a projector fvq-convert knows, and the "
                    "attention heads of a bridge cannot be read from its tensors. Pass --bridge-num-heads if it is a "
                    f"VQBridge. {error}"
                ) from None
            unknown_name = True
    elif qb_type is not None:
        raise ConversionError(f"{source.path!r}: args.QB_type is a {type(qb_type).__name__}, not a projector name")
    if named is not None and named != found:
        have = {
            "none": "no projector weights",
            "linear": "one Linear",
            "mlp": "a 5-layer MLP",
            "vqbridge": "a VQBridge",
        }
        raise ConversionError(
            f"{source.path!r}: args.QB_type = {qb_type!r} names a {named!r} projector "
            f"but the weights hold {have[found]}"
        )
    if found == "none":
        return "FVQ without a projector (Qbridge-none): a plain codebook"
    if found in ("linear", "mlp"):
        config["projector"] = found
        if found == "mlp":
            layers = _count(state, r"quantize\.qbridge\.linear_5\.(\d+)\.weight")
            if layers != 5:
                raise ConversionError(
                    f"{source.path!r}: the Qbridge-lin/5 baseline has 5 Linear layers, this one {layers}"
                )
        return (
            "FVQ with the "
            + ("single-Linear (Qbridge-lin/1)" if found == "linear" else "5-layer MLP (Qbridge-lin/5)")
            + " projector baseline"
        )
    proj = state[f"{q}x_embedder.proj.weight"]  # (hidden, d, p, p)
    hidden, patch = proj.shape[0], proj.shape[-1]
    depth = _count(state, r"quantize\.qbridge\.blocks\.(\d+)\.")
    mlp_ratio = state[f"{q}blocks.0.mlp.fc1.weight"].shape[0] / hidden
    dit = f"{q}pos_embed" in state
    if preset is not None:
        seen = {"hidden_size": hidden, "patch_size": patch, "depth": depth, "mlp_ratio": mlp_ratio}
        wrong = [f"{k} {preset[k]} (tensors: {v})" for k, v in seen.items() if preset[k] != v]
        if wrong:
            raise ConversionError(
                f"{source.path!r}: args.QB_type = {qb_type!r} means {', '.join(wrong)}; the file is inconsistent"
            )
    if heads_override is not None:
        heads, heads_from = (
            heads_override,
            "--bridge-num-heads" + (f"; args.QB_type {qb_type!r} is not an official name" if unknown_name else ""),
        )
    elif preset is not None:
        heads, heads_from = preset["num_heads"], f"QB_type {qb_type}"
    else:
        heads, heads_from = (
            BRIDGE_NUM_HEADS,
            "no QB_type in the args: assumed, as in every official preset; override with --bridge-num-heads",
        )
    config.update(
        projector="vqbridge",
        bridge_flavour="dit" if dit else "vit",
        bridge_patch_size=patch,
        bridge_hidden_size=hidden,
        bridge_num_heads=heads,
        bridge_depth=depth,
        bridge_mlp_ratio=mlp_ratio,
    )
    layout = (
        f"FVQ with a {'DiT' if dit else 'ViT'}-flavoured VQBridge (p = {patch}, hidden {hidden}, "
        f"{heads} heads ({heads_from}), depth {depth})"
    )
    if dit:
        rows = state[f"{q}y_embedder.embedding_table.weight"].shape[0]
        config["bridge_num_condition_embeddings"] = rows
        # the official conversion to a plain codebook computes the bridge for label 1000, the null class of a
        # 1,001-row (class-conditional) table; a 1-row (unconditional) bridge only has row 0
        index = overrides.get("bridge_condition_index", rows - 1 if rows > 1 else 0)
        config["bridge_condition_index"] = index
        layout += f"; condition row {index} of {rows}" + (
            " (the null class, as the official conversion folds it)" if rows > 1 and index == rows - 1 else ""
        )
    return layout


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
    if key.startswith("quantize.qbridge.linear_5."):  # the official 5-layer MLP baseline's Sequential
        return "quantize.projector.net." + key[len("quantize.qbridge.linear_5.") :]
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


def convert_state_dict(
    state: dict[str, torch.Tensor], model: FVQModel
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
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
    result: ConversionResult,
    output_dir: str | os.PathLike,
    to: str = "fvq",
    fold: bool = True,
    repo_id: str | None = None,
):
    """Write the converted model (FVQModel folder, folded or not, or a diffusers VQModel folder) with a model card."""
    if to not in ("fvq", "diffusers"):
        raise ValueError(f"--to must be 'fvq' or 'diffusers', got {to!r}")
    model = result.model
    c = model.config
    names = {"vqbridge": "VQBridge", "linear": "projector (Linear)", "mlp": "projector (5-layer MLP)"}
    if to == "diffusers":
        out = model.to_diffusers()
        saved_as = (
            f"a diffusers `VQModel` ({names[c.projector]} folded into the codebook)"
            if c.projector != "none"
            else "a diffusers `VQModel`"
        )
        usage = (
            f'from diffusers import VQModel\n\nvq = VQModel.from_pretrained("{repo_id or output_dir}")\n'
            "reconstruction = vq.decode(vq.encode(images).latents).sample"
        )
        library = "diffusers"
    else:
        out = model.fold() if fold else model
        saved_as = "an `FVQModel`, " + (
            "folded: one plain codebook, no projector"
            if out.config.folded or c.projector == "none"
            else f"unfolded: raw codebook + {names[c.projector]}, ready to fine-tune"
        )
        usage = (
            f'from fvq_hf import FVQModel\n\nmodel = FVQModel.from_pretrained("{repo_id or output_dir}")\n'
            "indices = model.encode_indices(images)      # (B, H/f, W/f)\n"
            "reconstruction = model.decode_indices(indices)"
        )
        library = "fvq_hf"
    out.save_pretrained(output_dir)

    downsample = model.downsample_factor
    folded_now = to == "diffusers" or fold
    condition_row = None
    if c.projector == "vqbridge":
        projector = (
            f"VQBridge, {c.bridge_flavour} flavour, p = {c.bridge_patch_size}, hidden {c.bridge_hidden_size}, "
            f"heads {c.bridge_num_heads}, depth {c.bridge_depth}"
        )
        note = (
            "The bridge was applied once to the raw codebook; the saved codebook is its output." if folded_now else ""
        )
        if c.bridge_flavour == "dit":
            rows, index = c.bridge_num_condition_embeddings, c.bridge_condition_index
            condition_row = f"row {index} of the {rows}-row label table" + (
                " (the null class, the row the official conversion folds with)"
                if rows > 1 and index == rows - 1
                else " (its only row)"
                if rows == 1
                else ""
            )
            note += f" The bridge is computed with {condition_row}." if note else ""
    elif c.projector in ("linear", "mlp"):
        projector = (
            "one Linear(d, d) per code (Qbridge-lin/1)" if c.projector == "linear" else "5-layer MLP (Qbridge-lin/5)"
        )
        note = (
            "The projector was applied once to the raw codebook; the saved codebook is its output."
            if folded_now
            else ""
        )
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
        source_args={
            k: v
            for k, v in result.source.args.items()
            if k
            in (
                "codebook_size",
                "codebook_embed_dim",
                "QB_type",
                "codebook_l2_norm",
                "is_uncondition",
                "num_classes",
                "vq_model",
                "image_size",
            )
        },
        ignored_keys=result.ignored_keys,
        saved_as=saved_as,
        downsample=downsample,
        tokens=f"{c.sample_size // downsample} × {c.sample_size // downsample}",
        sample_size=c.sample_size,
        codebook_size=f"{c.codebook_size:,}",
        codebook_dim=c.codebook_dim,
        l2_normalize=c.l2_normalize,
        codebook_init_l2=c.codebook_init_l2,
        projector=projector,
        condition_row=condition_row,
        block_out_channels=tuple(c.block_out_channels),
        layers_per_block=c.layers_per_block,
        projector_note=note.strip(),
        usage=usage,
    )
    card.save(os.path.join(output_dir, "README.md"))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fvq-convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "src", help="official FVQ / LlamaGen tokenizer, or LlamaGen c2i GPT, checkpoint (.pt, .pth, .safetensors)"
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
    gpt.add_argument("--num-heads", type=int, default=None, help="the GPT's attention heads (default: from args)")
    return parser.parse_args(argv)


def _convert_gpt(args, raw) -> None:
    import json

    from .convert_gpt import convert_gpt_checkpoint, describe_conversion, save_converted_gpt

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


def main(argv: list[str] | None = None) -> None:
    from .convert_gpt import is_gpt_state
    from .hub import push_folder

    args = parse_args(argv)
    try:
        raw, fmt = read_checkpoint_file(args.src)
        weights = split_container(args.src, raw)[0]
        if is_gpt_state(weights):
            _convert_gpt(args, raw)
        else:
            result = convert_checkpoint(_pick_weights(args.src, raw, fmt), **_tokenizer_overrides(args))
            save_converted(result, args.dst, to=args.to, fold=args.fold, repo_id=args.push_to_hub)
            print(f"read {args.src} ({result.source.weights_key} weights): {result.layout}")
            print(
                f"carried over {len(result.consumed_keys)} keys"
                + (f"; skipped {', '.join(result.ignored_keys)} (not weights)" if result.ignored_keys else "")
            )
            print(f"wrote {'a diffusers VQModel' if args.to == 'diffusers' else 'an FVQModel'} to {args.dst}")
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


if __name__ == "__main__":
    main()
