"""Hub helpers, the one place for model cards and pushing: cards rendered from the templates in model_cards/,
their ``model-index`` metrics (one table, :data:`PUBLISHED_METRICS`), an evaluation written into an existing card,
and uploading a written folder in one commit."""

from .converted_cards import converted_tokenizer_card, converted_transformer_card
from .evaluation_card import metric_rows, update_model_card
from .model_card import (
    PUBLISHED_METRICS,
    SAMPLE_GRID_FILE,
    TAGS,
    eval_results,
    evaluation_metrics,
    init_departures,
    model_card_data,
    projector_description,
    quantizer_description,
    render_model_card,
    save_card_and_push,
    trained_generator_card,
    trained_tokenizer_card,
)
from .push import TRAINING_STATE_PATTERNS, HubTarget, default_repo_id, push_folder

__all__ = [
    "PUBLISHED_METRICS",
    "SAMPLE_GRID_FILE",
    "TAGS",
    "TRAINING_STATE_PATTERNS",
    "HubTarget",
    "converted_tokenizer_card",
    "converted_transformer_card",
    "default_repo_id",
    "eval_results",
    "evaluation_metrics",
    "init_departures",
    "metric_rows",
    "model_card_data",
    "projector_description",
    "push_folder",
    "quantizer_description",
    "render_model_card",
    "save_card_and_push",
    "trained_generator_card",
    "trained_tokenizer_card",
    "update_model_card",
]
