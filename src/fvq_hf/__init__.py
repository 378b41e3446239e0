"""fvq_hf: FVQ image tokenizers (VQBridge + learning annealing) as Hub-native diffusers models."""

from .models import MODEL_PRESETS, FVQModel, FVQModelOutput
from .quantization import (
    BRIDGE_PRESETS,
    CodebookUsage,
    UsageStats,
    VectorQuantizer,
    VQBridge,
    nearest_code,
)

__version__ = "0.1.0"

__all__ = [
    "BRIDGE_PRESETS",
    "MODEL_PRESETS",
    "CodebookUsage",
    "FVQModel",
    "FVQModelOutput",
    "UsageStats",
    "VQBridge",
    "VectorQuantizer",
    "nearest_code",
    "__version__",
]
