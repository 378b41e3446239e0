import pytest
import torch
from PIL import Image

from fvq_hf.data import DemoCropDataset, HFImageDataset, ImageFolderDataset, build_dataset, collate_images


def test_demo_crops_are_deterministic_per_epoch_and_index():
    ds = DemoCropDataset("train", resolution=16, num_samples=8, seed=1)
    a = ds[3]
    assert a.shape == (3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, DemoCropDataset("train", resolution=16, num_samples=8, seed=1)[3])
    ds.set_epoch(1)
    assert not torch.equal(a, ds[3])  # a new epoch draws new crops
    held = DemoCropDataset("heldout", resolution=16, num_samples=4, seed=1)
    assert torch.equal(held[2], held[2]) and not held.train


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
    ds = HFImageDataset(str(tmp_path / "dataset"), resolution=16, streaming=streaming, cache_dir=str(tmp_path / "cache"))
    items = list(ds)
    assert len(items) == 5 and all(x.shape == (3, 16, 16) for x in items)
    assert len(list(ds.shard(1, 2))) == 2  # rows 1 and 3 of 5
    with pytest.raises(ValueError, match="--image_column 'picture'"):
        HFImageDataset(str(tmp_path / "dataset"), 16, image_column="picture", cache_dir=str(tmp_path / "cache"))


def test_build_dataset_picks_the_source():
    assert isinstance(build_dataset(None, None, 16, demo_samples=4), DemoCropDataset)
    with pytest.raises(ValueError, match="not both"):
        build_dataset("x", "y", 16)
