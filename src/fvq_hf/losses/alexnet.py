"""AlexNet's convolutional trunk, written here for LPIPS-AlexNet (the LPIPS the FVQ paper reports).

Written in the project for the same reason as the VGG16 in ``perceptual.py``: torchvision, which the ``lpips``
package and IQA-PyTorch build their AlexNet from, does not install with every torch. The parameter names are
torchvision's (``features.0.weight`` … ``features.10.bias``), so torchvision's ImageNet checkpoint
(``alexnet-owt-7be5be79.pth``, the weights LPIPS was calibrated on) loads as it is, and so does a full LPIPS
checkpoint that stores the trunk as ``net.slice{1-5}.{N}.*`` (the layout of the ``lpips`` package and of
IQA-PyTorch's ``LPIPS_v0.1_alex-*.pth``).
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

from .weights import PerceptualWeightsUnavailable, read_weights

# LPIPS taps relu1 … relu5: indices 1, 4, 7, 9 and 11 of torchvision's alexnet().features
ALEXNET_TAPS = (1, 4, 7, 9, 11)
ALEXNET_CHANNELS = (64, 192, 384, 256, 256)
ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"


class AlexNetFeatures(nn.Module):
    """torchvision's ``alexnet().features`` (5 convolutions, 3 max-pools); returns the five ReLU outputs LPIPS uses."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(3, 2),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            if index > ALEXNET_TAPS[-1]:
                break  # the last max-pool feeds the classifier, not LPIPS
            x = layer(x)
            if index in ALEXNET_TAPS:
                taps.append(x)
        return taps


_LPIPS_SLICE_KEY = re.compile(r"^(?:net\.)?slice[1-5]\.(\d+)\.(weight|bias)$")


def alexnet_features_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a torchvision AlexNet or of a full LPIPS-AlexNet checkpoint; other keys dropped."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("features."):
            out[key] = value
        elif match := _LPIPS_SLICE_KEY.match(key):
            # the slices keep torchvision's layer indices, so net.slice2.3.weight is features.3.weight
            out[f"features.{match.group(1)}.{match.group(2)}"] = value
    return out


def load_alexnet_weights(source: str, filename: str = ALEXNET_FILENAME) -> dict[str, torch.Tensor]:
    """AlexNet ``features.*`` weights from a local file (.pth / .safetensors) or from ``filename`` in a Hub repository.

    Raises:
        PerceptualWeightsUnavailable: the file cannot be had (offline, unknown repository) or holds no AlexNet trunk.
    """
    if os.path.isfile(source):
        path = source
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(source, filename)
        except Exception as error:  # offline, unknown repository, no such file
            raise PerceptualWeightsUnavailable(
                f"could not load AlexNet weights for LPIPS from {source!r} ({type(error).__name__}). LPIPS-AlexNet needs "
                f"torchvision's ImageNet AlexNet ({ALEXNET_FILENAME}, from download.pytorch.org/models/) or a full "
                "LPIPS-AlexNet checkpoint: pass the local file, or a Hub repository holding it (with its filename)."
            ) from error
    state = alexnet_features_state(read_weights(path))
    if not state:
        raise PerceptualWeightsUnavailable(f"{source!r} holds no AlexNet 'features.*' (or LPIPS 'net.slice*') weights")
    return state
