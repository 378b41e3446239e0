"""The FID variant of InceptionV3 (TensorFlow's 2015-12-05 graph as ported by pytorch-fid), pool3 features.

Written here because torchvision (which the usual ports build on) does not install with every torch. The
parameter names are pytorch-fid's (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, …),
so its released ``pt_inception-2015-12-05-*.pth`` loads directly, and so does torch-fidelity's
``weights-inception-2015-12-05-6726825d.pth`` (same graph, same names); the 1008-way ``fc`` head is not needed.
Plug it into torchmetrics: ``FrechetInceptionDistance(feature=InceptionV3Features.from_pretrained(path))``.

Two input pipelines, because FID implementations differ before the first convolution:

- ``"pytorch-fid"``: pytorch-fid's, a half-pixel bilinear resize of [0, 1] images to 299 px, then ``2x − 1``.
- ``"torch-fidelity"``: torch-fidelity's ``inception-v3-compat`` feature extractor, which reproduces the TF1 graph
  (and so the ADM / OpenAI evaluator LlamaGen uses): TF1's legacy bilinear resize of 0–255 values
  (source pixel ``i · in / out``, no half-pixel offset), then ``(x − 128) / 128``. The FVQ paper's rFID is
  torch-fidelity's ``inception-v3-compat``, 2048-d features (its evaluation scripts in yfChang-cv/FVQ).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn


class _Conv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg3(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)  # the TF graph's pooling


class _A(nn.Module):
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = _Conv(cin, 48, 1), _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _Conv(cin, 64, 1), _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg3(x)),
            ],
            1,
        )


class _B(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _Conv(cin, 64, 1), _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x):
        dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), dbl, F.max_pool2d(x, 3, stride=2)], 1)


class _C(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1, self.branch7x7_2 = _Conv(cin, c7, 1), _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1, self.branch7x7dbl_2 = _Conv(cin, c7, 1), _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3, self.branch7x7dbl_4 = (
            _Conv(c7, c7, (1, 7), padding=(0, 3)),
            _Conv(c7, c7, (7, 1), padding=(3, 0)),
        )
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg3(x))], 1)


class _D(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = _Conv(cin, 192, 1), _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1, self.branch7x7x3_2 = _Conv(cin, 192, 1), _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3, self.branch7x7x3_4 = _Conv(192, 192, (7, 1), padding=(3, 0)), _Conv(192, 192, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class _E(nn.Module):
    def __init__(self, cin, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool  # the last block of the TF graph max-pools its pool branch
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = (
            _Conv(384, 384, (1, 3), padding=(0, 1)),
            _Conv(384, 384, (3, 1), padding=(1, 0)),
        )
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _Conv(cin, 448, 1), _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a, self.branch3x3dbl_3b = (
            _Conv(384, 384, (1, 3), padding=(0, 1)),
            _Conv(384, 384, (3, 1), padding=(1, 0)),
        )
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat(
            [
                self.branch1x1(x),
                torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1),
                torch.cat([self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3)], 1),
                self.branch_pool(pooled),
            ],
            1,
        )


def resize_bilinear_tf1(images: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1.x ``resize_bilinear`` (``align_corners=False``): output pixel i samples input i · in / out.

    Unlike ``F.interpolate(..., align_corners=False)`` there is no half-pixel offset, so the image shifts by up to
    half an input pixel; FID features computed with the TF graph (ADM's evaluator, torch-fidelity's
    ``inception-v3-compat``) depend on it. Computed in float32 as torch-fidelity does.
    """
    x = images.float()
    height, width = x.shape[-2:]

    def grid(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        position = torch.arange(size, dtype=torch.float32, device=x.device) * torch.tensor(
            n_in / size, dtype=torch.float32
        )
        low = position.long()
        return low, (low + 1).clamp_max(n_in - 1), position - low.float()

    y0, y1, dy = grid(height)
    x0, x1, dx = grid(width)
    top = x[..., y0, :]
    bottom = x[..., y1, :]
    top = top[..., x0] + (top[..., x1] - top[..., x0]) * dx
    bottom = bottom[..., x0] + (bottom[..., x1] - bottom[..., x0]) * dx
    return top + (bottom - top) * dy.view(-1, 1)


PREPROCESSING = ("pytorch-fid", "torch-fidelity")
_DEFAULT_FILENAMES = {
    "pytorch-fid": "pt_inception-2015-12-05-6726825d.pth",
    "torch-fidelity": "weights-inception-2015-12-05-6726825d.pth",
}


class InceptionV3Features(nn.Module):
    """2048-d pool3 features of uint8 images (B, 3, H, W), resized to 299 × 299 as the FID protocol does.

    Args:
        preprocessing: ``"pytorch-fid"`` (default) or ``"torch-fidelity"`` (``inception-v3-compat``, the FVQ
            paper's rFID); see the module docstring.
    """

    def __init__(self, preprocessing: str = "pytorch-fid"):
        super().__init__()
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING}, not {preprocessing!r}")
        self.preprocessing = preprocessing
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = _A(192, 32), _A(256, 64), _A(288, 64)
        self.Mixed_6a = _B(288)
        self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = (
            _C(768, 128),
            _C(768, 160),
            _C(768, 160),
            _C(768, 192),
        )
        self.Mixed_7a = _D(768)
        self.Mixed_7b, self.Mixed_7c = _E(1280, max_pool=False), _E(2048, max_pool=True)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionV3Features:
        return super().train(False)  # batch-norm statistics are the graph's, never updated

    @classmethod
    def from_pretrained(
        cls, source: str, filename: str | None = None, preprocessing: str = "pytorch-fid"
    ) -> InceptionV3Features:
        """Load the FID Inception weights from a local file (.pth / .safetensors) or a Hub repository holding ``filename``.

        ``filename`` defaults to pytorch-fid's or torch-fidelity's file name, after ``preprocessing``.
        """
        filename = filename or _DEFAULT_FILENAMES.get(preprocessing, _DEFAULT_FILENAMES["pytorch-fid"])
        if not os.path.isfile(source):
            from huggingface_hub import hf_hub_download

            try:
                source = hf_hub_download(source, filename)
            except Exception as error:
                raise FileNotFoundError(
                    f"no Inception weights at {source!r} ({type(error).__name__}). rFID needs pytorch-fid's "
                    f"pt_inception-2015-12-05-6726825d.pth or torch-fidelity's weights-inception-2015-12-05-6726825d.pth "
                    f"(looked for {filename}): pass a local file or a Hub repository that holds it."
                ) from error
        if source.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(source)
        else:
            state = torch.load(source, map_location="cpu", weights_only=True)
        model = cls(preprocessing)
        # torch-fidelity's file has no num_batches_tracked; BatchNorm fills it in when loading a plain dict
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", "AuxLogits."))}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{source} is not an FID InceptionV3 checkpoint: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return model

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The network input (B, 3, 299, 299) of uint8 images (or floats in [0, 1]), after ``preprocessing``."""
        if self.preprocessing == "torch-fidelity":
            x = images.float() if images.dtype == torch.uint8 else images.float() * 255.0
            return (resize_bilinear_tf1(x, 299) - 128) / 128
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
