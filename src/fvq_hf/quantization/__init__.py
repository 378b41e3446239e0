"""Vector quantisation: projectors (VQBridge and baselines), the quantizer, nearest-code search, usage."""

from .projectors import (
    BRIDGE_PRESETS,
    PROJECTOR_TYPES,
    LinearProjector,
    MLPProjector,
    VQBridge,
    build_projector,
    check_bridge_grid,
    parse_bridge_preset,
)
from .search import DEFAULT_CHUNK_SIZE, nearest_code
from .usage import CodebookUsage, UsageStats
from .vector_quantizer import VectorQuantizer

__all__ = [
    "BRIDGE_PRESETS",
    "DEFAULT_CHUNK_SIZE",
    "PROJECTOR_TYPES",
    "CodebookUsage",
    "LinearProjector",
    "MLPProjector",
    "UsageStats",
    "VQBridge",
    "VectorQuantizer",
    "build_projector",
    "check_bridge_grid",
    "nearest_code",
    "parse_bridge_preset",
]
