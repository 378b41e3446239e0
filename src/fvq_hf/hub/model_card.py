"""Model cards rendered from the templates in the repository's model_cards/ (installed as fvq_hf.model_cards)."""

from __future__ import annotations

from importlib import resources

from huggingface_hub import ModelCard, ModelCardData


def render_model_card(template: str, card_data: ModelCardData, **fields) -> ModelCard:
    """Render ``model_cards/<template>`` (a Jinja template) with ``card_data`` as its YAML header."""
    source = resources.files("fvq_hf.model_cards") / template
    if not source.is_file():
        raise FileNotFoundError(f"no model card template {template!r} in fvq_hf.model_cards")
    return ModelCard.from_template(card_data, template_str=source.read_text(encoding="utf-8"), **fields)
