"""LPIPS perceptual distance with a VGG16 or AlexNet backbone written here (torchvision cannot be used with every torch).

VGG16 is the training loss (VQGAN / LlamaGen recipe); AlexNet is the LPIPS the FVQ paper reports (its evaluation
uses IQA-PyTorch's ``lpips`` metric, AlexNet v0.1). The VGG16 loads real ImageNet weights from a Hub repository
(``timm/vgg16.tv_in1k`` by default) or a local file; AlexNet from torchvision's checkpoint file (see
``alexnet.py``). The five linear heads of LPIPS v0.1 ship inside pip packages (torchmetrics, lpips) and are read
from there. When backbone weights cannot be had (offline, no file) ``PerceptualWeightsUnavailable`` says what to do.
"""

from __future__ import annotations

import os
from importlib import resources

import torch
from torch import nn

from .alexnet import ALEXNET_CHANNELS, ALEXNET_FILENAME, AlexNetFeatures, load_alexnet_weights
from .weights import PerceptualWeightsUnavailable, read_weights

DEFAULT_VGG16_WEIGHTS = "timm/vgg16.tv_in1k"
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's vgg16.features
_CHANNELS = (64, 128, 256, 512, 512)


class VGG16Features(nn.Module):
    """VGG16's convolutional trunk up to relu5_3, with torchvision's ``features.N`` parameter names."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=False)]
                channels = item
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAPS:
                taps.append(x)
        return taps


def load_vgg16_weights(source: str = DEFAULT_VGG16_WEIGHTS) -> dict[str, torch.Tensor]:
    """VGG16 ``features.*`` weights from a local file (.safetensors / .pth) or a Hub repository id."""
    if os.path.isfile(source):
        path = source
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(source, "model.safetensors")
        except Exception as error:  # offline, unknown repository, no network
            raise PerceptualWeightsUnavailable(
                f"could not load VGG16 weights for the LPIPS perceptual loss from {source!r} ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}). Fix: download them once where the Hub is reachable "
                f"(`hf download {DEFAULT_VGG16_WEIGHTS}`) or pass a local .safetensors/.pth file; or train without "
                "LPIPS (perceptual weight 0); random VGG weights are for tests and CPU demos only."
            ) from error
    state = {k: v for k, v in read_weights(path).items() if k.startswith("features.")}
    if not state:
        raise PerceptualWeightsUnavailable(f"{source!r} holds no VGG16 'features.*' weights")
    return state


def _lpips_heads_file(net: str = "vgg") -> str:
    """LPIPS v0.1's linear heads for ``net`` ("vgg" or "alex"), as shipped in the torchmetrics or lpips wheel."""
    for package, relative in (
        ("torchmetrics", f"functional/image/lpips_models/{net}.pth"),
        ("lpips", f"weights/v0.1/{net}.pth"),
    ):
        try:
            candidate = resources.files(package) / relative
        except ModuleNotFoundError:
            continue
        if candidate.is_file():
            return str(candidate)
    raise PerceptualWeightsUnavailable(
        "LPIPS's linear heads ship with torchmetrics or lpips; install one (pip install torchmetrics)"
    )


class LPIPS(nn.Module):
    """LPIPS v0.1: a learned perceptual distance between images in [-1, 1]; one value per image.

    All parameters are frozen; gradients still flow to the inputs, so it serves as a training loss.

    Args:
        weights: backbone weights, a local file or a Hub repository id. For ``net="vgg"`` the default is
            ``timm/vgg16.tv_in1k``; ``net="alex"`` has no default (see ``load_alexnet_weights``).
        random_init: keep the backbone randomly initialised (tests and CPU demos only).
        net: ``"vgg"`` (VGG16, the training loss) or ``"alex"`` (AlexNet, the LPIPS the FVQ paper reports).
        filename: the file inside a Hub repository, for ``net="alex"``.
    """

    def __init__(
        self, weights: str | None = None, random_init: bool = False, net: str = "vgg", filename: str | None = None
    ):
        super().__init__()
        if net not in ("vgg", "alex"):
            raise ValueError(f"LPIPS net must be 'vgg' or 'alex', not {net!r}")
        self.net = net
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None], persistent=False)
        if net == "vgg":
            self.backbone, channels = VGG16Features(), _CHANNELS
        else:
            self.backbone, channels = AlexNetFeatures(), ALEXNET_CHANNELS
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        if not random_init:
            if net == "vgg":
                state = load_vgg16_weights(weights or DEFAULT_VGG16_WEIGHTS)
            else:
                if not weights:
                    raise PerceptualWeightsUnavailable(
                        f"LPIPS-AlexNet needs AlexNet weights: pass torchvision's {ALEXNET_FILENAME} (a local file) "
                        "or a Hub repository holding it"
                    )
                state = load_alexnet_weights(weights, filename or ALEXNET_FILENAME)
            self.backbone.load_state_dict(state)
        heads = torch.load(_lpips_heads_file(net), map_location="cpu", weights_only=True)
        for i, head in enumerate(self.heads):
            head.weight.data.copy_(heads[f"lin{i}.model.1.weight"])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)  # always in eval mode: nothing here trains

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self.backbone((x - self.shift) / self.scale)
        fy = self.backbone((y - self.shift) / self.scale)
        total = 0
        for a, b, head in zip(fx, fy, self.heads):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((a - b) ** 2).mean(dim=(2, 3))
        return total.flatten()
