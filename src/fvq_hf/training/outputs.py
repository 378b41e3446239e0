"""What a training run leaves behind: a tokenizer run the folded tokenizer, its unfolded twin for fine-tuning and a
card; a generator run an FVQPipeline folder, a sample grid and a card (the cards are written by fvq_hf.hub)."""

from __future__ import annotations

import os

from ..hub import (
    SAMPLE_GRID_FILE,
    HubTarget,
    default_repo_id,
    evaluation_metrics,
    save_card_and_push,
    trained_generator_card,
    trained_tokenizer_card,
)


def save_trained_tokenizer(
    model,
    output_dir: str,
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
    hub: HubTarget | None = None,
    repo_id: str | None = None,
) -> dict:
    """Save ``model`` folded in ``output_dir`` and unfolded in ``output_dir/unfolded``, write the card, push.

        The folded model is what users load for inference; the unfolded one (raw codebook + projector) is what a
        fine-tune continues from. A model whose codebook was frozen (fine-tuned from a folded model) has no
        unfolded form, and none is written. ``not_evaluated`` says why there is no evaluation (shown in the card).
        With ``hub`` (a :class:`fvq_hf.hub.HubTarget`) the folder is pushed there (the training scripts push themselves,
    after their results: ``fvq_hf.training.runs``). ``more_evaluations`` ((description, result) pairs, e.g. the demo's unseen
        photos beside its held-out cells) join ``evaluation`` in the card. Returns ``{"output_dir", "metrics"[, "hub_url"]}``.
    """
    model.fold().save_pretrained(output_dir)
    if not model.config.folded:  # raw codebook (+ projector): what a fine-tune continues from
        model.save_pretrained(os.path.join(output_dir, "unfolded"))
    repo_id = repo_id or (hub.repo_id if hub is not None else default_repo_id(output_dir))
    card = trained_tokenizer_card(
        model,
        repo_id,
        evaluation=evaluation,
        eval_description=eval_description,
        more_evaluations=more_evaluations,
        recipe=recipe,
        hardware=hardware,
        wall_time=wall_time,
        base_model=base_model,
        codebook_frozen=codebook_frozen,
        training_departures=training_departures,
        not_evaluated=not_evaluated,
    )
    url = save_card_and_push(
        card,
        output_dir,
        push_to_hub=hub is not None,
        repo_id=repo_id,
        token=hub.token if hub is not None else None,
        private=hub.private if hub is not None else None,
        commit_message="Upload FVQ tokenizer",
    )
    summary = {"output_dir": output_dir, "metrics": evaluation_metrics(evaluation)}
    if url is not None:
        summary["hub_url"] = url
    return summary


def save_trained_generator(
    pipeline,
    output_dir: str,
    sample_grid=None,
    hub: HubTarget | None = None,
    repo_id: str | None = None,
    **card_fields,
) -> dict:
    """Save ``pipeline`` (an ``FVQPipeline``) to ``output_dir`` with ``samples.png`` and a card, and push it.

    ``card_fields`` go to :func:`fvq_hf.hub.trained_generator_card` (``codes_meta``, ``recipe``, ``hardware``,
    ``wall_time``, ``final_loss``, ``metrics``: e.g. ``{"fid": 12.3}``, in the card's table and ``model-index``).
    Returns ``{"output_dir", "sample_grid", "metrics"[, "hub_url"]}``.
    """
    pipeline.save_pretrained(output_dir)
    grid_path = os.path.join(output_dir, SAMPLE_GRID_FILE)
    if sample_grid is not None:
        sample_grid.save(grid_path)
    metrics = dict(card_fields.get("metrics") or {})
    repo_id = repo_id or (hub.repo_id if hub is not None else default_repo_id(output_dir))
    title = os.path.basename(os.path.abspath(output_dir))
    card = trained_generator_card(pipeline, repo_id, title, SAMPLE_GRID_FILE, **card_fields)
    url = save_card_and_push(
        card,
        output_dir,
        push_to_hub=hub is not None,
        repo_id=repo_id,
        token=hub.token if hub is not None else None,
        private=hub.private if hub is not None else None,
        commit_message="Upload FVQ generator",
    )
    summary = {"output_dir": output_dir, "sample_grid": grid_path, "metrics": metrics}
    if url is not None:
        summary["hub_url"] = url
    return summary
