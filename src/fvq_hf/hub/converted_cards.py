"""Model cards of converted checkpoints: what ``fvq-convert`` writes beside an official tokenizer or LlamaGen GPT
it converted (templates ``model_cards/converted_tokenizer.md`` and ``converted_transformer.md``).

A card names its source file, the weights read, what was inferred from the tensors and what was dropped, so the
folder says where it came from without the file at hand. The converters (``fvq_hf.convert``) build the models and
call these; the cards only read what a conversion returned.
"""

from __future__ import annotations

import math
import os

from huggingface_hub import ModelCard, ModelCardData

from .model_card import projector_description, quantizer_description, render_model_card
from .push import default_repo_id

# the official args worth repeating in a tokenizer's card
_TOKENIZER_ARGS = (
    "codebook_size",
    "codebook_embed_dim",
    "QB_type",
    "codebook_l2_norm",
    "is_uncondition",
    "num_classes",
    "vq_model",
    "image_size",
)


def converted_tokenizer_card(result, saved, output_dir: str, to: str, repo_id: str | None = None) -> ModelCard:
    """The card of a converted tokenizer: ``result`` is the converter's ``ConversionResult``, ``saved`` the model
    written (the ``FVQModel`` or ``MultiCodeFVQModel``, folded or not, or the diffusers ``VQModel``), ``to``
    ``"fvq"`` or ``"diffusers"``."""
    model = result.model
    c = model.config
    multicode = quantizer_description(c) if c.get("quantizer") else None  # a MultiCodeFVQModel's
    folded_now = to == "diffusers" or getattr(saved.config, "folded", False)
    name = repo_id or output_dir
    if to == "diffusers":
        saved_as = (
            f"a diffusers `VQModel` (projector {projector_description(c)} folded into the codebook)"
            if c.projector != "none"
            else "a diffusers `VQModel`"
        )
        usage = (
            f'from diffusers import VQModel\n\nvq = VQModel.from_pretrained("{name}")\n'
            "reconstruction = vq.decode(vq.encode(images).latents).sample"
        )
        library = "diffusers"
    elif multicode:
        saved_as = "a `MultiCodeFVQModel`, " + (
            "folded: one plain codebook, no projector"
            if folded_now or c.projector == "none"
            else f"unfolded: raw codebook + projector {projector_description(c)}, ready to fine-tune"
        )
        shape = "(B, H/f, W/f, depth)" if c.quantizer == "residual" else "(B, Σ pn²): scale by scale, each row-major"
        usage = (
            f'from fvq_hf import MultiCodeFVQModel\n\nmodel = MultiCodeFVQModel.from_pretrained("{name}")\n'
            f"indices = model.encode_indices(images)      # {shape}\n"
            "reconstruction = model.decode_indices(indices)\n"
            "coarse_to_fine = model.decode_coarse_to_fine(indices)"
        )
        library = "fvq_hf"
    else:
        saved_as = "an `FVQModel`, " + (
            "folded: one plain codebook, no projector"
            if folded_now or c.projector == "none"
            else f"unfolded: raw codebook + projector {projector_description(c)}, ready to fine-tune"
        )
        usage = (
            f'from fvq_hf import FVQModel\n\nmodel = FVQModel.from_pretrained("{name}")\n'
            "indices = model.encode_indices(images)      # (B, H/f, W/f)\n"
            "reconstruction = model.decode_indices(indices)"
        )
        library = "fvq_hf"
    projector, note, condition_row = _projector_description(c, folded_now)
    if c.get("l2_normalize") and to == "diffusers":
        note += (
            " The codebook is stored l2-normalised: with unit-length codes the L2 nearest code is the cosine nearest "
            "code, so the stock VQModel reproduces the tokenizer exactly at inference. Training it further as a "
            "VQModel would not keep the normalisation."
        )
    downsample = model.downsample_factor
    source = result.source
    return render_model_card(
        "converted_tokenizer.md",
        ModelCardData(library_name=library, tags=["fvq", "vqgan", "image-tokenizer", "vector-quantization"]),
        title=repo_id or os.path.basename(os.path.abspath(output_dir)),
        source_name=os.path.basename(source.path),
        source_format=source.format,
        weights_key=source.weights_key,
        steps=source.steps if source.steps is not None else "not recorded",
        layout=result.layout,
        source_args={k: v for k, v in source.args.items() if k in _TOKENIZER_ARGS},
        ignored_keys=result.ignored_keys,
        saved_as=saved_as,
        downsample=downsample,
        tokens=f"{c.sample_size // downsample} × {c.sample_size // downsample}",
        sample_size=c.sample_size,
        codebook_size=f"{c.codebook_size:,}",
        codebook_dim=c.codebook_dim,
        l2_normalize=c.get("l2_normalize", False),
        codebook_init_l2=c.get("codebook_init_l2", False),
        quantizer=multicode,
        fixed_size=c.sample_size if c.get("quantizer") == "multiscale" else None,
        projector=projector,
        condition_row=condition_row,
        block_out_channels=tuple(c.block_out_channels),
        layers_per_block=c.layers_per_block,
        projector_note=note.strip(),
        usage=usage,
    )


