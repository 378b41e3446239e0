import subprocess
import sys

from conftest import small_model
from PIL import Image

from fvq_hf.data import DEMO_PHOTOS, load_demo_photos
from fvq_hf.reconstruct import main


def test_demo_photos_are_real_and_split():
    photos = load_demo_photos("all")
    assert len(photos) == len(DEMO_PHOTOS["train"]) + len(DEMO_PHOTOS["heldout"])
    assert not set(DEMO_PHOTOS["train"]) & set(DEMO_PHOTOS["heldout"])
    for image in photos.values():
        assert image.mode == "RGB" and min(image.size) >= 256


def test_fresh_model_uses_one_code(tmp_path, capsys):
    main(["--output_dir", str(tmp_path), "--resolution", "32", "--split", "heldout"])
    out = capsys.readouterr().out
    # a fresh VQBridge is all zeros, so every token picks code 0
    assert "codebook usage: 1 of 4,096 codes" in out
    grid = Image.open(tmp_path / "reconstructions.png")
    assert grid.size == (32 * len(DEMO_PHOTOS["heldout"]), 64)


def test_saved_model_and_console_script(tmp_path):
    small_model().save_pretrained(tmp_path / "model")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fvq_hf.reconstruct",
            "--pretrained_model_name_or_path",
            str(tmp_path / "model"),
            "--resolution",
            "32",
            "--output_dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    used = int(result.stdout.split("codebook usage: ")[1].split(" of ")[0].replace(",", ""))
    assert 1 < used <= 1024
    assert (tmp_path / "out" / "reconstructions.png").exists()
