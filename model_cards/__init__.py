"""Model card templates (Jinja, rendered with huggingface_hub ModelCard); installed as fvq_hf.model_cards."""
