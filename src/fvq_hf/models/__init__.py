"""Models: the FVQ tokenizers (single-code and multi-code) and the class-conditional transformer over its codes."""

from .fvq_model import MODEL_PRESETS, FVQModel, FVQModelOutput
from .fvq_transformer import TRANSFORMER_PRESETS, FVQTransformer, FVQTransformerOutput
from .multicode_model import (
    MULTICODE_PRESETS,
    QUANTIZER_TYPES,
    MultiCodeFVQModel,
    MultiCodeFVQModelOutput,
    tokenizer_class,
)

__all__ = [
    "MODEL_PRESETS",
    "MULTICODE_PRESETS",
    "QUANTIZER_TYPES",
    "TRANSFORMER_PRESETS",
    "FVQModel",
    "FVQModelOutput",
    "FVQTransformer",
    "FVQTransformerOutput",
    "MultiCodeFVQModel",
    "MultiCodeFVQModelOutput",
    "tokenizer_class",
]
