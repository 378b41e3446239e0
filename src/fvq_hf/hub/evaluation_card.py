"""Write an evaluation into a model card: ``model-index`` entries and a table, both naming the protocol.

A number published without its protocol cannot be set beside a paper's table honestly (crop, file format and
metric implementation each move it), so every metric name carries the protocol (``rFID (fvq protocol)``), its
``metric_config`` is the protocol's name and the card's text gets a table with the protocol in words. Entries
and table of the same protocol are replaced when the evaluation is run again; other protocols' are kept.
"""

from __future__ import annotations

import os

from ..evaluation.evaluator import EvaluationResult
from .model_card import PUBLISHED_METRICS

# what the evaluation script publishes (perplexity is in its JSON, not in the card's table)
_METRICS = tuple(
    (key, PUBLISHED_METRICS[key]) for key in ("usage", "psnr", "ssim", "ssim_correct_range", "lpips", "rfid")
)


def metric_rows(result: EvaluationResult) -> list[tuple[str, str, float]]:
    """(metric type, display name, value) of every measured metric, names carrying what the protocol measured."""
    name = result.protocol_name
    details = result.protocol_details or {}
    labels = {
        "psnr": "PSNR (Y channel, BT.601)" if details.get("psnr") == "y" else "PSNR (RGB)",
        "ssim": "SSIM (as published: data range 2 on [0, 1] images)" if name in ("fvq", "adm") else "SSIM",
        "lpips": f"LPIPS ({'AlexNet' if result.lpips_net == 'alex' else 'VGG16'})",
    }
    rows = []
    for key, default in _METRICS:
        value = getattr(result, key)
        if value is None or (key == "ssim_correct_range" and name not in ("fvq", "adm")):
            continue  # for fast, ssim already uses the true range
        rows.append((key, f"{labels.get(key, default)} ({name} protocol)", float(value)))
    return rows


def update_model_card(
    card_path: str, result: EvaluationResult, dataset_name: str = "evaluation images", dataset_split: str | None = None
) -> str:
    """Add ``result`` to the model card at ``card_path`` (a README.md; created if missing) and return its text.

    Args:
        card_path: the card file, usually ``<model folder>/README.md``.
        result: an ``evaluate_tokenizer`` result.
        dataset_name: what was evaluated (e.g. ``"ImageNet val"``), shown in ``model-index`` and the table.
        dataset_split: the split, if any.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    name = result.protocol_name
    if os.path.isfile(card_path):
        card = ModelCard.load(card_path)
    else:
        card = ModelCard.from_template(ModelCardData(library_name="fvq_hf"), template_str="---\n{{ card_data }}\n---\n")
    kept = [entry for entry in (card.data.eval_results or []) if entry.metric_config != name]
    new = [
        EvalResult(
            task_type="image-to-image",
            task_name="image reconstruction",
            dataset_type="custom",
            dataset_name=dataset_name,
            dataset_split=dataset_split,
            metric_type=key,  # the one spelling (PUBLISHED_METRICS): the Space reads "usage"
            metric_name=label,
            metric_value=round(value, 6),
            metric_config=name,
        )
        for key, label, value in metric_rows(result)
    ]
    card.data.eval_results = kept + new
    if not card.data.model_name:
        card.data.model_name = os.path.basename(os.path.dirname(os.path.abspath(card_path))) or "fvq-tokenizer"

    begin, end = f"<!-- fvq-evaluation:{name} -->", f"<!-- /fvq-evaluation:{name} -->"
    lines = [begin, f"### Evaluation, {name} protocol", "", "| metric | value |", "|---|---|"]
    for key, label, value in metric_rows(result):
        shown = {"usage": f"{value:.2%}", "psnr": f"{value:.2f} dB", "rfid": f"{value:.2f}"}.get(key, f"{value:.4f}")
        lines.append(f"| {label.removesuffix(f' ({name} protocol)')} | {shown} |")
    lines += ["", f"{result.images} images of {dataset_name}. Protocol: {result.protocol}.", end]
    section = "\n".join(lines)
    text = card.text
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    elif "\n## Model\n" in text:  # after the card's own evaluation section
        at = text.index("\n## Model\n")
        text = text[:at] + "\n" + section + "\n" + text[at:]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    card.text = text
    card.save(card_path)
    return str(card)
