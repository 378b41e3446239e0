"""Convert LlamaGen's class-conditional GPT checkpoints into FVQTransformer folders, and assemble pipelines.

    fvq-convert c2i_L_256.pt llamagen-gpt-l                                     # an FVQTransformer folder
    fvq-convert c2i_L_256.pt llamagen-c2i-l --tokenizer vq_ds16_c2i.pt --l2-normalize   # a whole FVQPipeline

Reads ``{"model" | "module" | "state_dict" [, "ema"], "args", "steps"}`` (EMA weights preferred) or a bare state
dict, with the same safe loading as the tokenizer converter. LlamaGen's key names are the FVQTransformer's, so
the weights load with ``strict=True``; the rotary table (``freqs_cis``) and KV-cache buffers some files carry are
read, reported and dropped. The config comes from the tensors (width, layers, vocabulary, classes, SwiGLU width,
key/value heads); the attention heads, which the tensors do not show, from ``--num-heads``, else from the model
named in ``args.gpt_model``, else from width and depth, which tell every model of LlamaGen's ``GPT_models`` apart
(the released ``c2i_XXL_384.pt`` and ``c2i_3B_384.pt`` are bare state dicts that name no model); any other model
needs ``--num-heads``. The token grid (16 × 16 at 256 px, 24 × 24 at 384 px) from ``freqs_cis`` when present, else from ``args.image_size /
args.downsample_size``, else from ``--image-size``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources

from ..generation import FVQPipeline
from ..hub.converted_cards import converted_transformer_card
from ..models.fvq_transformer import TRANSFORMER_PRESETS, FVQTransformer, swiglu_hidden_size
from .checkpoint import ConversionError, match_keys, pick_weights, read_checkpoint_file, strip_wrapper_prefix

# buffers a LlamaGen file may hold that are state of a sampling run, not weights
_DROPPED = re.compile(r"(^|\.)freqs_cis$|\.kv_cache\.(k|v)_cache$|(^|\.)causal_mask$")
# what LlamaGen's train_c2i.py saves in args, and the FVQTransformer field each one sets
_ARG_FIELDS = {
    "token_dropout_p": "token_dropout_p",
    "dropout_p": "resid_dropout_p",
    "drop_path_rate": "drop_path_rate",
    "class_dropout_prob": "class_dropout_prob",
}
# every model of LlamaGen's GPT_models (autoregressive/models/gpt.py): the presets fvq_hf has, and the three
# larger ones it does not; GPT-3B's 32 heads of 100 dims are the reason heads are never guessed from the width
LLAMAGEN_GPT_MODELS: dict[str, dict] = {
    **{name: preset for name, preset in TRANSFORMER_PRESETS.items() if name.startswith("GPT-")},
    "GPT-1B": {"n_layer": 22, "n_head": 32, "dim": 2048},
    "GPT-3B": {"n_layer": 24, "n_head": 32, "dim": 3200},
    "GPT-7B": {"n_layer": 32, "n_head": 32, "dim": 4096},
}
# what makes a state dict a class-conditional GPT's
GPT_KEYS = {
    "tok_embeddings.weight": "the token embedding",
    "cls_embedding.embedding_table.weight": "the class embedding",
}
# LlamaGen's sample_c2i.py defaults (the FVQ paper samples its GPT-L with guidance 1.75 instead)
LLAMAGEN_SAMPLING = {"guidance_scale": 4.0, "top_k": 2000, "top_p": 1.0, "temperature": 1.0}


@dataclass
class TransformerConversion:
    """What a GPT conversion did."""

    model: FVQTransformer
    source_path: str
    weights_key: str
    args: dict
    steps: int | None
    dropped_keys: list[str] = field(default_factory=list)
    grid_from: str = ""
    heads_from: str = ""


def imagenet_id2label() -> dict[int, str]:
    """The 1,000 ImageNet class names, synonyms separated by commas, as LlamaGen and DiT number them."""
    text = (resources.files("fvq_hf.generation") / "imagenet_classes.json").read_text(encoding="utf-8")
    return {int(k): v for k, v in json.loads(text).items()}


def is_gpt_state(state: dict) -> bool:
    return any(strip_wrapper_prefix(k) == "tok_embeddings.weight" for k in state)


def attention_heads(dim: int, n_layer: int, args: dict, num_heads: int | None = None) -> tuple[int, str]:
    """A LlamaGen GPT's attention heads, and where they came from: ``num_heads`` (``--num-heads``), else the model
    ``args.gpt_model`` names, else the one model of ``LLAMAGEN_GPT_MODELS`` with this width and depth."""
    if num_heads is not None:
        if num_heads < 1 or dim % num_heads:
            raise ConversionError(f"--num-heads {num_heads} does not divide the width {dim} into whole heads")
        return num_heads, "--num-heads"
    table = ", ".join(f"{n} {p['n_layer']} × {p['dim']}" for n, p in LLAMAGEN_GPT_MODELS.items())
    named = args.get("gpt_model")
    if named in LLAMAGEN_GPT_MODELS:
        preset = LLAMAGEN_GPT_MODELS[named]
        if (preset["dim"], preset["n_layer"]) != (dim, n_layer):
            raise ConversionError(
                f"args.gpt_model is {named!r}, {preset['n_layer']} layers × {preset['dim']} wide, but the tensors "
                f"hold {n_layer} × {dim}: the file is inconsistent; pass --num-heads (the model's attention heads) "
                "if you know them"
            )
        return preset["n_head"], f"args.gpt_model {named}"
    shaped = [name for name, p in LLAMAGEN_GPT_MODELS.items() if (p["dim"], p["n_layer"]) == (dim, n_layer)]
    if shaped:
        return LLAMAGEN_GPT_MODELS[shaped[0]]["n_head"], f"{shaped[0]}, recognised by its width and depth"
    said = f"args.gpt_model is {named!r}, not one of them" if named else "the file names no model (args.gpt_model)"
    raise ConversionError(
        f"a GPT of {n_layer} layers × {dim} wide is none of LlamaGen's GPT_models ({table}) and {said}: the "
        "attention heads cannot be read from the tensors, so pass --num-heads (the model's attention heads)"
    )


def infer_transformer_config(
    state: dict, args: dict, image_size: int | None = None, num_heads: int | None = None
) -> tuple[dict, str, str]:
    """The FVQTransformer config of a LlamaGen state dict, where the token grid came from and where the heads did."""
    vocab, dim = state["tok_embeddings.weight"].shape
    rows = state["cls_embedding.embedding_table.weight"].shape[0]
    layers = sorted({int(m[1]) for k in state if (m := re.match(r"layers\.(\d+)\.", k))})
    if layers != list(range(len(layers))) or not layers:
        raise ConversionError(f"the checkpoint's transformer layers are not numbered 0 … n−1: {layers[:10]}")
    heads, heads_from = attention_heads(dim, len(layers), args, num_heads)
    head_dim = dim // heads
    qkv_rows = state["layers.0.attention.wqkv.weight"].shape[0]
    kv_heads = (qkv_rows // head_dim - heads) // 2
    if kv_heads <= 0 or (heads + 2 * kv_heads) * head_dim != qkv_rows:
        raise ConversionError(
            f"wqkv has {qkv_rows} rows, which no split into {heads} query heads of {head_dim} dims fits "
            f"({heads_from}): pass --num-heads (the model's attention heads)"
        )
    hidden = state["layers.0.feed_forward.w1.weight"].shape[0]
    multiple_of = 256 if swiglu_hidden_size(dim, 256) == hidden else hidden  # rounding up to itself gives hidden
    if swiglu_hidden_size(dim, multiple_of) != hidden:
        raise ConversionError(f"SwiGLU width {hidden} is below LlamaGen's int(8·{dim}/3): not a LlamaGen GPT")
    if "freqs_cis" in state:
        grid, source = math.isqrt(state["freqs_cis"].shape[0] - 1), "freqs_cis"
    elif image_size or ("image_size" in args and "downsample_size" in args):
        size = image_size or args["image_size"]
        grid = size // int(args.get("downsample_size", 16))
        source = "--image-size" if image_size else "args.image_size / args.downsample_size"
    else:
        raise ConversionError(
            "the token grid is not in this file (no freqs_cis, no args.image_size): pass --image-size "
            "(256 for LlamaGen's c2i_*_256.pt files, 384 for c2i_*_384.pt) with the tokenizer's 16× downsampling"
        )
    if int(args.get("cls_token_num", 1)) != 1:
        raise ConversionError(f"args.cls_token_num is {args['cls_token_num']}: class-conditional GPTs use 1")
    config = {
        "vocab_size": vocab,
        "num_classes": rows - 1,
        "block_size": grid * grid,
        "dim": dim,
        "n_layer": len(layers),
        "n_head": heads,
        "n_kv_head": None if kv_heads == heads else kv_heads,
        "multiple_of": multiple_of,
    }
    for arg, name in _ARG_FIELDS.items():
        if isinstance(args.get(arg), (int, float)):
            config[name] = float(args[arg])
    if "resid_dropout_p" in config:
        config["ffn_dropout_p"] = config["resid_dropout_p"]  # LlamaGen's --dropout-p sets both
    return config, f"{grid} × {grid} from {source}", heads_from


def convert_gpt_checkpoint(
    path: str | os.PathLike, image_size: int | None = None, num_heads: int | None = None, raw=None
) -> TransformerConversion:
    """Build an ``FVQTransformer`` holding a LlamaGen c2i GPT checkpoint's weights (every key accounted for);
    ``raw`` is the file's content when it was already read with :func:`read_checkpoint_file`."""
    path = os.fspath(path)
    if raw is None:
        raw, _ = read_checkpoint_file(path)
    state, weights_key, args, steps = pick_weights(
        path,
        raw,
        GPT_KEYS,
        "a LlamaGen class-conditional GPT",
        " (a text-conditional t2i model has a caption embedder instead)",
    )
    dropped = sorted(k for k in state if _DROPPED.search(k))
    config, grid_from, heads_from = infer_transformer_config(state, args, image_size, num_heads)
    model = FVQTransformer(**config)
    weights = match_keys(
        model.state_dict(), {k: (k, v) for k, v in state.items() if k not in dropped}, [], "the GPT checkpoint"
    )
    model.load_state_dict(weights, strict=True)
    return TransformerConversion(model.eval(), path, weights_key, args, steps, dropped, grid_from, heads_from)


