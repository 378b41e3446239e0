"""Model cards rendered from the templates in the repository's model_cards/ (installed as fvq_hf.model_cards).

:func:`render_model_card` is the one renderer; :func:`model_card_data` and :func:`eval_results` build the YAML
header (tags, ``model-index`` metrics) any fvq_hf folder carries; :func:`trained_tokenizer_card` is the card of
a tokenizer trained by ``training/train_tokenizer.py``; :func:`save_card_and_push` writes a card into an output
folder and optionally publishes the folder.
"""

from __future__ import annotations

import os
from importlib import resources

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .push import TRAINING_STATE_PATTERNS, default_repo_id, push_folder

TAGS = ("fvq", "vqgan", "image-tokenizer", "vector-quantization")

# The metrics a tokenizer card publishes: ``model-index`` metric type (one spelling, the EvaluationResult field's
# name, which the Space and every card writer share) → display name. Training cards and the evaluation card
# updater (evaluation_card.py) both write these.
PUBLISHED_METRICS = {
    "usage": "codebook usage",
    "perplexity": "perplexity",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "ssim_correct_range": "SSIM (correct: data range 1)",
    "lpips": "LPIPS",
    "rfid": "rFID",
}
RECONSTRUCTION_METRIC_NAMES = PUBLISHED_METRICS


def render_model_card(template: str, card_data: ModelCardData, **fields) -> ModelCard:
    """Render ``model_cards/<template>`` (a Jinja template) with ``card_data`` as its YAML header."""
    source = resources.files("fvq_hf.model_cards") / template
    if not source.is_file():
        raise FileNotFoundError(f"no model card template {template!r} in fvq_hf.model_cards")
    return ModelCard.from_template(card_data, template_str=source.read_text(encoding="utf-8"), **fields)


def eval_results(
    metrics: dict[str, float],
    dataset_name: str,
    task_type: str = "image-to-image",
    task_name: str = "image reconstruction",
    dataset_type: str = "custom",
    metric_names: dict[str, str] | None = None,
    dataset_split: str | None = None,
) -> list[EvalResult]:
    """One ``model-index`` entry per metric (``{"psnr": 24.1, ...}``), values rounded to 6 decimals.

    ``metric_names`` maps a metric's key to its display name (default: :data:`RECONSTRUCTION_METRIC_NAMES`).
    The Hub groups entries by task, dataset type, config and split (not by name), so two evaluation sets of
    one card need different ``dataset_split``s.
    """
    names = RECONSTRUCTION_METRIC_NAMES if metric_names is None else metric_names
    return [
        EvalResult(
            task_type=task_type,
            task_name=task_name,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=dataset_split,
            metric_type=key,
            metric_value=round(float(value), 6),
            metric_name=names.get(key, key),
        )
        for key, value in metrics.items()
    ]


def model_card_data(
    library_name: str = "fvq_hf",
    tags: list[str] | tuple[str, ...] = TAGS,
    model_name: str | None = None,
    eval_results: list[EvalResult] | None = None,
    base_model: str | None = None,
    **extra,
) -> ModelCardData:
    """The YAML header of an fvq_hf card (``extra`` goes in as further header keys, e.g. ``datasets``)."""
    return ModelCardData(
        library_name=library_name,
        tags=list(tags),
        model_name=model_name,
        eval_results=eval_results or None,
        base_model=base_model,
        **extra,
    )


def save_card_and_push(
    card: ModelCard,
    output_dir: str | os.PathLike,
    push_to_hub: bool = False,
    repo_id: str | None = None,
    token: str | None = None,
    private: bool | None = None,
    ignore_patterns: list[str] | tuple[str, ...] | None = TRAINING_STATE_PATTERNS,
    commit_message: str = "Upload with fvq_hf",
) -> str | None:
    """Write ``card`` as ``output_dir/README.md``; with ``push_to_hub`` upload the folder (without training state)
    to ``repo_id`` and return the commit's URL."""
    card.save(os.path.join(output_dir, "README.md"))
    if not push_to_hub:
        return None
    return push_folder(
        output_dir,
        default_repo_id(output_dir, repo_id),
        token=token,
        private=private,
        ignore_patterns=ignore_patterns,
        commit_message=commit_message,
    )


# ------------------------------------------------------------------------------------ tokenizer cards
def projector_description(config, codebook_frozen: bool = False) -> str:
    """The projector a tokenizer was trained with, in words (for the card's model table)."""
    if codebook_frozen:
        return "none: fine-tuned from a folded model, codebook frozen"
    if config.projector == "vqbridge":
        return (
            f"VQBridge ({config.bridge_flavour}, p = {config.bridge_patch_size}, hidden {config.bridge_hidden_size}, "
            f"heads {config.bridge_num_heads}, depth {config.bridge_depth})"
        )
    return {"none": "none (plain codebook)", "linear": "single Linear(d, d)", "mlp": "5-layer MLP"}[config.projector]


