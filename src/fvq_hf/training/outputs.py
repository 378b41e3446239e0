"""What a tokenizer training run leaves behind: the folded tokenizer, its unfolded twin for fine-tuning, a card."""

from __future__ import annotations

import os

from ..hub import default_repo_id, evaluation_metrics, save_card_and_push, trained_tokenizer_card


def save_trained_tokenizer(
    model,
    output_dir: str,
    evaluation=None,
    eval_description: str = "",
    recipe: dict | None = None,
    hardware: str = "",
    wall_time: float | None = None,
    base_model: str | None = None,
    codebook_frozen: bool = False,
    push_to_hub: bool = False,
    hub_model_id: str | None = None,
    hub_token: str | None = None,
    hub_private: bool = False,
) -> dict:
    """Save ``model`` folded in ``output_dir`` and unfolded in ``output_dir/unfolded``, write the card, push.

    The folded model is what users load for inference; the unfolded one (raw codebook + projector) is what a
    fine-tune continues from. A model whose codebook was frozen (fine-tuned from a folded model) has no
    unfolded form, and none is written. Returns ``{"output_dir", "metrics"[, "hub_url"]}``.
    """
    model.fold().save_pretrained(output_dir)
    if not model.config.folded:  # raw codebook (+ projector): what a fine-tune continues from
        model.save_pretrained(os.path.join(output_dir, "unfolded"))
    repo_id = default_repo_id(output_dir, hub_model_id)
    card = trained_tokenizer_card(
        model,
        repo_id,
        evaluation=evaluation,
        eval_description=eval_description,
        recipe=recipe,
        hardware=hardware,
        wall_time=wall_time,
        base_model=base_model,
        codebook_frozen=codebook_frozen,
    )
    url = save_card_and_push(
        card,
        output_dir,
        push_to_hub=push_to_hub,
        repo_id=repo_id,
        token=hub_token,
        private=hub_private or None,
        commit_message="Upload FVQ tokenizer",
    )
    summary = {"output_dir": output_dir, "metrics": evaluation_metrics(evaluation)}
    if url is not None:
        summary["hub_url"] = url
    return summary
