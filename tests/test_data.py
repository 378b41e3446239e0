import pytest
import torch
from PIL import Image

from fvq_hf.data import (
    DemoCropDataset,
    HFImageDataset,
    ImageFolderDataset,
    build_dataset,
    collate_images,
    demo_eval_samples,
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


def test_the_band_split_holds_out_the_bottom_of_every_training_photo_and_training_never_sees_it():
    train = DemoCropDataset("train", resolution=32, num_samples=8)
    band = DemoCropDataset("band", resolution=32, num_samples=8)
    whole = DemoCropDataset("train", resolution=32, num_samples=8, heldout_band=0)
    for top, bottom, full in zip(train.photos, band.photos, whole.photos):
        assert top.size[0] == bottom.size[0] == full.size[0]
        assert top.size[1] + bottom.size[1] == full.size[1] and bottom.size[1] == round(full.size[1] / 4)
        # the two regions tile the photograph: training crops come from above the band only
        assert top.tobytes() == full.crop((0, 0, *top.size)).tobytes()
        assert bottom.tobytes() == full.crop((0, top.size[1], *full.size)).tobytes()
    assert not band.train and torch.equal(band[5], DemoCropDataset("band", resolution=32, num_samples=8)[5])
    assert len(DemoCropDataset("heldout", resolution=32).photos) == 2
    with pytest.raises(ValueError, match="'train', 'band' or 'heldout'"):
        DemoCropDataset("test")
    with pytest.raises(ValueError, match="heldout_band > 0"):
        DemoCropDataset("band", heldout_band=0)


def test_train_and_band_crops_of_a_photo_are_drawn_at_the_same_scales(monkeypatch):
    train = DemoCropDataset("train", resolution=32, num_samples=700)
    band = DemoCropDataset("band", resolution=32, num_samples=700, seed=0)
    heldout = DemoCropDataset("heldout", resolution=32, num_samples=8)
    assert train.largest_crops == band.largest_crops
    assert all(32 <= largest <= 96 for largest in train.largest_crops) and heldout.largest_crops == [96, 96]
    sides = {"train": [], "band": []}
    real_crop = Image.Image.crop

    for name, dataset in (("train", train), ("band", band)):

        def recording_crop(image, box, name=name):  # the square each crop is cut as, before its resize
            sides[name].append(box[2] - box[0])
            return real_crop(image, box)

        monkeypatch.setattr(Image.Image, "crop", recording_crop)
        for index in range(0, 700, 7):  # photo 0 of seven every time
            dataset[index]
    monkeypatch.setattr(Image.Image, "crop", real_crop)
    largest = train.largest_crops[0]
    for drawn in sides.values():
        assert min(drawn) >= 32 and max(drawn) <= largest
        assert max(drawn) > largest - 16 and min(drawn) < 48  # both ends of the range are drawn


def test_demo_eval_sets_give_sixteen_tokens_per_code():
    assert demo_eval_samples(4096, 8) == 1024 and demo_eval_samples(16384, 8) == 4096
    assert demo_eval_samples(256, 4, tokens_per_code=2) == 32 and demo_eval_samples(100, 3) == 178


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
