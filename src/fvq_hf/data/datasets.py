"""Training and evaluation datasets: an image folder, any Hugging Face ``datasets`` image dataset, the demo photos.

Training crops are ADM's by default (``train_crop="adm"``, the crop LlamaGen's and FVQ's tokenizer training
uses): the short side is resized to a random length between r and r / 0.8, then a random r × r square is cut
and flipped horizontally with probability ½, so a crop keeps 80 %–100 % of the short side. ``"short_side"``
cuts a random square of the whole short side and resizes it to r. Evaluation uses centre crop + resize.

Augmentations draw from a generator seeded by (seed, epoch, index), not from
the global RNG, so a batch is the same whichever worker builds it and a resumed run sees exactly the batches
an uninterrupted one would. Unreadable images never stop a run: the item comes back as ``None``, the collate
function drops it and counts it in the batch's ``"skipped"`` entry, and a warning names the file.
"""

from __future__ import annotations

import logging
import math
import os
import random

import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, Subset

from .demo import demo_heldout_boxes, load_demo_photos
from .images import center_crop_resize, pil_to_tensor

logger = logging.getLogger(__name__)

# positions tried for a crop clear of held-out boxes (at the demo's sizes a third or more of them are clear)
_MAX_CROP_DRAWS = 1000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def list_image_files(root: str) -> list[str]:
    """Every image file below ``root`` (recursively), sorted; an error naming the folder when there is none."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root!r} is not a folder")
    files = sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(root)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) below {root!r}")
    return files


def holdout_split(count: int, fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices (training, held out) of ``count`` items: ``round(fraction · count)`` of them (at least one) drawn
    with ``seed``, the same every time for the same count, fraction and seed; both lists sorted, disjoint."""
    if not 0 < fraction < 1:
        raise ValueError(f"--validation_fraction must be between 0 and 1, got {fraction}")
    held = max(1, round(fraction * count))
    if held >= count:
        raise ValueError(
            f"--validation_fraction {fraction} of {count} image(s) leaves none to train on: use a smaller fraction"
        )
    order = list(range(count))
    random.Random(f"holdout-{seed}").shuffle(order)
    return sorted(order[held:]), sorted(order[:held])


# ------------------------------------------------------------------------------------ transforms
def random_crop_flip(
    image: Image.Image,
    size: int,
    generator: random.Random,
    max_zoom_out: float = 1.0,
    max_side: int | None = None,
    avoid: tuple[tuple[int, int, int, int], ...] = (),
) -> Image.Image:
    """A random square crop resized to ``size``, flipped horizontally with probability ½. Its side is drawn
    uniformly between ``largest / max_zoom_out`` and ``largest`` (never below ``size``), where ``largest`` is the
    image's short side, or ``max_side`` where that is smaller. With ``avoid`` (boxes ``(left, top, right, bottom)``
    in the image's pixels) the position is drawn uniformly among those where the crop overlaps none of them."""
    w, h = image.size
    short = min(w, h)
    if short < size:  # upscale small images so a crop fits
        if avoid:
            raise ValueError(f"a {w}x{h} image is smaller than the crop ({size} px): boxes to avoid need a larger one")
        image = image.resize((max(size, round(w * size / short)), max(size, round(h * size / short))), Image.BICUBIC)
        w, h = image.size
        short = min(w, h)
    largest = short if max_side is None else max(size, min(short, max_side))
    side = generator.randint(max(size, int(largest / max_zoom_out)), largest)
    for _ in range(_MAX_CROP_DRAWS):
        left, top = generator.randint(0, w - side), generator.randint(0, h - side)
        if not any(left < r and left + side > l and top < b and top + side > t for l, t, r, b in avoid):
            break
    else:
        raise ValueError(
            f"no {side} px crop of the {w}x{h} image found clear of the boxes {avoid} in {_MAX_CROP_DRAWS} draws"
        )
    crop = image.crop((left, top, left + side, top + side))
    if side != size:
        crop = crop.resize((size, size), Image.BICUBIC)
    if generator.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return crop


