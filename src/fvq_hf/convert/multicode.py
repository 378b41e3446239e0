"""Convert official multi-code tokenizer checkpoints into ``MultiCodeFVQModel`` folders.

    fvq-convert rqvae_last.pt fvq-rq --quantizer residual          # FVQ's RQ-VAE (depth 4 unless --rq-depth)
    fvq-convert var_last.pt fvq-var                                 # FVQ's VAR tokenizer, recognised by its tensors
    fvq-convert vae_ch160v4096z32.pth var-original                  # VAR's own released tokenizer (a bare state dict)

Three sources:

- FVQ's RQ-VAE trainer writes the same tensors and the same ``args`` as the single-code trainer: its depth is a
  constant of the model code, so nothing in the file says "residual". ``--quantizer residual`` says it, and the
  depth is 4 unless ``--rq-depth`` gives another. Its bridge runs unconditionally (``is_uncondition``; the code has
  no other path), so a class-conditional label table or a ViT-flavoured bridge means a single-code file.
- FVQ's VAR trainer and VAR's release share VAR's layout (``encoder.down.*`` blocks with fused ``qkv`` attention,
  ``quantize.quant_resi.*`` φ convolutions, 3 × 3 ``quant_conv``), with or without ``quantize.qbridge``; these are
  recognised by their tensors. The number of scales is the row count of the ``quantize.ema_vocab_hit_SV`` usage
  buffer, and ten rows are VAR's scales; other counts need ``--scales``. VAR's φ sharing (4 φ over the scales,
  one, or one per scale) is read from the ``quant_resi`` keys; its ratio is not in the file and is VAR's 0.5.

Usage buffers (``codebook_used``, ``ema_vocab_hit_SV``) are read and reported, never carried over; every other key
is carried over or stops the conversion with its name, as in :mod:`.tokenizer`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise

import torch

from ..models import MultiCodeFVQModel
from ..quantization.multiscale_quantizer import VAR_SCALES
from .checkpoint import ConversionError, match_keys
from .tokenizer import ConversionResult, SourceCheckpoint, _count, _infer_projector, convert_state_dict, infer_config

QUANTIZER_CHOICES = ("single", "residual", "multiscale")
# what marks VAR's layout: the φ convolutions, the usage buffer, or VAR's encoder blocks
VAR_MARKERS = ("quantize.quant_resi.", "quantize.ema_vocab_hit_SV", "encoder.down.")
VAR_IGNORED_KEYS = ("quantize.ema_vocab_hit_SV", "quantize.codebook_used")
RQ_DEFAULT_DEPTH = 4
_VAR_ATTN = {"norm": "group_norm", "proj_out": "to_out.0"}
_VAR_MID = {"block_1": "resnets.0", "attn_1": "attentions.0", "block_2": "resnets.1"}


def is_var_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict has VAR's layout (FVQ's VAR tokenizer or VAR's own release)."""
    return any(key.startswith(VAR_MARKERS) for key in state)


def could_be_rqvae(source: SourceCheckpoint) -> bool:
    """Whether an FVQ checkpoint of the single-code layout could have been written by the RQ-VAE trainer: FVQ's
    (a bridge or ``args.QB_type``) with a bridge that runs unconditionally (the only path of the RQ-VAE code)."""
    state, q = source.state_dict, "quantize.qbridge."
    if not (any(k.startswith(q) for k in state) or source.args.get("QB_type") is not None):
        return False
    if source.args.get("is_uncondition") is False:
        return False  # the RQ-VAE's forward has no conditional path: it cannot have trained without the flag
    if f"{q}x_embedder.proj.weight" in state and f"{q}pos_embed" not in state:
        return False  # ViT-flavoured: the RQ-VAE code builds the DiT-flavoured bridge
    table = state.get(f"{q}y_embedder.embedding_table.weight")
    return table is None or table.shape[0] == 1


