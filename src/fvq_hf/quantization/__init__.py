"""Vector quantisation: VQBridge, the baseline projectors, the single-code, residual (RQ-VAE) and multi-scale (VAR)
quantizers, nearest-code search, usage."""

from .multiscale_quantizer import VAR_PHI_TABLE, VAR_SCALES, MultiScaleQuantizer, ResidualPhi, phi_table
from .projectors import (
    OFFICIAL_PROJECTOR_NAMES,
    PROJECTOR_TYPES,
    LinearProjector,
    MLPProjector,
    build_projector,
    parse_official_projector,
    resolve_projector,
)
from .residual_quantizer import ResidualQuantizer
from .search import DEFAULT_CHUNK_SIZE, nearest_code
from .slot_restart import SlotRestart
from .usage import CodebookUsage, LevelUsage, UsageStats
from .vector_quantizer import VectorQuantizer
from .vqbridge import BRIDGE_PRESETS, BRIDGE_WIDTHS, VQBridge, check_bridge_grid, parse_bridge_preset

__all__ = [
    "BRIDGE_PRESETS",
    "BRIDGE_WIDTHS",
    "DEFAULT_CHUNK_SIZE",
    "OFFICIAL_PROJECTOR_NAMES",
    "PROJECTOR_TYPES",
    "VAR_PHI_TABLE",
    "VAR_SCALES",
    "CodebookUsage",
    "LevelUsage",
    "LinearProjector",
    "MLPProjector",
    "MultiScaleQuantizer",
    "ResidualPhi",
    "ResidualQuantizer",
    "SlotRestart",
    "UsageStats",
    "VQBridge",
    "VectorQuantizer",
    "build_projector",
    "check_bridge_grid",
    "nearest_code",
    "parse_bridge_preset",
    "parse_official_projector",
    "phi_table",
    "resolve_projector",
]
