"""Image handling for the Space: reading an uploaded file safely, and the pictures the Reconstruct tab shows.

Nothing here imports gradio, so it is tested without a browser. :func:`load_image` is the one place an uploaded
file is opened: it checks the byte size, reads only the header to check the pixel count *before* decoding,
and turns every kind of bad file into an :class:`ImageInputError` whose message is meant for the user.
"""

from __future__ import annotations

import colorsys
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..data import center_crop_resize, pil_to_tensor, tensor_to_pil

MAX_PIXELS = 25_000_000  # 25 megapixels, e.g. 5,000 × 5,000; checked from the header, before decoding
MAX_FILE_SIZE = 20 * 1024 * 1024  # bytes; the app passes the same limit to gradio's launch(max_file_size=...)
MIN_SIDE = 16  # pixels; anything smaller has nothing to reconstruct
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageInputError(ValueError):
    """An uploaded file the app cannot use; the message says why, in words for the person who uploaded it."""


@dataclass
class LoadedImage:
    image: Image.Image  # RGB, 8 bits per channel
    notes: list[str] = field(default_factory=list)  # what was done to make it RGB (first GIF frame, alpha, ...)


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels"


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    """Any PIL mode → 8-bit RGB: 16-bit and float images are scaled, not clipped; transparency goes on white."""
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES or mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if mode in SIXTEEN_BIT_MODES or (mode == "I" and array.max(initial=0) > 255):
            array = array / 257.0  # 0–65,535 → 0–255
            notes.append("16-bit image scaled to 8 bits")
        elif mode == "F" and array.max(initial=0) <= 1.0:
            array = array * 255.0
        grey = np.clip(np.round(array), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("transparent pixels shown on white")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "L":
        notes.append("greyscale image")
    elif mode == "P":
        notes.append("palette image")
    return image.convert("RGB")


def load_image(
    path: str | os.PathLike,
    max_pixels: int = MAX_PIXELS,
    max_file_size: int | None = MAX_FILE_SIZE,
    min_side: int = MIN_SIDE,
) -> LoadedImage:
    """Open an uploaded image file as 8-bit RGB, or raise :class:`ImageInputError` saying what is wrong with it.

    Order of checks: the file exists and is at most ``max_file_size`` bytes; PIL recognises it (only the header
    is read); width × height ≤ ``max_pixels`` (still before any pixel is decoded); each side ≥ ``min_side``;
    then the pixels are decoded (a truncated or damaged file fails here). Greyscale, palette, RGBA / LA (put on
    white), 16-bit (scaled, not clipped), CMYK and other modes become RGB; an animated image gives its first
    frame; EXIF orientation is applied. The notes say which of these happened.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageInputError("No image was received: upload an image file or pick an example.")
    name = os.path.basename(path)
    size = os.path.getsize(path)
    if max_file_size is not None and size > max_file_size:
        raise ImageInputError(
            f"{name} is {size / 2**20:.1f} MB; files up to {max_file_size / 2**20:.0f} MB are accepted."
        )
    if size == 0:
        raise ImageInputError(f"{name} is empty (0 bytes): it is not an image.")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the pixel limit below decides
            image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageInputError(
            f"{name} is not an image this app can read; upload a PNG, JPEG, WebP, GIF, BMP or TIFF file."
        ) from None
    except Image.DecompressionBombError:
        raise ImageInputError(
            f"{name} is far larger than {_megapixels(max_pixels)}, the most this app decodes; "
            "downscale it before uploading."
        ) from None
    except Exception as error:  # noqa: BLE001 - a header PIL recognises but cannot parse
        raise ImageInputError(f"{name} could not be read as an image ({error}).") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageInputError(
                f"{name} is {width:,} × {height:,} pixels ({_megapixels(width * height)}); the most this app "
                f"decodes is {_megapixels(max_pixels)}. Downscale it before uploading."
            )
        if min(width, height) < min_side:
            raise ImageInputError(
                f"{name} is only {width} × {height} pixels; images need at least {min_side} pixels on each side."
            )
        frames = getattr(image, "n_frames", 1)
        try:
            if frames > 1:
                image.seek(0)
                notes.append(f"animated image: the first of its {frames} frames is used")
            image.load()
            if image.getexif().get(0x0112, 1) != 1:
                image = ImageOps.exif_transpose(image)
                notes.append("rotated as its EXIF orientation says")
            rgb = _to_rgb(image, notes)
        except Exception as error:  # noqa: BLE001 - truncated or corrupt pixel data: a message, never a crash
            reason = "truncated" if "truncated" in str(error).lower() else "damaged"
            raise ImageInputError(
                f"{name} looks {reason}: its pixels could not be decoded ({error}). Upload the complete file."
            ) from None
    return LoadedImage(rgb, notes)


def working_size(size: float, downsample_factor: int) -> int:
    """The side the image is cropped to: ``size`` rounded to the nearest multiple of ``downsample_factor`` (≥ 1×)."""
    return max(downsample_factor, round(float(size) / downsample_factor) * downsample_factor)


# ---------------------------------------------------------------------------------------------- pictures
# anchors of a perceptually ordered black → purple → orange → yellow-white ramp (close to matplotlib's inferno)
_HEAT_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


def heat_map(error: np.ndarray) -> Image.Image:
    """A (H, W) array in [0, 1] (0 = no error, 1 = saturated) → an RGB heat map."""
    t = np.clip(np.asarray(error, dtype=np.float64), 0, 1) * (len(_HEAT_ANCHORS) - 1)
    low = np.floor(t).astype(int).clip(0, len(_HEAT_ANCHORS) - 2)
    frac = (t - low)[..., None]
    rgb = _HEAT_ANCHORS[low] * (1 - frac) + _HEAT_ANCHORS[low + 1] * frac
    return Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")


def difference_map(image: Image.Image, reconstruction: Image.Image, saturation: int = 64) -> Image.Image:
    """|image − reconstruction| averaged over RGB, as a heat map that saturates at ``saturation`` grey levels."""
    a = np.asarray(image.convert("RGB"), dtype=np.float64)
    b = np.asarray(reconstruction.convert("RGB"), dtype=np.float64)
    return heat_map(np.abs(a - b).mean(-1) / saturation)


def code_colours(codebook_size: int) -> np.ndarray:
    """One distinct-looking RGB colour per code (K, 3) uint8: golden-ratio hues, three brightness levels."""
    colours = np.empty((codebook_size, 3), dtype=np.uint8)
    for code in range(codebook_size):
        hue = (code * 0.6180339887498949) % 1.0
        value = (0.95, 0.75, 0.55)[code % 3]
        saturation = (0.75, 0.95, 0.55)[(code // 3) % 3]
        colours[code] = np.round(np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255)
    return colours


_COLOUR_CACHE: dict[int, np.ndarray] = {}


def token_map(indices: torch.Tensor | np.ndarray, codebook_size: int, cell: int = 1) -> Image.Image:
    """A (h, w) grid of code indices drawn as coloured cells, each ``cell`` × ``cell`` pixels."""
    if codebook_size not in _COLOUR_CACHE:
        _COLOUR_CACHE[codebook_size] = code_colours(codebook_size)
    grid = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64)
    picture = _COLOUR_CACHE[codebook_size][grid]
    if cell > 1:
        picture = picture.repeat(cell, 0).repeat(cell, 1)
    return Image.fromarray(picture, "RGB")


def psnr_uint8(image: Image.Image, reconstruction: Image.Image) -> float:
    """PSNR in dB of the 8-bit images as shown (RGB, peak 255); ``inf`` when they are identical."""
    a = np.asarray(image.convert("RGB"), dtype=np.float64)
    b = np.asarray(reconstruction.convert("RGB"), dtype=np.float64)
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def side_by_side(images: list[Image.Image], gap: int = 2) -> Image.Image:
    """Pictures of one height in a row, ``gap`` white pixels apart."""
    width = sum(image.width for image in images) + gap * (len(images) - 1)
    strip = Image.new("RGB", (width, max(image.height for image in images)), (255, 255, 255))
    x = 0
    for image in images:
        strip.paste(image.convert("RGB"), (x, 0))
        x += image.width + gap
    return strip


def level_maps(model, indices: torch.Tensor) -> tuple[list[torch.Tensor], list[str]]:
    """One image's codes as (h, w) index maps, one per depth (RQ-VAE) or scale (VAR), with their names; a
    single-code tokenizer's (h, w) indices are one map."""
    quantizer = getattr(model.config, "quantizer", None)
    if quantizer is None:
        return [indices], [f"{indices.shape[0]}×{indices.shape[1]}"]
    maps = [m[0] for m in model.quantize.level_indices(indices[None])]
    if quantizer == "residual":
        return maps, [f"depth {i + 1}" for i in range(len(maps))]
    return maps, [f"{m.shape[0]}×{m.shape[1]}" for m in maps]


@dataclass
class Reconstruction:
    input: Image.Image  # the centre crop the model saw
    reconstruction: Image.Image
    difference: Image.Image  # heat map
    token_map: Image.Image  # one coloured cell per token, scaled up to the image's size; multi-code: one per level
    indices: torch.Tensor  # (h, w); (h, w, depth) for RQ-VAE; VAR's flat (Σ pn²) token sequence
    psnr: float  # dB, of the 8-bit images shown
    distinct_codes: int
    codebook_size: int
    levels: list[str] = field(default_factory=list)  # multi-code: the depths or scales, coarse to fine
    coarse_to_fine: Image.Image | None = None  # multi-code: the decoded image after each level, side by side
    notes: list[str] = field(default_factory=list)  # what the tokenizer changed in the request (its fixed size)

    @property
    def tokens(self) -> str:
        """The token count as a reader wants it: 16 × 16; 8 × 8 × 4 (4 depths); 680 in 10 scales (1×1 … 16×16)."""
        shape = " × ".join(str(n) for n in self.indices.shape)
        if len(self.levels) > 1 and self.indices.ndim == 1:
            return f"{self.indices.numel():,} in {len(self.levels)} scales ({self.levels[0]} … {self.levels[-1]})"
        if len(self.levels) > 1:
            return f"{shape} ({len(self.levels)} depths)"
        return shape

    def stats(self) -> dict:
        stats = {
            "psnr_db": round(float(self.psnr), 3) if np.isfinite(self.psnr) else None,
            "tokens": list(self.indices.shape),
            "distinct_codes": self.distinct_codes,
            "codebook_size": self.codebook_size,
            "working_size": self.input.width,
        }
        if len(self.levels) > 1:
            stats["levels"] = self.levels
        return stats


@torch.no_grad()
def reconstruct(model, image: Image.Image, size: int) -> Reconstruction:
    """Centre-crop ``image`` to ``size`` × ``size`` (rounded to a multiple of the model's downsampling), encode it
    to indices and decode them: what the model's forward pass gives, as 8-bit pictures with the stats.

    A multi-code tokenizer (``MultiCodeFVQModel``) also gives a token map per depth or scale and the coarse-to-fine
    strip: the image decoded, at full size, from the codes of the first 1, 2, … levels. A multi-scale (VAR)
    tokenizer works at its one size (its last scale × its downsampling), whatever ``size`` asks."""
    factor = model.downsample_factor
    notes = []
    if getattr(model.config, "quantizer", None) == "multiscale":
        side = model.config.scales[-1] * factor
        if working_size(size, factor) != side:
            notes.append(f"this multi-scale tokenizer works at {side} px only, its last scale × its downsampling")
    else:
        side = working_size(size, factor)
    crop = center_crop_resize(image.convert("RGB"), side)
    device = next(model.parameters()).device
    x = pil_to_tensor(crop)[None].to(device)
    indices = model.encode_indices(x)
    codebook_size = int(model.config.codebook_size)
    maps, levels = level_maps(model, indices[0].cpu())
    # a multi-code tokenizer's last coarse-to-fine step is its whole decode: decoded once, shown twice
    steps = model.decode_coarse_to_fine(indices) if len(maps) > 1 else [model.decode_indices(indices)]
    recon = tensor_to_pil(steps[-1].float().cpu())[0]
    pictures = []
    for codes in maps:
        cell = side // codes.shape[0] if side % codes.shape[0] == 0 else 1
        picture = token_map(codes, codebook_size, cell)
        pictures.append(picture if picture.size == (side, side) else picture.resize((side, side), Image.NEAREST))
    strip = side_by_side([tensor_to_pil(step.float().cpu())[0] for step in steps]) if len(maps) > 1 else None
    return Reconstruction(
        input=crop,
        reconstruction=recon,
        difference=difference_map(crop, recon),
        token_map=pictures[0] if len(pictures) == 1 else side_by_side(pictures),
        indices=indices[0].cpu(),
        psnr=psnr_uint8(crop, recon),
        distinct_codes=int(indices.unique().numel()),
        codebook_size=codebook_size,
        levels=levels if len(maps) > 1 else [],
        coarse_to_fine=strip,
        notes=notes,
    )