def parse_scales(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``--scales``: a comma list such as ``1,2,3,4,5,6,8,10,13,16`` (or a sequence of ints); ``None`` stays."""
    if text is None:
        return None
    try:
        scales = tuple(int(s) for s in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise ConversionError(
            f"--scales must be a comma list of token-map sides, e.g. {','.join(map(str, VAR_SCALES))}; got {text!r}"
        ) from None
    if len(scales) < 2 or any(s < 1 for s in scales) or any(a >= b for a, b in pairwise(scales)):
        raise ConversionError(
            f"--scales must be at least two strictly increasing positive sides, the last the latent side "
            f"(VAR's: {','.join(map(str, VAR_SCALES))}); got {text!r}"
        )
    return scales


# ----------------------------------------------------------------------------------------------- RQ-VAE
def convert_residual_checkpoint(source: SourceCheckpoint, rq_depth: int | None = None, **overrides) -> ConversionResult:
    """Build an unfolded residual ``MultiCodeFVQModel`` from an official FVQ RQ-VAE checkpoint.

    Args:
        source: the checkpoint read by :func:`~fvq_hf.convert.tokenizer.load_checkpoint`; its layout is the
            single-code one, which is why the caller has to say that it is an RQ-VAE.
        rq_depth: codes per position; ``None`` is the official code's constant, 4.
        overrides: config overrides as for :func:`~fvq_hf.convert.tokenizer.infer_config`.
    """
    depth = RQ_DEFAULT_DEPTH if rq_depth is None else rq_depth
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ConversionError(f"--rq-depth must be a positive integer (the official RQ-VAE's is 4), got {depth!r}")
    if is_var_state(source.state_dict):
        raise ConversionError(
            f"{source.path!r} has VAR's layout (encoder.down.*, quantize.quant_resi.*): it is a multi-scale "
            "tokenizer, not an RQ-VAE. Convert it with --quantizer multiscale (or without --quantizer)."
        )
    if source.args.get("is_uncondition") is False:
        raise ConversionError(
            f"{source.path!r}: args.is_uncondition = False, but the official RQ-VAE's forward pass only runs with "
            "--is_uncondition (it has no conditional path), so it cannot have trained this file: this looks like a "
            "single-code checkpoint. Convert it without --quantizer residual."
        )
    q = "quantize.qbridge."
    if f"{q}x_embedder.proj.weight" in source.state_dict and f"{q}pos_embed" not in source.state_dict:
        raise ConversionError(
            f"{source.path!r} holds a ViT-flavoured VQBridge, but the official RQ-VAE builds the DiT-flavoured one: "
            "this looks like a single-code checkpoint. Convert it without --quantizer residual."
        )
    table = source.state_dict.get(f"{q}y_embedder.embedding_table.weight")
    if table is not None and table.shape[0] > 1 and overrides.get("bridge_condition_index") is None:
        raise ConversionError(
            f"{source.path!r} holds a class-conditional bridge ({table.shape[0]}-row label table), but the official "
            "RQ-VAE only runs its bridge unconditionally (is_uncondition, a 1-row table): this looks like a "
            "single-code checkpoint. Convert it without --quantizer residual, or pick the row with "
            "--bridge-condition-index."
        )
    config, layout = infer_config(source, **overrides)
    if config.pop("l2_normalize"):
        raise ConversionError(
            f"{source.path!r}: cosine lookup (LlamaGen's codebook_l2_norm, or --l2-normalize) is not part of the "
            "residual quantizer, whose lookup is plain L2 at every depth as in FVQ's RQ-VAE. Drop --l2-normalize; "
            "a LlamaGen tokenizer is single-code (convert it without --quantizer residual)."
        )
    config.pop("codebook_init_l2")  # an init-time option: the layout says it, the weights are what they are
    model = MultiCodeFVQModel(**config, quantizer="residual", rq_depth=depth, codebook_init_std=None)
    converted, consumed, ignored = convert_state_dict(source.state_dict, model)
    model.load_state_dict(converted, strict=True)
    layout = (
        f"FVQ RQ-VAE (residual quantizer, depth {depth}"
        + (", the official constant" if rq_depth is None else ", from --rq-depth")
        + f"): {layout}"
    )
    return ConversionResult(model.eval(), layout, consumed, ignored, source)


# ----------------------------------------------------------------------------------------------- VAR
def _var_resnet(rest: str) -> str:
    return rest.replace("nin_shortcut.", "conv_shortcut.")


def _var_attention(prefix: str, rest: str, tensor: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """One VAR attention key → the diffusers keys (fused ``qkv`` is split into ``to_q``, ``to_k``, ``to_v``; VAR's
    1 × 1 convolutions become Linear weights)."""
    name, param = rest.split(".", 1)
    if name == "qkv":
        if param == "weight" and tensor.ndim == 4:
            tensor = tensor[:, :, 0, 0]
        if tensor.shape[0] % 3:
            raise KeyError(rest)
        return [(f"{prefix}.to_{part}.{param}", chunk) for part, chunk in zip("qkv", tensor.chunk(3, dim=0))]
    if name not in _VAR_ATTN:
        raise KeyError(rest)
    if name == "proj_out" and param == "weight" and tensor.ndim == 4:
        tensor = tensor[:, :, 0, 0]
    return [(f"{prefix}.{_VAR_ATTN[name]}.{param}", tensor)]


def rename_var_key(key: str, tensor: torch.Tensor, levels: int) -> list[tuple[str, torch.Tensor]] | None:
    """The fvq_hf names (and tensors) of one VAR-layout key; ``None`` for a skipped buffer.

    ``levels`` is the number of resolutions: VAR numbers its decoder levels from the highest resolution, diffusers
    from the lowest. Raises ``KeyError`` for a key the layout does not have.
    """
    if key in VAR_IGNORED_KEYS:
        return None
    if key == "quantize.embedding.weight" or re.fullmatch(r"(post_)?quant_conv\.(weight|bias)", key):
        return [(key, tensor)]
    if key.startswith("quantize.qbridge.linear_5."):
        return [("quantize.projector.net." + key[len("quantize.qbridge.linear_5.") :], tensor)]
    if key.startswith("quantize.qbridge."):
        return [("quantize.projector." + key[len("quantize.qbridge.") :], tensor)]
    # φ: 4 (or K) partially shared, one shared, or one per scale
    if m := re.fullmatch(r"quantize\.quant_resi\.(?:qresi_ls\.)?(\d+)\.(weight|bias)", key):
        return [(f"quantize.phi.{m[1]}.{m[2]}", tensor)]
    if m := re.fullmatch(r"quantize\.quant_resi\.qresi\.(weight|bias)", key):
        return [(f"quantize.phi.0.{m[1]}", tensor)]
    if re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)", key):
        return [(key, tensor)]
    if m := re.fullmatch(r"(encoder|decoder)\.norm_out\.(weight|bias)", key):
        return [(f"{m[1]}.conv_norm_out.{m[2]}", tensor)]
    if m := re.fullmatch(r"(encoder|decoder)\.mid\.(block_1|attn_1|block_2)\.(.+)", key):
        part, name, rest = m.groups()
        target = f"{part}.mid_block.{_VAR_MID[name]}"
        return _var_attention(target, rest, tensor) if name == "attn_1" else [(f"{target}.{_var_resnet(rest)}", tensor)]
    if m := re.fullmatch(r"(encoder\.down|decoder\.up)\.(\d+)\.(block|attn)\.(\d+)\.(.+)", key):
        where, level, kind, j, rest = m.groups()
        if where == "encoder.down":
            target = f"encoder.down_blocks.{level}"
        else:
            target = f"decoder.up_blocks.{levels - 1 - int(level)}"
        if kind == "block":
            return [(f"{target}.resnets.{j}.{_var_resnet(rest)}", tensor)]
        return _var_attention(f"{target}.attentions.{j}", rest, tensor)
    if m := re.fullmatch(r"encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)", key):
        return [(f"encoder.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}", tensor)]
    if m := re.fullmatch(r"decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)", key):
        return [(f"decoder.up_blocks.{levels - 1 - int(m[1])}.upsamplers.0.conv.{m[2]}", tensor)]
    raise KeyError(key)


def infer_var_config(source: SourceCheckpoint, scales: Sequence[int] | None = None, **overrides) -> tuple[dict, str]:
    """The ``MultiCodeFVQModel`` config of a VAR-layout checkpoint, and a description of its layout.

    Shapes come from the tensors; the scales from ``scales`` (``--scales``), else from the row count of
    ``quantize.ema_vocab_hit_SV`` (ten rows: VAR's scales); ``overrides`` win over the rest.
    """
    state, args, path = source.state_dict, source.args, source.path
    required = {
        "encoder.conv_in.weight": "the encoder's first convolution",
        "quantize.embedding.weight": "the codebook",
        "quant_conv.weight": "the quant convolution",
        "decoder.conv_out.weight": "the decoder's last convolution",
    }
    missing = [f"{k!r} ({what})" for k, what in required.items() if k not in state]
    if missing:
        raise ConversionError(f"{path!r} has VAR's layout but no {' and no '.join(missing)}")
    levels = _count(state, r"encoder\.down\.(\d+)\.block\.0\.conv1\.weight")
    if levels == 0:
        raise ConversionError(f"{path!r}: no encoder.down.*.block.0.conv1.weight keys; is this VAR's VQVAE?")
    codebook_size, codebook_dim = state["quantize.embedding.weight"].shape
    for arg, value, tensor_name in [
        ("codebook_size", codebook_size, "quantize.embedding.weight rows"),
        ("codebook_embed_dim", codebook_dim, "quantize.embedding.weight columns"),
    ]:
        if args.get(arg) is not None and int(args[arg]) != value:
            raise ConversionError(
                f"{path!r}: args.{arg} = {args[arg]} but {tensor_name} = {value}; the file is inconsistent"
            )

    # φ sharing: VAR's PhiPartiallyShared (qresi_ls.k), PhiShared (qresi) or PhiNonShared (k)
    partial = _count(state, r"quantize\.quant_resi\.qresi_ls\.(\d+)\.weight")
    shared = "quantize.quant_resi.qresi.weight" in state
    non_shared = _count(state, r"quantize\.quant_resi\.(\d+)\.weight")
    if sum(bool(n) for n in (partial, shared, non_shared)) != 1:
        raise ConversionError(
            f"{path!r}: the φ convolutions (quantize.quant_resi.*) are "
            + ("missing" if not (partial or shared or non_shared) else "of more than one sharing scheme")
            + ". fvq-convert reads VAR's 4 (or K) partially shared φ (qresi_ls.k), one shared φ (qresi) or one φ "
            "per scale (k); a φ-free quantizer (VAR's quant_resi = 0) is not supported."
        )
    num_phi = partial or non_shared or 1
    sharing = (
        f"{num_phi} φ shared over the scales"
        if partial
        else "one φ for every scale"
        if shared
        else f"{num_phi} non-shared φ"
    )

    hit = state.get("quantize.ema_vocab_hit_SV")
    rows = int(hit.shape[0]) if isinstance(hit, torch.Tensor) and hit.ndim == 2 else None
    if scales is not None:
        scales = tuple(scales)
        if rows is not None and rows != len(scales):
            raise ConversionError(
                f"{path!r}: --scales gives {len(scales)} scales but quantize.ema_vocab_hit_SV has {rows} rows, one "
                "per scale the tokenizer was trained with. Pass that many scales."
            )
        scales_from = "--scales"
    elif rows == len(VAR_SCALES):
        scales, scales_from = VAR_SCALES, f"VAR's, {rows} rows of quantize.ema_vocab_hit_SV"
    else:
        raise ConversionError(
            f"{path!r}: "
            + (
                f"quantize.ema_vocab_hit_SV has {rows} rows, one per scale"
                if rows
                else "no quantize.ema_vocab_hit_SV buffer"
            )
            + f", and VAR's default has {len(VAR_SCALES)} scales: pass the token-map sides the tokenizer was trained "
            "with, e.g. --scales 1,2,3,4,6,8"
        )
    if non_shared and non_shared != len(scales):
        # VAR's PhiNonShared: one φ per scale unless default_qresi_counts said otherwise; the table is the same rule
        sharing += f" (for {len(scales)} scales)"
    block_out = tuple(state[f"encoder.down.{i}.block.0.conv2.weight"].shape[0] for i in range(levels))
    kernel = state["quant_conv.weight"].shape[-1]
    downsample = 2 ** (levels - 1)
    sample_size = scales[-1] * downsample
    if args.get("image_size") and int(args["image_size"]) != sample_size:
        raise ConversionError(
            f"{path!r}: args.image_size = {args['image_size']} is {int(args['image_size']) // downsample} latent "
            f"positions a side at {downsample}× downsampling, but the last scale is {scales[-1]}: pass --scales "
            "ending at the latent side"
        )
    down = ("DownEncoderBlock2D",) * (levels - 1) + ("AttnDownEncoderBlock2D",)
    up = ("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * (levels - 1)
    config = {
        "in_channels": state["encoder.conv_in.weight"].shape[1],
        "out_channels": state["decoder.conv_out.weight"].shape[0],
        "block_out_channels": block_out,
        "down_block_types": down,
        "up_block_types": up,
        "layers_per_block": _count(state, r"encoder\.down\.0\.block\.(\d+)\.conv1\.weight"),
        "latent_channels": state["encoder.conv_out.weight"].shape[0],
        "sample_size": sample_size,
        "quantizer": "multiscale",
        "codebook_size": codebook_size,
        "codebook_dim": codebook_dim,
        "scales": scales,
        "num_phi": num_phi,
        "quant_conv_kernel_size": kernel,
        "codebook_init_std": 1.0,
        "projector": "none",
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.pop("l2_normalize", None):
        raise ConversionError(
            "--l2-normalize: VAR's cosine lookup (using_znorm) is not supported by the multi-scale quantizer, and "
            "neither VAR's release nor FVQ's VAR trainer uses it. Drop the flag."
        )
    overrides.pop("codebook_init_l2", None)  # an init-time option, meaningless for converted weights
    is_fvq = any(k.startswith("quantize.qbridge.") for k in state) or args.get("QB_type") is not None
    if is_fvq:
        projector = _infer_projector(source, config, args.get("QB_type"), overrides)
        head = f"FVQ VAR tokenizer ({projector})"
    else:
        head = "VAR's own tokenizer (VAR's VQVAE, a plain codebook)"
    layout = (
        f"{head}; multi-scale quantizer, scales {','.join(map(str, scales))} ({scales_from}), {sharing}, "
        f"φ ratio 0.5 (VAR's quant_resi; not recorded in the file), {kernel} × {kernel} quant convolutions"
    )
    config.update(overrides)
    return config, layout


def convert_var_checkpoint(
    source: SourceCheckpoint, scales: Sequence[int] | None = None, **overrides
) -> ConversionResult:
    """Build an unfolded multi-scale ``MultiCodeFVQModel`` from FVQ's VAR tokenizer or VAR's own release.

    Args:
        source: the checkpoint read by :func:`~fvq_hf.convert.tokenizer.load_checkpoint` (a training checkpoint or
            a bare state dict).
        scales: the token-map sides; ``None`` reads their number from the checkpoint (see :func:`infer_var_config`).
        overrides: config overrides (``norm_num_groups``, ``bridge_num_heads``, ``bridge_condition_index``, …).
    """
    config, layout = infer_var_config(source, scales, **overrides)
    levels = len(config["block_out_channels"])
    model = MultiCodeFVQModel(**config)
    renamed, ignored, unknown = {}, [], []
    for key, tensor in source.state_dict.items():
        try:
            names = rename_var_key(key, tensor, levels)
        except KeyError:
            unknown.append(key)
            continue
        if names is None:
            ignored.append(key)
            continue
        for name, value in names:
            renamed[name] = (key, value)
    converted = match_keys(
        model.state_dict(),
        renamed,
        unknown,
        "the checkpoint",
        " (override the config with flags if the inference is wrong)",
    )
    model.load_state_dict(converted, strict=True)
    consumed = list(dict.fromkeys(source for source, _ in renamed.values()))
    return ConversionResult(model.eval(), layout, consumed, ignored, source)
