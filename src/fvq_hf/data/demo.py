"""The embedded demo set: real photographs that ship inside scikit-image, so nothing is downloaded.

Only the colour photographs stored in the wheel itself are used (some ``skimage.data`` images are fetched
on first use and fail offline). The held-out split holds different photographs, not other crops of the
training ones.
"""

from __future__ import annotations

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