def _projector_description(c, folded_now: bool) -> tuple[str, str, str | None]:
    """(the projector in words, a note on folding, the DiT bridge's label row) for a tokenizer config."""
    if c.projector == "vqbridge":
        projector = (
            f"VQBridge, {c.bridge_flavour} flavour, p = {c.bridge_patch_size}, hidden {c.bridge_hidden_size}, "
            f"heads {c.bridge_num_heads}, depth {c.bridge_depth}"
        )
        note = (
            "The bridge was applied once to the raw codebook; the saved codebook is its output." if folded_now else ""
        )
        condition_row = None
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
        return projector, note, condition_row
    if c.projector in ("linear", "mlp"):
        projector = (
            "one Linear(d, d) per code (Qbridge-lin/1)" if c.projector == "linear" else "5-layer MLP (Qbridge-lin/5)"
        )
        note = (
            "The projector was applied once to the raw codebook; the saved codebook is its output."
            if folded_now
            else ""
        )
        return projector, note, None
    return "none (plain codebook)", "", None


def converted_transformer_card(
    result,
    output_dir: str,
    sampling: dict,
    tokenizer_name: str | None = None,
    pipeline: bool = False,
    imagenet: bool = False,
    id2label: dict[int, str] | None = None,
    repo_id: str | None = None,
) -> ModelCard:
    """The card of a converted LlamaGen GPT (``result``: the converter's ``TransformerConversion``), written alone
    or (``pipeline``) as a whole ``FVQPipeline`` with the tokenizer ``tokenizer_name``; ``sampling`` is the recipe
    saved with it."""
    model = result.model
    c = model.config
    grid = math.isqrt(c.block_size)
    return render_model_card(
        "converted_transformer.md",
        ModelCardData(
            library_name="fvq_hf",
            tags=["fvq", "llamagen", "autoregressive", "image-generation"],
            pipeline_tag="unconditional-image-generation" if pipeline else None,
        ),
        title=os.path.basename(os.path.abspath(output_dir)),
        pipeline=pipeline,
        tokenizer=tokenizer_name or "?",
        source_name=os.path.basename(result.source_path),
        weights_key=result.weights_key,
        steps=result.steps if result.steps is not None else "unknown",
        dropped=", ".join(f"`{k}`" for k in result.dropped_keys) or "none",
        source_args={k: v for k, v in sorted(result.args.items()) if isinstance(v, (int, float, str, bool))},
        n_layer=c.n_layer,
        dim=c.dim,
        n_head=c.n_head,
        heads_from=result.heads_from,
        parameters=f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M",
        vocab_size=c.vocab_size,
        num_classes=c.num_classes,
        imagenet=imagenet,
        grid=f"{grid} × {grid}",
        grid_from=result.grid_from,
        sampling=sampling,
        repo_id=default_repo_id(output_dir, repo_id),
        example_label=repr(id2label[207].split(",")[0]) if imagenet and id2label else "0",
    )
