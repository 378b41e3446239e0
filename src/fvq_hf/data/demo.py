"""The embedded demo set: real photographs that ship inside scikit-image, so nothing is downloaded, and the parts
of them held out for evaluation (the held-out cells, the two unseen photographs, how many crops make a measure).

Only the colour photographs stored in the wheel itself are used (some ``skimage.data`` images are fetched
on first use and fail offline). The held-out split holds different photographs, not other crops of the
training ones.
"""

from __future__ import annotations

import math
from importlib import resources

from PIL import Image

DEMO_PHOTOS = {
    "train": (
        "astronaut.png",
        "chelsea.png",
        "hubble_deep_field.jpg",
        "ihc.png",
        "motorcycle_left.png",
        "motorcycle_right.png",
        "retina.jpg",
    ),
    "heldout": ("coffee.png", "rocket.jpg"),
}


def load_demo_photos(split: str = "all") -> dict[str, Image.Image]:
    """The demo photographs of ``split`` (``"train"``, ``"heldout"`` or ``"all"``) as RGB PIL images, by file name."""
    if split == "all":
        names = DEMO_PHOTOS["train"] + DEMO_PHOTOS["heldout"]
    elif split in DEMO_PHOTOS:
        names = DEMO_PHOTOS[split]
    else:
        raise ValueError(f"Unknown demo split {split!r}; choose 'train', 'heldout' or 'all'.")
    try:
        folder = resources.files("skimage") / "data"
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "The demo photographs ship inside scikit-image, which is not installed: pip install 'fvq_hf[demo]'"
        ) from error
    photos = {}
    for name in names:
        with (folder / name).open("rb") as handle:
            photos[name] = Image.open(handle).convert("RGB")
    return photos


# ------------------------------------------------------------------------------------ the demo's held-out parts
# The parts of every training photograph never trained on, a quarter of it either way. "cells" (the default): four
# cells of a 4 x 4 grid, one in every row and every column, so the held-out set shows every part of each photo as
# training does. "band": the bottom quarter, one strip, which holds a quarter of the photo's variety, so it reads a
# usage closer to the training crops' (benchmarks/heldout_sets.py measures both; its results and the README give the
# figures).
DEMO_GRID = 4
DEMO_HELDOUT_CELLS = ((0, 1), (1, 0), (2, 3), (3, 2))  # (row, column)
DEMO_HELDOUT_LAYOUTS = ("cells", "band", "none")
EVAL_TOKENS_PER_CODE = 64
# the demo's evaluation sets, by DemoCropDataset split, as logs and cards name them: true of the demo photos only
DEMO_EVAL_SETS = {
    "parts": "held-out cells of the training photos (4 of a 4x4 grid, one per row and column, never trained on)",
    "heldout": "two photos never seen (coffee, rocket)",
}


def demo_heldout_boxes(size: tuple[int, int], layout: str = "cells") -> list[tuple[int, int, int, int]]:
    """The held-out parts of a demo photograph of ``size`` (w, h) under ``layout``, as (left, top, right, bottom)."""
    w, h = size
    if layout == "cells":
        return [
            (c * w // DEMO_GRID, r * h // DEMO_GRID, (c + 1) * w // DEMO_GRID, (r + 1) * h // DEMO_GRID)
            for r, c in DEMO_HELDOUT_CELLS
        ]
    if layout == "band":
        return [(0, h - h // DEMO_GRID, w, h)]
    if layout == "none":
        return []
    raise ValueError(f"Unknown held-out layout {layout!r}; choose one of {', '.join(DEMO_HELDOUT_LAYOUTS)}.")


def demo_eval_samples(codebook_size: int, tokens_per_side: int, tokens_per_code: int = EVAL_TOKENS_PER_CODE) -> int:
    """Crops of a held-out demo set that give ``tokens_per_code`` tokens per code.

    Exact usage only shows every code in use if tokens outnumber codes many times. Were codes drawn uniformly, a
    code would stay unused with probability e^(−tokens / K), e⁻¹⁶ at 16 per code; but a trained tokenizer's codes
    are not uniform, and a code with a quarter of its fair share is missed with probability e⁻⁴ at 16 per code.
    The paper measures on ImageNet val, 50,000 × 256 tokens: ~780 per code at 16,384 codes. What 16 and 64 tokens
    per code read on the demo is measured by ``benchmarks/heldout_sets.py`` (results in benchmarks/results/ and the
    README).
    """
    return math.ceil(tokens_per_code * codebook_size / tokens_per_side**2)