def quantizer_description(config) -> str:
    """How a tokenizer quantises, in words: one code per position (``FVQModel``), or a ``MultiCodeFVQModel``'s
    residual depth or VAR scales, for a card's model table."""
    quantizer = config.get("quantizer")
    if quantizer is None:
        return "one code per position"
    if quantizer == "residual":
        return f"residual (RQ-VAE): {config.rq_depth} codes per position, one shared codebook"
    scales = list(config.scales)
    tokens = sum(pn * pn for pn in scales)
    return (
        f"multi-scale (VAR): {len(scales)} scales {', '.join(map(str, scales))} ({tokens:,} tokens), one shared "
        f"codebook, {config.num_phi} shared φ convolutions (r = {config.phi_ratio:g}), codes searched by "
        f"{'cosine similarity' if config.get('cosine_search') else 'L2 distance'}"
    )


def init_departures(config) -> list[str]:
    """Where a tokenizer's config departs from the paper's, one sentence each: its initialisation (zero-initialised
    bridge output, uniform ±1/K raw codebook) and, for a multi-scale tokenizer, a cosine code search."""
    departures = []
    if config.projector == "vqbridge" and config.bridge_output_init_std > 0:
        departures.append(
            f"the bridge's last Linear started from N(0, {config.bridge_output_init_std:g}²) instead of zeros, "
            "which keeps every code slot of a bridge token alive on small data"
        )
    if config.get("cosine_search"):
        departures.append(
            "codes were searched by cosine similarity (VAR's using_znorm) instead of by the L2 distance of FVQ's VAR "
            "tokenizer: with L2 on small data, most codes were never the nearest to any scale's residual"
        )
    if config.get("codebook_init_std") is not None:
        why = ", so the projector sees distinct inputs from the first step" if config.projector != "none" else ""
        departures.append(
            f"the raw codebook started from N(0, {config.codebook_init_std:g}²) instead of uniform(−1/K, 1/K){why}"
        )
    return departures


def evaluation_metrics(evaluation) -> dict[str, float]:
    """The published metrics of an ``EvaluationResult`` (LPIPS and rFID only when they were measured)."""
    if evaluation is None:
        return {}
    metrics = {
        "usage": evaluation.usage,
        "perplexity": evaluation.perplexity,
        "psnr": evaluation.psnr,
        "ssim": evaluation.ssim,
    }
    if evaluation.lpips is not None:
        metrics["lpips"] = evaluation.lpips
    if evaluation.rfid is not None:
        metrics["rfid"] = evaluation.rfid
    return metrics


def trained_tokenizer_card(
    model,
    repo_id: str,
    evaluation=None,
    eval_description: str = "",
    more_evaluations: list[tuple[str, object]] | None = None,
    recipe: dict | None = None,
    hardware: str = "",
    wall_time: float | None = None,
    base_model: str | None = None,
    codebook_frozen: bool = False,
    training_departures: list[str] | None = None,
    not_evaluated: str = "",
) -> ModelCard:
    """The card of a tokenizer trained by ``training/train_tokenizer.py``: model-index metrics, model, the
    recipe as run (``recipe``: name → value, shown as given), hardware and wall time (seconds).
    ``training_departures`` (one sentence each) join the initialisation's departures from the paper.

    ``evaluation`` on ``eval_description`` leads; ``more_evaluations`` ((description, result) pairs) get their own
    column in the table and their own ``model-index`` entries. Without an evaluation the card says why
    (``not_evaluated``)."""
    c = model.config
    dataset_name = eval_description or "held-out images"
    evaluations = [(dataset_name, evaluation)] if evaluation is not None else []
    evaluations += [(description, result) for description, result in more_evaluations or [] if result is not None]
    departures = init_departures(c) + list(training_departures or [])
    return render_model_card(
        "trained_tokenizer.md",
        model_card_data(
            model_name=repo_id,
            eval_results=[
                entry
                for description, result in evaluations
                for entry in eval_results(
                    evaluation_metrics(result), description, dataset_split=description if len(evaluations) > 1 else None
                )
            ],
            base_model=base_model,
        ),
        title=repo_id,
        base_model=base_model,
        evaluations=[evaluation_columns(description, result, c.codebook_size) for description, result in evaluations],
        not_evaluated=not_evaluated or "no step was trained",
        codebook_size=f"{c.codebook_size:,}",
        architecture=(
            f"{tuple(c.block_out_channels)} channels, {c.layers_per_block} residual blocks per level, "
            f"{model.downsample_factor}× downsampling"
        ),
        codebook_dim=c.codebook_dim,
        quantizer=quantizer_description(c) if c.get("quantizer") else "",
        model_class=type(model).__name__,
        l2_normalize=c.get("l2_normalize", False),
        codebook_init_l2=c.get("codebook_init_l2", False),
        projector=projector_description(c, codebook_frozen),
        init_note=f"Departure from the paper: {'; '.join(departures)}." if departures else "",
        recipe=recipe or {},
        hardware=hardware or "not recorded",
        wall_time=f"{wall_time / 60:.1f} min" if wall_time is not None else "not recorded",
        repo_id=repo_id,
    )


