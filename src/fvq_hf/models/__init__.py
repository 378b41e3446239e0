"""Models: the FVQ tokenizer."""

from .fvq_model import MODEL_PRESETS, FVQModel, FVQModelOutput

__all__ = ["MODEL_PRESETS", "FVQModel", "FVQModelOutput"]
