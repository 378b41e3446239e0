import random

import pytest
import torch
from PIL import Image

from fvq_hf.data import (
    DEMO_HELDOUT_CELLS,
    DemoCropDataset,
    HFImageDataset,
    ImageFolderDataset,
    build_dataset,
    collate_images,
    demo_eval_samples,
    demo_heldout_boxes,
    random_crop_flip,
)


def test_demo_crops_are_deterministic_per_epoch_and_index():
    ds = DemoCropDataset("train", resolution=16, num_samples=8, seed=1)
    a = ds[3]
    assert a.shape == (3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, DemoCropDataset("train", resolution=16, num_samples=8, seed=1)[3])
    ds.set_epoch(1)
    assert not torch.equal(a, ds[3])  # a new epoch draws new crops
    held = DemoCropDataset("heldout", resolution=16, num_samples=4, seed=1)
    assert torch.equal(held[2], held[2]) and not held.train


def test_the_parts_split_holds_out_cells_of_every_training_photo_and_training_crops_never_touch_them(monkeypatch):
    whole = DemoCropDataset("train", resolution=32, num_samples=8, heldout_layout="none")
    for layout in ("cells", "band"):
        train = DemoCropDataset("train", resolution=32, num_samples=700, heldout_layout=layout)
        parts = DemoCropDataset("parts", resolution=32, num_samples=8, heldout_layout=layout)
        per_photo = 4 if layout == "cells" else 1
        assert len(parts.photos) == 7 * per_photo and not parts.train
        for i, full in enumerate(whole.photos):
            boxes = demo_heldout_boxes(full.size, layout)
            assert train.avoid[i] == tuple(boxes) and train.photos[i].size == full.size
            # a quarter of the photo, and the parts split is exactly those pixels
            area = sum((r - left) * (b - t) for left, t, r, b in boxes)
            assert abs(area / (full.size[0] * full.size[1]) - 0.25) < 0.02
            for box, part in zip(boxes, parts.photos[i * per_photo : (i + 1) * per_photo]):
                assert part.tobytes() == full.crop(box).tobytes()
        if layout == "cells":  # one cell in every row and every column of the 4 x 4 grid
            rows, columns = zip(*DEMO_HELDOUT_CELLS)
            assert sorted(rows) == sorted(columns) == [0, 1, 2, 3]
        cut = []
        real_crop = Image.Image.crop

        def recording_crop(image, box, cut=cut, real_crop=real_crop):
            cut.append((image.size, box))
            return real_crop(image, box)

        monkeypatch.setattr(Image.Image, "crop", recording_crop)
        for index in range(700):
            train[index]
        monkeypatch.setattr(Image.Image, "crop", real_crop)
        for size, (x0, y0, x1, y1) in cut:
            for left, top, right, bottom in demo_heldout_boxes(size, layout):
                assert x1 <= left or x0 >= right or y1 <= top or y0 >= bottom, (layout, size, (x0, y0, x1, y1))
        # and they reach every other part of the photo: some crop starts in every cell of the grid that is not held out
        if layout == "cells":
            size = whole.photos[0].size
            starts = {(4 * y0 // size[1], 4 * x0 // size[0]) for s, (x0, y0, _, _) in cut if s == size}
            assert starts >= {(r, c) for r in range(4) for c in range(4)} - set(DEMO_HELDOUT_CELLS) - {(3, 3)}
    assert torch.equal(parts[5], DemoCropDataset("parts", resolution=32, num_samples=8, heldout_layout="band")[5])
    assert len(DemoCropDataset("heldout", resolution=32).photos) == 2
    with pytest.raises(ValueError, match="'train', 'parts' or 'heldout'"):
        DemoCropDataset("test")
    with pytest.raises(ValueError, match="heldout_layout='cells' or 'band'"):
        DemoCropDataset("parts", heldout_layout="none")
    with pytest.raises(ValueError, match="Unknown held-out layout 'grid'; choose one of cells, band, none"):
        DemoCropDataset("train", heldout_layout="grid")


def test_a_crop_that_cannot_avoid_the_held_out_boxes_is_an_error_not_a_hang():
    image = Image.new("RGB", (64, 64))
    with pytest.raises(ValueError, match="no 64 px crop of the 64x64 image found clear of the boxes"):
        random_crop_flip(image, 64, random.Random(0), avoid=((0, 0, 8, 8),))


def test_train_and_parts_crops_of_a_photo_are_drawn_at_the_same_scales(monkeypatch):
    train = DemoCropDataset("train", resolution=32, num_samples=700)
    parts = DemoCropDataset("parts", resolution=32, num_samples=700, seed=0)
    heldout = DemoCropDataset("heldout", resolution=32, num_samples=8)
    assert train.largest_crops == parts.largest_crops[::4]  # four cells of each photo
    assert all(32 <= largest <= 96 for largest in train.largest_crops) and heldout.largest_crops == [96, 96]
    sides = {"train": [], "parts": []}
    real_crop = Image.Image.crop

    for name, dataset, stride in (("train", train, 7), ("parts", parts, 28)):

        def recording_crop(image, box, name=name):  # the square each crop is cut as, before its resize
            sides[name].append(box[2] - box[0])
            return real_crop(image, box)

        monkeypatch.setattr(Image.Image, "crop", recording_crop)
        for index in range(0, 700 * stride // 7, stride):  # photo 0 of seven (its first cell) every time
            dataset[index]
    monkeypatch.setattr(Image.Image, "crop", real_crop)
    largest = train.largest_crops[0]
    for drawn in sides.values():
        assert min(drawn) >= 32 and max(drawn) <= largest
        assert max(drawn) > largest - 16 and min(drawn) < 48  # both ends of the range are drawn


def test_demo_eval_sets_give_sixty_four_tokens_per_code():
    assert demo_eval_samples(4096, 8) == 4096 and demo_eval_samples(16384, 8) == 16384
    assert demo_eval_samples(256, 4, tokens_per_code=2) == 32 and demo_eval_samples(100, 3) == 712


def test_image_folder_skips_unreadable_files(tmp_path):
    for i in range(3):
        Image.new("RGB", (30, 20), (i * 50, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    ds = ImageFolderDataset(str(tmp_path), resolution=16)
    batch = collate_images([ds[i] for i in range(len(ds))])
    assert len(ds) == 4 and batch["pixel_values"].shape == (3, 3, 16, 16) and batch["skipped"] == 1
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ImageFolderDataset(str(tmp_path / "missing"), 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(str(tmp_path / "empty"), 16)


@pytest.mark.parametrize("streaming", [False, True])
def test_hugging_face_image_dataset_from_a_local_folder(tmp_path, streaming):
    folder = tmp_path / "dataset" / "train"
    folder.mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (40, 32), (0, i * 40, 0)).save(folder / f"{i}.png")
    ds = HFImageDataset(
        str(tmp_path / "dataset"), resolution=16, streaming=streaming, cache_dir=str(tmp_path / "cache")
    )
    items = list(ds)
    assert len(items) == 5 and all(x.shape == (3, 16, 16) for x in items)
    assert len(list(ds.shard(1, 2))) == 2  # rows 1 and 3 of 5
    with pytest.raises(ValueError, match="--image_column 'picture'"):
        HFImageDataset(str(tmp_path / "dataset"), 16, image_column="picture", cache_dir=str(tmp_path / "cache"))


def test_build_dataset_picks_the_source():
    assert isinstance(build_dataset(None, None, 16, demo_samples=4), DemoCropDataset)
    with pytest.raises(ValueError, match="not both"):
        build_dataset("x", "y", 16)


def _ramp(width: int = 512, height: int = 256) -> Image.Image:
    """Red = x / 2: the red values of a crop tell which columns of the original it shows."""
    x = torch.arange(width, dtype=torch.float32) / 2
    array = x.expand(height, width)
    rgb = torch.stack([array, torch.zeros_like(array), torch.zeros_like(array)], dim=-1)
    return Image.fromarray(rgb.round().to(torch.uint8).numpy())


def _covered_fraction_of_short_side(crop: torch.Tensor, short_side: int = 256) -> float:
    red = (crop[0, crop.shape[1] // 2] + 1) * 127.5  # middle row, back to 0..255
    return float(red.max() - red.min()) * 2 / short_side


def test_training_crops_are_adm_crops_of_80_to_100_percent_of_the_short_side(tmp_path):
    _ramp().save(tmp_path / "ramp.png")
    dataset = ImageFolderDataset(str(tmp_path), resolution=32, seed=0)
    fractions = []
    for epoch in range(24):
        dataset.set_epoch(epoch)
        crop = dataset[0]
        assert crop.shape == (3, 32, 32)
        fractions.append(_covered_fraction_of_short_side(crop))
    # 32 of a short side resized to 32..40 px: the crop shows 80-100 % of it, not always all of it
    assert all(0.75 < f < 1.02 for f in fractions), fractions
    assert min(fractions) < 0.85 and max(fractions) > 0.93, fractions

    whole = ImageFolderDataset(str(tmp_path), resolution=32, seed=0, crop="short_side")
    assert all(_covered_fraction_of_short_side(whole[0]) > 0.95 for _ in range(3))
    with pytest.raises(ValueError, match="unknown training crop"):
        ImageFolderDataset(str(tmp_path), resolution=32, crop="center")


def test_adm_crop_draws_the_short_side_between_r_and_r_over_0_8_inclusive():
    import random

    from fvq_hf.data import adm_random_crop_flip

    class Recording(random.Random):
        def randint(self, a, b):
            self.calls = [*getattr(self, "calls", []), (a, b)]
            return super().randint(a, b)

    for size, short_side_range in [(256, (256, 320)), (32, (32, 40)), (30, (30, 38))]:
        generator = Recording(0)
        crop = adm_random_crop_flip(_ramp(), size, generator)
        assert crop.size == (size, size) and generator.calls[0] == short_side_range
    small = adm_random_crop_flip(Image.new("RGB", (20, 12)), 16, random.Random(1))  # smaller than the crop: upscaled
    assert small.size == (16, 16)
