"""Tokenized datasets: the tokenizer's codes of every image (and of its augmented views), stored once as
safetensors shards, for training a generator without running the tokenizer at every step.

A codes folder holds ``meta.json`` and ``shard-00000.safetensors`` … ; each shard has ``codes`` (n, views, h, w)
and ``labels`` (n,). Shard i always covers images ``[i · shard_size, (i + 1) · shard_size)``, is written to a
temporary name and renamed, and is skipped when it already exists, so an interrupted extraction resumes.
"""

from __future__ import annotations

import json
import os
import random

import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from .images import center_crop_resize, pil_to_tensor

META_FILE = "meta.json"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def augmented_views(image: Image.Image, resolution: int, flip: bool = True, ten_crop: bool = False) -> torch.Tensor:
    """The views of one image that are tokenized, as (views, 3, r, r) in [-1, 1].

    Centre crop + resize to ``resolution``, and its mirror image when ``flip``; with ``ten_crop``, LlamaGen's
    ten crops instead: the image resized and centre-cropped to 1.1 × ``resolution``, then its four corners and
    centre at ``resolution``, and the mirror of each.
    """
    if not ten_crop:
        base = center_crop_resize(image, resolution)
        views = [base, ImageOps.mirror(base)] if flip else [base]
    else:
        big = center_crop_resize(image, int(resolution * 1.1))
        side, r = big.size[0], resolution
        corners = [(0, 0), (side - r, 0), (0, side - r), (side - r, side - r), ((side - r) // 2, (side - r) // 2)]
        crops = [big.crop((x, y, x + r, y + r)) for x, y in corners]
        views = crops + [ImageOps.mirror(c) for c in crops]
    return torch.stack([pil_to_tensor(v) for v in views])


def write_shard(folder: str, index: int, codes: torch.Tensor, labels: torch.Tensor) -> str:
    """Write one shard atomically (temporary name, then rename)."""
    dtype = torch.int16 if codes.max() < 2**15 else torch.int32  # halves the size of ImageNet-scale code sets
    path = os.path.join(folder, shard_name(index))
    temporary = path + ".tmp"
    save_file({"codes": codes.to(dtype).contiguous(), "labels": labels.long().contiguous()}, temporary)
    os.replace(temporary, path)
    return path


def read_meta(folder: str | os.PathLike) -> dict:
    path = os.path.join(folder, META_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{folder!r} is not a codes folder (no {META_FILE}): make one with training/extract_codes.py"
        )
    with open(path) as handle:
        return json.load(handle)


class CodesDataset(Dataset):
    """Token grids and labels from a codes folder: item i is ``(tokens (h·w,) long, label)``, one of image i's
    views, drawn from (seed, epoch, i) so a resumed run sees the views an uninterrupted one would."""

    def __init__(self, folder: str | os.PathLike, seed: int = 0, random_view: bool = True):
        self.meta = read_meta(folder)
        missing = [
            shard_name(i)
            for i in range(self.meta["num_shards"])
            if not os.path.isfile(os.path.join(folder, shard_name(i)))
        ]
        if missing:
            raise FileNotFoundError(
                f"{folder!r} is incomplete: {len(missing)} shard(s) missing ({', '.join(missing[:3])} …); "
                "run training/extract_codes.py again with the same options to finish it"
            )
        shards = [load_file(os.path.join(folder, shard_name(i))) for i in range(self.meta["num_shards"])]
        self.codes = torch.cat([s["codes"] for s in shards])
        self.labels = torch.cat([s["labels"] for s in shards])
        self.seed, self.epoch, self.random_view = seed, 0, random_view

    @property
    def id2label(self) -> dict[int, str]:
        return {int(k): v for k, v in self.meta["id2label"].items()}

    @property
    def num_views(self) -> int:
        return self.codes.shape[1]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        view = random.Random(f"{self.seed}-{self.epoch}-{index}").randrange(self.num_views) if self.random_view else 0
        return self.codes[index, view].flatten().long(), int(self.labels[index])