def adm_random_crop_flip(
    image: Image.Image,
    size: int,
    generator: random.Random,
    min_crop_frac: float = 0.8,
    max_crop_frac: float = 1.0,
) -> Image.Image:
    """ADM's training crop: resize the short side to a random length L in [⌈size / max_crop_frac⌉,
    ⌈size / min_crop_frac⌉] (both ends included), cut a random ``size`` × ``size`` square, flip it horizontally
    with probability ½. The square keeps between ``min_crop_frac`` and ``max_crop_frac`` of the short side.

    As in ADM, large downscales go through repeated 2× box filtering before the final bicubic resize, so a
    4-megapixel photo is not aliased into a 256 px one.
    """
    low, high = math.ceil(size / max_crop_frac), math.ceil(size / min_crop_frac)
    short_side = generator.randint(low, high)
    while min(image.size) >= 2 * short_side:
        image = image.resize((image.size[0] // 2, image.size[1] // 2), Image.BOX)
    scale = short_side / min(image.size)
    image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BICUBIC)
    w, h = image.size
    top, left = generator.randint(0, h - size), generator.randint(0, w - size)
    crop = image.crop((left, top, left + size, top + size))
    if generator.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return crop


TRAIN_CROPS = ("adm", "short_side")


def _generator(seed: int, epoch: int, index: int) -> random.Random:
    return random.Random((seed * 1_000_003 + epoch) * 1_000_003 + index)


class _Augmented:
    """Shared by the datasets: train (random crop + flip) or eval (centre crop + resize) transform, and the epoch."""

    def __init__(self, resolution: int, train: bool, seed: int, max_zoom_out: float, crop: str = "short_side"):
        if crop not in TRAIN_CROPS:
            raise ValueError(f"unknown training crop {crop!r}; choose one of {', '.join(TRAIN_CROPS)}")
        self.resolution, self.train, self.seed, self.max_zoom_out = resolution, train, seed, max_zoom_out
        self.crop = crop
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def transform(self, image: Image.Image, index: int) -> torch.Tensor:
        image = image.convert("RGB")
        if self.train and self.crop == "adm":
            image = adm_random_crop_flip(image, self.resolution, _generator(self.seed, self.epoch, index))
        elif self.train:
            image = random_crop_flip(
                image, self.resolution, _generator(self.seed, self.epoch, index), self.max_zoom_out
            )
        else:
            image = center_crop_resize(image, self.resolution)
        return pil_to_tensor(image)


def collate_images(items: list) -> dict:
    """Stack the images that could be read; ``"skipped"`` counts those that could not."""
    images = [item for item in items if item is not None]
    return {
        "pixel_values": torch.stack(images) if images else torch.empty(0),
        "skipped": len(items) - len(images),
    }


# ------------------------------------------------------------------------------------ datasets
class ImageFolderDataset(_Augmented, Dataset):
    """Every image file below ``root`` (recursively, sorted), as (3, R, R) tensors in [-1, 1].

    ``crop`` is the training crop (``"adm"`` or ``"short_side"``, see the module's docstring). With
    ``holdout_fraction``, ``part`` picks the files :func:`holdout_split` keeps for training (``"train"``) or holds
    out (``"holdout"``), drawn with ``holdout_seed``.
    """

    def __init__(
        self,
        root: str,
        resolution: int,
        train: bool = True,
        seed: int = 0,
        max_zoom_out: float = 1.0,
        crop: str = "adm",
        holdout_fraction: float = 0.0,
        part: str = "train",
        holdout_seed: int = 0,
    ):
        super().__init__(resolution, train, seed, max_zoom_out, crop)
        self.files = list_image_files(root)
        if holdout_fraction:
            kept, held = holdout_split(len(self.files), holdout_fraction, holdout_seed)
            self.files = [self.files[i] for i in (held if part == "holdout" else kept)]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor | None:
        path = self.files[index]
        try:
            with Image.open(path) as image:
                image.load()
                return self.transform(image, index)
        except Exception as error:  # noqa: BLE001 - truncated, corrupt, not an image: skip it, never stop the run
            logger.warning("skipping unreadable image %s (%s: %s)", path, type(error).__name__, error)
            return None


class DemoCropDataset(_Augmented, Dataset):
    """Crops of the demo photographs (shipped in scikit-image): random crops for ``"train"``, fixed ones otherwise.

    Three splits, so that usage can be measured as the paper measures it, on images from the training
    distribution that were never trained on, and on a harder set beside it:

    - ``"train"``: the seven training photographs, random crops clear of their held-out parts;
    - ``"parts"``: those parts, never trained on: the same photographs, held out;
    - ``"heldout"``: two other photographs, never seen.

    ``heldout_layout`` says which parts (a quarter of each photo either way, see ``demo_heldout_boxes``):
    ``"cells"``, four cells of a 4 × 4 grid, one in every row and column (the default); ``"band"``, the bottom
    quarter; ``"none"``, nothing held out (training on the whole photos).

    Every photograph is first brought down to a short side of at most 4 × ``resolution`` × ``max_zoom_out``
    (384 px at the defaults). Crops are square, resized to ``resolution`` and flipped with probability ½; their
    side is drawn uniformly from [``resolution``, ``resolution`` × ``max_zoom_out``] in every split, capped per
    photograph by the size of its held-out parts, so training and evaluation crops show the same scales. Crops
    of ``"parts"`` (as many from each part) and ``"heldout"`` are the same for an index every time.
    """

    def __init__(
        self,
        split: str = "train",
        resolution: int = 32,
        num_samples: int = 4096,
        train: bool | None = None,
        seed: int = 0,
        max_zoom_out: float = 3.0,
        heldout_layout: str = "cells",
    ):
        if split not in ("train", "parts", "heldout"):
            raise ValueError(f"Unknown demo crop split {split!r}; choose 'train', 'parts' or 'heldout'.")
        if split == "parts" and heldout_layout == "none":
            raise ValueError("the 'parts' split needs a held-out layout: heldout_layout='cells' or 'band'")
        demo_heldout_boxes((1, 1), heldout_layout)  # an unknown layout fails here, with the choices
        train = split == "train" if train is None else train
        super().__init__(resolution, train, seed, max_zoom_out)
        self.split, self.heldout_layout = split, heldout_layout
        # downscale once so crops are drawn at a handful of scales, not from 4-megapixel originals
        self.photos, self.largest_crops, self.avoid = [], [], []
        for image in load_demo_photos("heldout" if split == "heldout" else "train").values():
            scale = min(1.0, 4 * resolution * max_zoom_out / min(image.size))
            size = (max(resolution, round(image.size[0] * scale)), max(resolution, round(image.size[1] * scale)))
            image = image.resize(size, Image.BICUBIC) if scale < 1 else image
            boxes = demo_heldout_boxes(image.size, heldout_layout) if split != "heldout" else []
            largest = min([round(resolution * max_zoom_out)] + [min(r - l, b - t) for l, t, r, b in boxes])
            largest = max(resolution, largest)
            if split == "parts":
                self.photos += [image.crop(box) for box in boxes]
                self.largest_crops += [largest] * len(boxes)
                self.avoid += [()] * len(boxes)
            else:
                self.photos.append(image)
                self.largest_crops.append(largest)
                self.avoid.append(tuple(boxes))
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> torch.Tensor:
        photo = index % len(self.photos)
        # training: a new crop every epoch; evaluation: the same crop (and flip) for an index every time
        generator = _generator(self.seed, self.epoch, index) if self.train else _generator(self.seed + 1, 0, index)
        # sides from the resolution up to this photo's largest crop, whatever fraction of the region that is
        crop = random_crop_flip(
            self.photos[photo],
            self.resolution,
            generator,
            max_zoom_out=math.inf,
            max_side=self.largest_crops[photo],
            avoid=self.avoid[photo],
        )
        return pil_to_tensor(crop)


class HFImageDataset(_Augmented, IterableDataset):
    """A Hugging Face ``datasets`` image dataset (Hub name or local path), streamed or not.

    Images are decoded here, not by ``datasets``, so an undecodable row is skipped and counted instead of
    raising inside the library. Sharded across processes and workers by row index.
    """

    def __init__(
        self,
        name_or_path: str,
        resolution: int,
        image_column: str = "image",
        split: str = "train",
        streaming: bool = False,
        train: bool = True,
        seed: int = 0,
        config_name: str | None = None,
        cache_dir: str | None = None,
        crop: str = "adm",
        holdout_fraction: float = 0.0,
        part: str = "train",
        holdout_seed: int = 0,
    ):
        super().__init__(resolution, train, seed, 1.0, crop)
        import datasets

        if holdout_fraction and streaming:
            raise ValueError(
                "--validation_fraction cannot hold out rows of a streamed dataset: pass --validation_split "
                "(a split of the dataset) instead, or drop --streaming"
            )
        self.dataset = datasets.load_dataset(
            name_or_path, config_name, split=split, streaming=streaming, cache_dir=cache_dir
        )
        if holdout_fraction:  # rows held out by index, before any shuffling: the same rows every time
            kept, held = holdout_split(len(self.dataset), holdout_fraction, holdout_seed)
            self.dataset = self.dataset.select(held if part == "holdout" else kept)
        columns = self.dataset.column_names or []
        if columns and image_column not in columns:
            raise ValueError(
                f"--image_column {image_column!r} is not a column of {name_or_path!r}; columns: {', '.join(columns)}"
            )
        self.dataset = self.dataset.cast_column(image_column, datasets.Image(decode=False))
        self.image_column = image_column
        self.rank, self.world_size = 0, 1

    def shard(self, rank: int, world_size: int) -> HFImageDataset:
        self.rank, self.world_size = rank, world_size
        return self

    def _decode(self, value) -> Image.Image:
        import io

        if value.get("bytes") is not None:
            return Image.open(io.BytesIO(value["bytes"]))
        return Image.open(value["path"])

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        stride, offset = self.world_size * workers, self.rank * workers + worker
        dataset = self.dataset
        if self.train and hasattr(dataset, "shuffle"):
            dataset = dataset.shuffle(seed=self.seed + self.epoch)
        for index, row in enumerate(dataset):
            if index % stride != offset:
                continue
            try:
                image = self._decode(row[self.image_column])
                image.load()
                yield self.transform(image, index)
            except Exception as error:  # noqa: BLE001 - any undecodable row is skipped, never stops the run
                logger.warning("skipping undecodable image in row %d (%s: %s)", index, type(error).__name__, error)
                yield None


def shard_for_process(dataset, rank: int, world_size: int):
    """This process's share of an evaluation set, every item in exactly one share.

    (Accelerate's prepared loaders pad the last batch with repeats, which would count images twice.)
    """
    if isinstance(dataset, IterableDataset):
        return dataset.shard(rank, world_size)
    return Subset(dataset, range(rank, len(dataset), world_size))


def build_dataset(
    dataset_name: str | None,
    train_data_dir: str | None,
    resolution: int,
    image_column: str = "image",
    streaming: bool = False,
    seed: int = 0,
    demo_samples: int = 4096,
    config_name: str | None = None,
    crop: str = "adm",
    holdout_fraction: float = 0.0,
    part: str = "train",
) -> Dataset | IterableDataset:
    """The training set the flags describe: a folder, a ``datasets`` dataset, or (neither) the demo photos.

    ``crop`` applies to a folder or a ``datasets`` dataset; the demo photos keep their own crops (sides of 1-3x
    the resolution, the scales their held-out parts hold). With ``holdout_fraction`` a folder or dataset is split
    by :func:`holdout_split` (seeded by ``seed``): ``part="train"`` gives the training images (random crops),
    ``part="holdout"`` the held-out ones (centre crops), never among the training ones.
    """
    if dataset_name and train_data_dir:
        raise ValueError("pass --dataset_name or --train_data_dir, not both")
    train = part == "train"
    holdout = {"holdout_fraction": holdout_fraction, "part": part, "holdout_seed": seed}
    if train_data_dir:
        return ImageFolderDataset(train_data_dir, resolution, train=train, seed=seed, crop=crop, **holdout)
    if dataset_name:
        return HFImageDataset(
            dataset_name,
            resolution,
            image_column=image_column,
            streaming=streaming,
            train=train,
            seed=seed,
            config_name=config_name,
            crop=crop,
            **holdout,
        )
    return DemoCropDataset("train", resolution, num_samples=demo_samples, seed=seed)
