"""fvq_hf: FVQ image tokenizers (VQBridge + learning annealing) as Hub-native diffusers models."""

from .generation import FVQPipeline, generate
from .models import (
    MODEL_PRESETS,
    MULTICODE_PRESETS,
    TRANSFORMER_PRESETS,
    FVQModel,
    FVQModelOutput,
    FVQTransformer,
    FVQTransformerOutput,
    MultiCodeFVQModel,
    MultiCodeFVQModelOutput,
    load_tokenizer,
)
from .quantization import (
    BRIDGE_PRESETS,
    CodebookUsage,
    LevelUsage,
    MultiScaleQuantizer,
    ResidualQuantizer,
    UsageStats,
    VectorQuantizer,
    VQBridge,
    nearest_code,
)

__version__ = "0.1.0"

__all__ = [
    "BRIDGE_PRESETS",
    "MODEL_PRESETS",
    "MULTICODE_PRESETS",
    "TRANSFORMER_PRESETS",
    "CodebookUsage",
    "FVQModel",
    "FVQModelOutput",
    "FVQPipeline",
    "FVQTransformer",
    "FVQTransformerOutput",
    "LevelUsage",
    "MultiCodeFVQModel",
    "MultiCodeFVQModelOutput",
    "MultiScaleQuantizer",
    "ResidualQuantizer",
    "UsageStats",
    "VQBridge",
    "VectorQuantizer",
    "__version__",
    "generate",
    "load_tokenizer",
    "nearest_code",
]
