"""The fvq protocol's rFID reference for a CMYK file (ImageNet's validation set has some): cut and stored as CMYK,
converted to RGB only when read back, as the official crop_image.py and torch-fidelity do."""

import io

import numpy as np
import torch
from PIL import Image

from fvq_hf.evaluation.protocols import PROTOCOLS, prepare_image


def jpeg_read_back_as_rgb(image: Image.Image) -> np.ndarray:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_cmyk_reference_is_cut_and_stored_in_cmyk():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).resize((50, 40), Image.BICUBIC)
    cmyk = rgb.convert("CMYK")
    reference = prepare_image(cmyk, PROTOCOLS["fvq"], 32)["reference"].permute(1, 2, 0).numpy()
    box = (9, 4, 41, 36)  # round((50 − 32) / 2), round((40 − 32) / 2)
    expected = jpeg_read_back_as_rgb(cmyk.crop(box))
    assert np.array_equal(reference, expected)
    rgb_first = jpeg_read_back_as_rgb(cmyk.convert("RGB").crop(box))
    assert np.abs(rgb_first.astype(int) - expected.astype(int)).max() > 10  # the order matters for such files
    pixels = prepare_image(cmyk, PROTOCOLS["fvq"], 32)["pixel_values"]  # the model still sees the RGB crop
    torch.testing.assert_close(pixels, torch.from_numpy(np.array(cmyk.convert("RGB").crop(box))).permute(2, 0, 1)
                               .float() / 127.5 - 1)  # fmt: skip