def evaluation_columns(description: str, result, codebook_size: int) -> dict:
    """One evaluation as the card's table shows it (strings; LPIPS and rFID None when not measured)."""
    extra = result.extra or {}
    slots = f", {extra['live_slots']}/{extra['slots']} bridge slots alive" if "live_slots" in extra else ""
    return {
        "data": description,
        "images": result.images,
        "tokens_per_code": extra.get("tokens_per_code"),
        "protocol": result.protocol,
        "usage": f"{result.usage:.2%} ({result.used_codes:,} of {codebook_size:,} codes{slots})",
        "perplexity": f"{result.perplexity:.1f}",
        "psnr": f"{result.psnr:.2f} dB",
        "ssim": f"{result.ssim:.4f}",
        "lpips": f"{result.lpips:.4f}" if result.lpips is not None else None,
        "rfid": f"{result.rfid:.2f}" if result.rfid is not None else None,
        "levels": [level_column(level) for level in extra.get("levels", [])],
    }


def level_column(level: dict) -> dict:
    """One depth or scale of a multi-code evaluation (``extra["levels"]``) as the card's per-level table shows it."""
    slots = f", {level['live_slots']}/{level['slots']} slots alive" if "live_slots" in level else ""
    return {
        "level": level["level"],
        "usage": f"{level['usage']:.2%} ({level['used_codes']:,} codes{slots})",
        "perplexity": f"{level['perplexity']:.1f}",
        "tokens_per_code": level.get("tokens_per_code"),
    }


# ------------------------------------------------------------------------------------ generator cards
SAMPLE_GRID_FILE = "samples.png"


def trained_generator_card(
    pipeline,
    repo_id: str,
    title: str,
    sample_grid: str = SAMPLE_GRID_FILE,
    codes_meta: dict | None = None,
    recipe: dict | None = None,
    hardware: str = "",
    wall_time: float | None = None,
    final_loss: float | None = None,
    metrics: dict[str, float] | None = None,
) -> ModelCard:
    """The card of a generator trained by ``training/train_generator.py``: the data its codes came from
    (``codes_meta``, the codes folder's meta.json), the recipe as run, sampling defaults and ``metrics`` (e.g.
    ``{"fid": 12.3}``) in the table and ``model-index``."""
    meta = codes_meta or {}
    metrics = dict(metrics or {})
    id2label = pipeline.config.id2label
    first = id2label.get(0, "0").split(",")[0].strip() if id2label else "0"
    card_data = model_card_data(
        model_name=repo_id,
        eval_results=eval_results(
            metrics,
            meta.get("source", "custom"),
            task_type="unconditional-image-generation",
            task_name="class-conditional image generation",
            metric_names={},
        ),
        pipeline_tag="unconditional-image-generation",
    )
    return render_model_card(
        "trained_generator.md",
        card_data,
        title=title,
        repo_id=repo_id,
        sample_grid=sample_grid,
        grid_classes=", ".join(id2label.get(i, str(i)).split(",")[0] for i in range(min(10, len(id2label)))),
        final_loss="–" if final_loss is None else f"{final_loss:.4f}",
        metrics={k: f"{v:.4g}" for k, v in metrics.items()},
        num_images=meta.get("num_images", "?"),
        source=meta.get("source", "unknown data"),
        num_classes=meta.get("num_classes", len(id2label)),
        resolution=meta.get("resolution", "?"),
        grid=" × ".join(map(str, meta.get("grid", ["?", "?"]))),
        views=meta.get("views", "?"),
        tokenizer=meta.get("tokenizer_name", meta.get("tokenizer", "?")),
        codebook_size=pipeline.vqvae.config.codebook_size,
        sampling={**pipeline.config.sampling_defaults},
        recipe=recipe or {},
        hardware=hardware or "unknown",
        wall_time="unknown" if wall_time is None else f"{wall_time / 60:.1f} min",
        example_label=repr(first),
    )
