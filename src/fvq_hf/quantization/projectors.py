"""Codebook projectors: functions f that map the raw codebook C (K × d) to the lookup codebook Ĉ = f(C).

The projector is what FVQ is about. Every projector here takes the raw codebook as a (K, d) tensor and
returns a (K, d) tensor, so the quantizer never needs to know which one it holds:

- ``"none"``: Ĉ = C, a plain VQGAN codebook (the collapsing baseline);
- ``"linear"``: a single ``Linear(d, d)`` applied to every code (SimVQ / VQGAN-LC style);
- ``"mlp"``: a 5-layer MLP (``Linear + ReLU`` × 4, ``Linear``);
- ``"vqbridge"``: :class:`VQBridge` (its own module, ``vqbridge.py``), the compress–process–recover ViT of the paper.

The official code names the same four ``Qbridge-none``, ``Qbridge-lin/1``, ``Qbridge-lin/5`` and ``QBridge-<preset>``;
``parse_official_projector`` reads those names.
"""

from __future__ import annotations

import torch
from torch import nn

from .vqbridge import (  # noqa: F401  (re-exported: these lived here before VQBridge had its own module)
    BRIDGE_PRESETS,
    BRIDGE_WIDTHS,
    VQBridge,
    check_bridge_grid,
    official_bridge_name,
    parse_bridge_preset,
    sincos_pos_embed_2d,
    slot_indices,
)

PROJECTOR_TYPES = ("none", "linear", "mlp", "vqbridge")

# the official names of the baselines; the official table spells them with a lower-case "b"
OFFICIAL_BASELINES = {"Qbridge-none": "none", "Qbridge-lin/1": "linear", "Qbridge-lin/5": "mlp"}
OFFICIAL_PROJECTOR_NAMES = (
    *OFFICIAL_BASELINES,
    *(official_bridge_name(preset) for preset in BRIDGE_PRESETS),
    "QBridge-siglip2-B-p16-256/4",
    "QBridge-d4-siglip2-B-p16-256/4",
)


def parse_official_projector(name: str) -> tuple[str, dict]:
    """The projector type and ``VQBridge`` keyword arguments an official ``QB_type`` names.

    ``"Qbridge-lin/1"`` → ``("linear", {})``, ``"QBridge-L/4"`` (or ``"L/4"``) → ``("vqbridge", {...})``. The
    prefix's case is not significant. Raises a ``ValueError`` listing every known name for anything else.
    """
    if isinstance(name, str):
        for official, projector in OFFICIAL_BASELINES.items():
            if name.lower() == official.lower():
                return projector, {}
        try:
            return "vqbridge", parse_bridge_preset(name)
        except ValueError:
            pass
    raise ValueError(
        f"Unknown projector name {name!r}. The official code's names are: {', '.join(OFFICIAL_PROJECTOR_NAMES)}."
    )


class LinearProjector(nn.Module):
    """Ĉ = C Wᵀ + b: the single-Linear projector of SimVQ / VQGAN-LC, the paper's weak baseline."""

    def __init__(self, codebook_dim: int):
        super().__init__()
        self.linear = nn.Linear(codebook_dim, codebook_dim)

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        return self.linear(codebook)


class MLPProjector(nn.Module):
    """The paper's 5-layer MLP baseline: (Linear + ReLU) × (num_layers − 1), then Linear, all of width d."""

    def __init__(self, codebook_dim: int, num_layers: int = 5):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_layers - 1):
            layers += [nn.Linear(codebook_dim, codebook_dim), nn.ReLU()]
        layers.append(nn.Linear(codebook_dim, codebook_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        return self.net(codebook)


def build_projector(
    projector: str,
    codebook_size: int,
    codebook_dim: int,
    bridge_preset: str | None = "L/4",
    **bridge_kwargs,
) -> nn.Module | None:
    """Build the projector named by ``projector`` (one of ``PROJECTOR_TYPES``); ``"none"`` returns ``None``.

    For ``"vqbridge"`` the preset gives the defaults and ``bridge_kwargs`` (``patch_size``, ``hidden_size``,
    ``num_heads``, ``depth``, ``mlp_ratio``, ``output_init_std``, ``flavour``, ``num_condition_embeddings``,
    ``condition_index``) override them; ``None`` values are ignored. ``bridge_preset`` accepts the official names
    too (``"QBridge-L/4"``).
    """
    if projector == "none":
        return None
    if projector == "linear":
        return LinearProjector(codebook_dim)
    if projector == "mlp":
        return MLPProjector(codebook_dim)
    if projector == "vqbridge":
        kwargs = parse_bridge_preset(bridge_preset) if bridge_preset else {}
        kwargs.update({k: v for k, v in bridge_kwargs.items() if v is not None})
        return VQBridge(codebook_size=codebook_size, codebook_dim=codebook_dim, **kwargs)
    raise ValueError(f"Unknown projector {projector!r}; choose one of {', '.join(PROJECTOR_TYPES)}.")


def resolve_projector(
    projector: nn.Module | str | None,
    codebook_size: int,
    codebook_dim: int,
    bridge_preset: str | None = "L/4",
) -> nn.Module | None:
    """A projector given as a module (returned as is), ``None`` (no projector) or a name of ``PROJECTOR_TYPES``.

    A name is built by ``build_projector`` with ``bridge_preset``; this lets a quantizer default to the paper's
    VQBridge while still taking any module.
    """
    if projector is None or isinstance(projector, nn.Module):
        return projector
    if isinstance(projector, str):
        return build_projector(projector, codebook_size, codebook_dim, bridge_preset=bridge_preset)
    raise TypeError(
        f"projector must be an nn.Module, None or one of {', '.join(PROJECTOR_TYPES)}, got {type(projector).__name__}"
    )
