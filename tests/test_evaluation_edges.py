"""Edges the other evaluation tests leave open: BT.601 luma values themselves, ADM's crop of a portrait image whose
short side is exactly twice the size."""

import numpy as np
import torch
from PIL import Image

from fvq_hf.evaluation.metrics import rgb_to_y
from fvq_hf.evaluation.protocols import adm_center_crop


def test_bt601_luma_of_black_white_and_the_primaries():
    colours = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float32)
    y = rgb_to_y(colours.view(5, 3, 1, 1))
    assert y.shape == (5, 1, 1, 1)
    # studio range: black 16, white 235; each primary 16 + its weight (ITU-R BT.601)
    expected = torch.tensor([16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966]) / 255
    torch.testing.assert_close(y.flatten(), expected)


def test_adm_crop_of_a_portrait_whose_short_side_is_twice_the_size():
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (10, 6, 3), dtype=np.uint8)).resize((40, 70), Image.BICUBIC)
    # ADM's center_crop_arr written out: 40 ≥ 2 × 20, so one box halving to 20 × 35, scale 1, crop rows 7 … 27
    halved = image.resize((20, 35), Image.BOX).resize((20, 35), Image.BICUBIC)
    expected = np.asarray(halved)[7:27, 0:20]
    assert np.array_equal(np.asarray(adm_center_crop(image, 20)), expected)
