"""Hub helpers: model cards rendered from the templates in model_cards/."""

from .model_card import render_model_card

__all__ = ["render_model_card"]
