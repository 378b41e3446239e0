"""Models: the FVQ tokenizer and the class-conditional transformer over its codes."""

from .fvq_model import MODEL_PRESETS, FVQModel, FVQModelOutput
from .fvq_transformer import TRANSFORMER_PRESETS, FVQTransformer, FVQTransformerOutput

__all__ = [
    "MODEL_PRESETS",
    "TRANSFORMER_PRESETS",
    "FVQModel",
    "FVQModelOutput",
    "FVQTransformer",
    "FVQTransformerOutput",
]
