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

import os
import re
from dataclasses import dataclass, field

import torch

from ..hub.converted_cards import converted_tokenizer_card
from ..models import FVQModel
from ..models.fvq_model import _block_types
from ..quantization.projectors import parse_official_projector
from ..quantization.vqbridge import BRIDGE_NUM_HEADS
from .checkpoint import ConversionError, match_keys, pick_weights, read_checkpoint_file

# buffers of the official layout that are state, not weights: read and reported, never carried over
IGNORED_KEYS = ("quantize.codebook_used",)
# what makes a state dict a tokenizer's: the keys every FVQ / LlamaGen VQGAN has
TOKENIZER_KEYS = {
    "encoder.conv_in.weight": "the encoder's first convolution",
    "quantize.embedding.weight": "the codebook",
}
_ATTN_NAMES = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


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
    """Read a tokenizer checkpoint safely (see :func:`~fvq_hf.convert.checkpoint.read_checkpoint_file`)."""
    raw, fmt = read_checkpoint_file(path)
    return pick_tokenizer_weights(os.fspath(path), raw, fmt)


def pick_tokenizer_weights(path: str, raw, fmt: str) -> SourceCheckpoint:
    """The tokenizer weights of a file's content (see :func:`~fvq_hf.convert.checkpoint.pick_weights`)."""
    state, weights_key, args, steps = pick_weights(path, raw, TOKENIZER_KEYS, "an FVQ or LlamaGen tokenizer")
    return SourceCheckpoint(path, state, args, weights_key, steps, fmt)


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
    renamed, ignored, unknown = {}, [], []
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
        renamed[new] = (key, tensor)
    converted = match_keys(
        model.state_dict(),
        renamed,
        unknown,
        "the checkpoint",
        " (override the config with flags if the inference is wrong)",
    )
    return converted, [source for source, _ in renamed.values()], ignored


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
    """Write the converted model (FVQModel folder, folded or not, or a diffusers VQModel folder) with a model card
    (:func:`fvq_hf.hub.converted_cards.converted_tokenizer_card`)."""
    if to not in ("fvq", "diffusers"):
        raise ValueError(f"--to must be 'fvq' or 'diffusers', got {to!r}")
    output_dir = os.fspath(output_dir)
    if to == "diffusers":
        out = result.model.to_diffusers()
    else:
        out = result.model.fold() if fold else result.model
    out.save_pretrained(output_dir)
    card = converted_tokenizer_card(result, out, output_dir, to=to, repo_id=repo_id)
    card.save(os.path.join(output_dir, "README.md"))
    return out
