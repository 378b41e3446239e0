"""Reading the pretrained backbones of LPIPS: the one error when they cannot be had, and the safe file reader.

The bottom of ``losses/``: ``perceptual.py`` (VGG16, LPIPS) and ``alexnet.py`` both read their weights through
here, so neither imports the other for it.
"""

from __future__ import annotations

import torch


class PerceptualWeightsUnavailable(RuntimeError):
    """The backbone weights LPIPS needs (VGG16 or AlexNet) could not be loaded."""


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file, or a torch file read with ``weights_only=True`` (its
    ``state_dict`` entry when it has one)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state