def describe_conversion(result: TransformerConversion) -> str:
    c = result.model.config
    grid = math.isqrt(c.block_size)
    dropped = f"; dropped {', '.join(result.dropped_keys)}" if result.dropped_keys else ""
    return (
        f"{os.path.basename(result.source_path)} [{result.weights_key}]: {c.n_layer} layers × {c.dim} wide, "
        f"{c.n_head} heads ({result.heads_from}), {c.vocab_size} codes, {c.num_classes} classes, {grid} × {grid} tokens "
        f"({result.grid_from}){dropped}"
    )


def save_converted_gpt(
    result: TransformerConversion,
    output_dir: str | os.PathLike,
    tokenizer=None,
    tokenizer_name: str | None = None,
    id2label: dict[int, str] | None = None,
    repo_id: str | None = None,
) -> str:
    """Write the transformer folder, or with ``tokenizer`` (an ``FVQModel``) a whole ``FVQPipeline`` folder, with a
    model card naming the source. ImageNet class names are used for a 1,000-class model unless ``id2label``."""
    output_dir = os.fspath(output_dir)
    model = result.model
    imagenet = id2label is None and model.config.num_classes == 1000
    if imagenet:
        id2label = imagenet_id2label()
    if tokenizer is not None:
        target = FVQPipeline(
            vqvae=tokenizer, transformer=model, id2label=id2label or {}, sampling_defaults=LLAMAGEN_SAMPLING
        )
    else:
        target = model
    target.save_pretrained(output_dir)
    card = converted_transformer_card(
        result,
        output_dir,
        sampling=LLAMAGEN_SAMPLING,
        tokenizer_name=tokenizer_name,
        pipeline=tokenizer is not None,
        imagenet=imagenet,
        id2label=id2label,
        repo_id=repo_id,
    )
    card.save(os.path.join(output_dir, "README.md"))
    return output_dir
