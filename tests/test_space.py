"""The Space without a browser: reading uploads safely, the Reconstruct pictures, streaming generation, the model
config, the card's usage, ZeroGPU/CPU, the Space card and requirements, and ``python spaces/app.py`` itself.

The helpers at the top (tiny models in a folder, the bad files, a server on a free port) are shared with
test_space_browser.py and test_space_client.py.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_model
from PIL import Image
from test_generation import tiny_pipeline

from fvq_hf import FVQModel, MultiCodeFVQModel
from fvq_hf.data import center_crop_resize, load_demo_photos, pil_to_tensor, tensor_to_pil
from fvq_hf.space import (
    ImageInputError,
    ModelRegistry,
    ModelUnavailable,
    load_image,
    load_space_config,
    pick_device,
    read_card_usage,
    reconstruct,
    resolve_label,
    stream_generation,
    token_map,
    working_size,
)
from fvq_hf.space.generation import label_choices
from fvq_hf.space.result_files import ResultFiles

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "spaces"
CARD_USAGE = 0.875


# ------------------------------------------------------------------------------------------------ helpers
def make_space_models(folder: Path) -> dict[str, Path]:
    """A folded tiny tokenizer with a card that reports codebook usage, and a tiny FVQPipeline (16 px, 4 × 4
    tokens, classes zero … four), saved as the demo models are."""
    from huggingface_hub import ModelCard

    from fvq_hf.hub.model_card import eval_results, model_card_data

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = small_model(codebook_size=64).fold()
    tokenizer.save_pretrained(folder / "tokenizer")
    metrics = eval_results({"usage": CARD_USAGE, "psnr": 20.0}, "held-out demo photos")
    card_data = model_card_data(model_name="tiny", eval_results=metrics)
    ModelCard(f"---\n{card_data.to_yaml()}\n---\n# tiny test tokenizer\n").save(folder / "tokenizer" / "README.md")
    tiny_pipeline().save_pretrained(folder / "generator")
    return {"tokenizer": folder / "tokenizer", "generator": folder / "generator"}


def write_config(folder: Path, models: dict[str, Path], missing: bool = True) -> Path:
    """A models.yaml serving the tiny models (a ``multicode`` tokenizer too when ``models`` has one), plus
    (``missing``) one tokenizer whose folder does not exist."""
    lines = [
        "tokenizers:",
        "  - name: tiny tokenizer",
        f"    path: {models['tokenizer']}",
    ]
    if "multicode" in models:
        lines += ["  - name: tiny VAR tokenizer", f"    path: {models['multicode']}"]
    if missing:
        lines += [
            "  - name: not trained yet",
            "    path: does-not-exist",
            "    command: python training/train_tokenizer.py --config training/configs/demo-cpu.yaml",
        ]
    lines += ["generators:", "  - name: tiny generator", f"    path: {models['generator']}"]
    path = folder / "models.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config: Path, **build_kwargs):
    """build_demo + launch_demo on 127.0.0.1 at a free port, in this process; returns (demo, url)."""
    from fvq_hf.space import build_demo, launch_demo

    demo = build_demo(config, **build_kwargs)
    launch_demo(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    return demo, demo.local_url.rstrip("/")


def coffee(folder: Path) -> Path:
    path = folder / "coffee.png"
    if not path.exists():
        load_demo_photos("heldout")["coffee.png"].save(path)
    return path


def png_with_size_only(width: int, height: int) -> bytes:
    """A PNG whose header says width × height but whose pixel data is a stub: opening it reads the header only;
    decoding it would fail. Lets a test show that the pixel limit is checked before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def make_bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files that must be refused, each with a phrase its message contains."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    files = {}

    def put(name: str, data: bytes, phrase: str):
        (folder / name).write_bytes(data)
        files[name] = (folder / name, phrase)

    put("notes.png", b"these are my notes, not a picture\n" * 20, "is not an image this app can read")
    put("empty.jpg", b"", "is empty")
    for fmt, suffix in (("PNG", "png"), ("JPEG", "jpg")):
        buffer = io.BytesIO()
        photo.save(buffer, fmt)
        put(f"truncated.{suffix}", buffer.getvalue()[: len(buffer.getvalue()) // 2], "could not be decoded")
    put("huge.png", png_with_size_only(6000, 5000), "the most this app decodes is 25.0 megapixels")
    put("bomb.png", png_with_size_only(40000, 40000), "far larger than 25.0 megapixels")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, "PNG")
    put("tiny.png", buffer.getvalue(), "only 8 × 8 pixels")
    return files


def make_odd_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files in unusual modes that must work, each with the note the page shows about it."""
    folder.mkdir(parents=True, exist_ok=True)
    base = load_demo_photos("heldout")["coffee.png"].resize((80, 60))
    files = {}

    def put(name: str, image: Image.Image, note: str, **save):
        image.save(folder / name, **save)
        files[name] = (folder / name, note)

    put("grey.png", base.convert("L"), "greyscale image")
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.linspace(0, 255, 60).round().astype(np.uint8)[:, None].repeat(80, 1)))
    put("rgba.png", rgba, "transparent pixels shown on white")
    put("palette.png", base.convert("P", palette=Image.ADAPTIVE, colors=32), "palette image")
    sixteen = np.linspace(0, 65535, 80 * 60).reshape(60, 80).astype(np.uint16)
    put("sixteen_bit.png", Image.fromarray(sixteen), "16-bit image scaled to 8 bits")
    frames = [base, base.transpose(Image.FLIP_LEFT_RIGHT), base.rotate(180)]
    put("animated.gif", frames[0], "the first of its 3 frames", save_all=True, append_images=frames[1:])
    return files


# ------------------------------------------------------------------------------------------------ images
def test_bad_files_are_refused_with_a_message(tmp_path):
    for name, (path, phrase) in make_bad_files(tmp_path).items():
        with pytest.raises(ImageInputError, match=phrase) as refused:
            load_image(path)
        assert str(refused.value).startswith(name)  # the message names the file
    with pytest.raises(ImageInputError, match="No image was received"):
        load_image(tmp_path / "nothing-here.png")
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 3 * 2**20)
    with pytest.raises(ImageInputError, match="big.png is 3.0 MB; files up to 2 MB are accepted"):
        load_image(big, max_file_size=2 * 2**20)


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    path.write_bytes(png_with_size_only(6000, 5000))

    def no_decoding(self):
        raise AssertionError("decoded a file over the pixel limit")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    with pytest.raises(ImageInputError, match="6,000 × 5,000 pixels"):
        load_image(path)


def test_unusual_modes_become_rgb(tmp_path):
    files = make_odd_files(tmp_path)
    for name, (path, note) in files.items():
        loaded = load_image(path)
        assert loaded.image.mode == "RGB" and loaded.image.size == (80, 60), name
        assert any(note in n for n in loaded.notes), (name, loaded.notes)
    # 16 bits are scaled, not clipped: 0 → 0, 65,535 → 255, the middle stays in the middle
    grey = np.asarray(load_image(files["sixteen_bit.png"][0]).image)[..., 0]
    assert grey.min() == 0 and grey.max() == 255 and abs(int(grey[30, 40]) - 128) <= 2
    # transparency goes on white: a fully transparent pixel is white
    rgba = np.asarray(load_image(files["rgba.png"][0]).image)
    assert (rgba[0, :] == 255).all()


def test_working_size_is_a_multiple_of_the_downsampling():
    assert working_size(256, 4) == 256 and working_size(250, 16) == 256 and working_size(3, 8) == 8


def test_reconstruct_is_the_models_output(tmp_path):
    model = small_model(codebook_size=64).fold()
    image = Image.open(coffee(tmp_path))
    result = reconstruct(model, image, 64)
    x = pil_to_tensor(center_crop_resize(image.convert("RGB"), 64))[None]
    with torch.no_grad():
        expected = np.asarray(tensor_to_pil(model(x).sample)[0], dtype=int)
        indices = model.encode_indices(x)[0]
    got = np.asarray(result.reconstruction, dtype=int)
    assert np.abs(got - expected).max() <= 1 and (got == expected).mean() > 0.999
    assert torch.equal(result.indices, indices) and result.distinct_codes == indices.unique().numel()
    assert np.array_equal(np.asarray(result.input), np.asarray(center_crop_resize(image.convert("RGB"), 64)))
    mse = ((np.asarray(result.input, dtype=float) - got) ** 2).mean()
    assert result.psnr == pytest.approx(10 * np.log10(255**2 / mse))
    assert result.token_map.size == (64, 64) and result.difference.size == (64, 64)
    assert result.stats()["tokens"] == [16, 16]


def small_multicode_model(preset: str) -> MultiCodeFVQModel:
    """An RQ-VAE (``rq-tiny``: 4 depths) or VAR (``var-tiny``: scales 1 … 8, 32 px) tokenizer with 64 codes (the
    bridge's output layer not zero, as in ``small_model``, so that the codes differ)."""
    torch.manual_seed(0)
    return MultiCodeFVQModel.from_preset(
        preset, codebook_size=64, codebook_dim=32, bridge="S/4", bridge_output_init_std=0.02
    ).eval()


@pytest.mark.parametrize("preset", ["rq-tiny", "var-tiny"])
def test_reconstruct_shows_every_depth_or_scale_of_a_multi_code_tokenizer(tmp_path, preset):
    model = small_multicode_model(preset)
    image = Image.open(coffee(tmp_path))
    result = reconstruct(model, image, 64)
    side = 64 if preset == "rq-tiny" else 32  # VAR's tokenizer takes one size: its last scale × 4
    assert result.input.size == (side, side)
    if preset == "var-tiny":
        assert any("works at 32 px only" in note for note in result.notes)
    else:
        assert result.notes == []
    x = pil_to_tensor(center_crop_resize(image.convert("RGB"), side))[None]
    with torch.no_grad():
        indices = model.encode_indices(x)
        expected = np.asarray(tensor_to_pil(model(x).sample)[0], dtype=int)
        # the strip's k-th picture is the image decoded from the first k depths / scales only
        if preset == "rq-tiny":
            prefixes = [indices[..., :k] for k in range(1, 5)]
        else:
            prefixes = [indices[:, :end] for end in np.cumsum([pn * pn for pn in model.config.scales])]
        steps = [model.decode_indices(prefix) for prefix in prefixes]
    assert torch.equal(result.indices, indices[0])
    assert np.abs(np.asarray(result.reconstruction, dtype=int) - expected).max() <= 1
    levels = 4 if preset == "rq-tiny" else 6
    assert len(result.levels) == levels
    assert result.levels[0] == ("depth 1" if preset == "rq-tiny" else "1×1")
    width = levels * side + 2 * (levels - 1)  # side by side, 2 px apart
    assert result.token_map.size == result.coarse_to_fine.size == (width, side)
    strip = np.asarray(result.coarse_to_fine, dtype=int)
    panels = [strip[:, k * (side + 2) : k * (side + 2) + side] for k in range(levels)]
    for panel, step in zip(panels, steps, strict=True):
        assert np.abs(panel - np.asarray(tensor_to_pil(step)[0], dtype=int)).max() <= 1
    assert np.abs(panels[-1] - np.asarray(result.reconstruction, dtype=int)).max() <= 1  # the last is the whole
    assert not np.array_equal(panels[0], panels[-1])  # the first level alone is coarser
    assert result.stats()["tokens"] == list(indices[0].shape) and result.stats()["levels"] == result.levels
    assert result.tokens == ("16 × 16 × 4 (4 depths)" if preset == "rq-tiny" else "130 in 6 scales (1×1 … 8×8)")


def test_the_registry_loads_whichever_tokenizer_a_folder_holds(tmp_path):
    small_multicode_model("var-tiny").save_pretrained(tmp_path / "var")
    small_model(codebook_size=64).save_pretrained(tmp_path / "single")
    config = load_space_config(environ={"FVQ_SPACE_TOKENIZERS": f"var={tmp_path / 'var'},one={tmp_path / 'single'}"})
    registry = ModelRegistry(config, device="cpu")
    assert type(registry.tokenizer("var")) is MultiCodeFVQModel and type(registry.tokenizer("one")) is FVQModel
    assert not registry.tokenizer("var").training


def test_result_files_give_every_identical_result_a_complete_file_of_its_own(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    files = ResultFiles(tmp_path / "results")

    def save_and_read(_):  # the same image from many requests at once, each read back as soon as it is returned
        path = files.save(image, "recon")
        return path, np.asarray(Image.open(path).convert("RGB"))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(save_and_read, range(64)))
    paths = [path for path, _ in results]
    assert len(set(paths)) == 64 and all(os.path.basename(p).startswith("recon-") for p in paths)
    for _, pixels in results:
        assert np.array_equal(pixels, np.asarray(image))
    assert sorted(os.listdir(tmp_path / "results")) == sorted(os.path.basename(p) for p in paths)


def test_result_files_older_than_their_age_are_removed_as_new_ones_come(tmp_path):
    files = ResultFiles(tmp_path, max_age_s=60)
    image = Image.new("RGB", (8, 8), "red")
    old, recent = files.save(image), files.save(image)
    os.utime(old, (time.time() - 120, time.time() - 120))
    new = files.save(image)
    assert not os.path.exists(old) and os.path.exists(recent) and os.path.exists(new)
    default = ResultFiles()
    assert os.path.realpath(default.folder).startswith(os.path.realpath(tempfile.gettempdir()))
    os.rmdir(default.folder)
    with pytest.raises(ValueError, match="max_age_s"):
        ResultFiles(tmp_path, max_age_s=0)


def test_token_map_colours_each_code_the_same_way():
    grid = torch.tensor([[0, 1], [1, 5]])
    picture = np.asarray(token_map(grid, 8, cell=3))
    assert picture.shape == (6, 6, 3)
    assert (picture[0, 3] == picture[3, 0]).all() and not (picture[0, 0] == picture[0, 3]).all()


# ------------------------------------------------------------------------------------------------ generation
def test_stream_generation_ends_with_the_pipelines_images_and_previews_each_row():
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    updates = list(stream_generation(pipe, "three", num_images=2, seed=7, guidance_scale=2.0, top_k=10))
    assert [u.step for u in updates[:-1]] == list(range(1, 17))
    assert [u.step for u in updates[:-1] if u.images] == [4, 8, 12]  # a preview per completed row of 4 tokens
    expected = pipe([3], guidance_scale=2.0, top_k=10, num_images_per_label=2,
                    generator=torch.Generator().manual_seed(7)).images  # fmt: skip
    final = updates[-1]
    assert final.final and len(final.images) == 2
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(final.images, expected))


def test_labels_from_the_dropdown_and_bad_settings():
    pipe = tiny_pipeline()
    assert label_choices(pipe) == ["zero", "one, uno", "two", "three", "four"]
    assert resolve_label(pipe, "one, uno") == 1 and resolve_label(pipe, "uno") == 1
    assert resolve_label(pipe, "class 2") == 2 and resolve_label(pipe, 4) == 4 and resolve_label(pipe, "3") == 3
    with pytest.raises(ValueError, match="Did you mean 'three'"):
        resolve_label(pipe, "thre")
    with pytest.raises(ValueError, match="out of range"):
        resolve_label(pipe, 9)
    for bad, phrase in [({"num_images": 0}, "number of images"), ({"temperature": 0}, "temperature"),
                        ({"top_p": 0}, "top-p"), ({"top_k": -1}, "top-k"), ({"seed": -1}, "seed")]:  # fmt: skip
        with pytest.raises(ValueError, match=phrase):
            next(stream_generation(pipe, "two", **bad))


# ------------------------------------------------------------------------------------------------ models
def test_config_file_env_and_missing_models(tmp_path, monkeypatch):
    models = make_space_models(tmp_path / "models")
    config = load_space_config(write_config(tmp_path, models), environ={})
    assert [s.name for s in config.tokenizers] == ["tiny tokenizer", "not trained yet"]
    missing = config.tokenizers[1]
    assert missing.path == str(tmp_path / "does-not-exist") and not missing.available  # relative to the file
    assert "Make it with `python training/train_tokenizer.py --config training/configs/demo-cpu.yaml`" in (
        missing.missing_message()
    )
    (tmp_path / "does-not-exist").mkdir()  # a training run that has not written its model yet
    assert not missing.available and "holds no finished model yet (no config.json" in missing.missing_message()
    registry = ModelRegistry(config, device="cpu")
    assert registry.tokenizer("tiny tokenizer") is registry.tokenizer("tiny tokenizer")  # loaded once
    with pytest.raises(ModelUnavailable, match="train_tokenizer.py"):
        registry.tokenizer("not trained yet")
    assert registry.card_usage("tiny tokenizer").usage == CARD_USAGE
    assert registry.pipeline("tiny generator").get_label_ids("uno") == [1]

    env = {"FVQ_SPACE_TOKENIZERS": f"mine={models['tokenizer']}, org/fvq-16k", "FVQ_SPACE_GENERATORS": ""}
    config = load_space_config(write_config(tmp_path, models), environ=env)
    assert [(s.name, s.path, s.hub_id) for s in config.tokenizers] == [
        ("mine", str(models["tokenizer"]), None),
        ("org/fvq-16k", None, "org/fvq-16k"),
    ]
    assert config.generators == []
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    offline = config.tokenizers[1]
    assert not offline.available and "the Hub is offline with `org/fvq-16k` not in the cache" in (
        offline.missing_message()
    )
    monkeypatch.setenv("FVQ_SPACE_CONFIG", str(write_config(tmp_path, models, missing=False)))
    assert [s.name for s in load_space_config().tokenizers] == ["tiny tokenizer"]

    (tmp_path / "bad.yaml").write_text("tokenizers:\n  - {name: a, folder: x}\n")
    with pytest.raises(ValueError, match="unknown model config key"):
        load_space_config(tmp_path / "bad.yaml", environ={})
    (tmp_path / "twice.yaml").write_text("tokenizers:\n  - {name: a, path: x}\n  - {name: a, path: y}\n")
    with pytest.raises(ValueError, match="used twice"):
        load_space_config(tmp_path / "twice.yaml", environ={})


def test_card_usage_is_read_from_model_index(tmp_path):
    models = make_space_models(tmp_path)
    usage = read_card_usage(models["tokenizer"])
    assert usage.usage == CARD_USAGE and usage.dataset == "held-out demo photos"
    assert read_card_usage(models["generator"]) is None  # no card


def test_cpu_without_a_gpu_and_the_device_override(monkeypatch):
    monkeypatch.delenv("FVQ_SPACE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")
    monkeypatch.setenv("FVQ_SPACE_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


def test_spaces_gpu_wraps_the_handlers_when_installed(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from fvq_hf.space import build_demo, gpu_decorator

    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    monkeypatch.setattr("builtins.__import__", _refuse("spaces", __import__))
    assert gpu_decorator()(len) is len  # not installed: the identity
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "spaces", types.ModuleType("spaces"))  # this repository's spaces/ folder
    assert gpu_decorator()(len) is len
    wrapped = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda fn: wrapped.append(fn.__name__) or fn
    monkeypatch.setitem(sys.modules, "spaces", fake)
    models = make_space_models(tmp_path)
    build_demo(write_config(tmp_path, models), device="cpu", examples=[])
    assert wrapped == ["on_reconstruct", "on_generate"]


def _refuse(name, real_import):
    def guarded(module, *args, **kwargs):
        if module == name:
            raise ImportError(f"no module named {name!r}")
        return real_import(module, *args, **kwargs)

    return guarded


# ------------------------------------------------------------------------------------------------ the Space folder
def test_space_card_parses_and_names_its_app_file():
    gradio = pytest.importorskip("gradio")
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(SPACE / "README.md")
    data = card.data
    assert data.sdk == "gradio"
    assert data.sdk_version == gradio.__version__, "the card's sdk_version is the gradio the tests run with"
    assert (SPACE / data.app_file).is_file() and data.app_file == "app.py"
    assert data.python_version and data.license == "apache-2.0"
    assert data.models == load_space_config(SPACE / "models.yaml", environ={}).hub_ids()


def test_requirements_cover_the_package_dependencies():
    tomllib = pytest.importorskip("tomllib")
    import re

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = lambda requirement: re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")
    required = {name(r) for r in project["dependencies"]}
    listed = {name(line) for line in (SPACE / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")}  # fmt: skip
    assert required <= listed, f"add {sorted(required - listed)} to spaces/requirements.txt"
    extras = project["optional-dependencies"]
    assert "gradio" in {name(r) for r in extras["space"]}
    assert {"playwright", "gradio-client"} <= {name(r) for r in extras["test"]}


def test_app_py_serves_and_names_the_command_for_a_missing_model(tmp_path):
    pytest.importorskip("gradio")
    models = make_space_models(tmp_path)
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, str(SPACE / "app.py"), "--config", str(write_config(tmp_path, models)), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        output, deadline = [], time.time() + 120
        while time.time() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            output.append(line)
            if "Running on local URL" in line:
                break
        text = "".join(output)
        assert f"http://127.0.0.1:{port}" in text, text
        assert "MISSING" in text and "train_tokenizer.py --config training/configs/demo-cpu.yaml" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as response:
            page_config = response.read().decode()
        assert "not trained yet" in page_config and "Make it with" in page_config
        assert "tiny generator" in page_config and "one, uno" in page_config
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_push_space_stages_the_app_with_the_package_beside_it(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("push_space", SPACE / "push_space.py")
    push_space = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(push_space)
    files = push_space.stage(str(tmp_path))
    assert {"README.md", "app.py", "models.yaml", "requirements.txt"} <= set(files)
    assert {"fvq_hf/__init__.py", "fvq_hf/space/ui.py", "fvq_hf/model_cards/trained_tokenizer.md"} <= set(files)
    assert "push_space.py" not in files and not any("__pycache__" in f for f in files)
    # as on the Hub: app.py's folder first on the path, so the staged copy is the one imported
    code = "import fvq_hf.space, fvq_hf.hub.model_card as m, sys; print(fvq_hf.space.__file__); m.render_model_card"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path / "fvq_hf" / "space" / "__init__.py")


def test_the_generate_tab_starts_from_the_pipelines_own_sampling_settings(tmp_path):
    """A pipeline saved with its recipe opens in the Space at that recipe, as pipe(...) samples it; the sliders
    follow when another generator is picked."""
    from fvq_hf.space import build_demo

    models = make_space_models(tmp_path / "models")
    recipe = {"guidance_scale": 3.25, "temperature": 0.9, "top_k": 7, "top_p": 0.95}
    tiny_pipeline(sampling_defaults=recipe).save_pretrained(tmp_path / "models" / "generator")
    config = write_config(tmp_path, models, missing=False)
    config.write_text(config.read_text() + f"  - name: plain generator\n    path: {tmp_path / 'plain'}\n")
    tiny_pipeline().save_pretrained(tmp_path / "plain")
    demo = build_demo(config, device="cpu", examples=[])
    sliders = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    shown = {name: sliders[f"gen-{name.replace('_scale', '').replace('_', '-')}"].value for name in recipe}
    assert shown == recipe

    changed = next(f for f in demo.fns.values() if f.api_name == "generator_classes").fn("plain generator")
    values = [update.value for update in changed[1:]]
    plain = tiny_pipeline().sampling_settings()
    assert values == [plain[k] for k in ("guidance_scale", "temperature", "top_k", "top_p")]


def test_the_page_names_a_tokenizer_and_never_its_machine_folder(tmp_path, monkeypatch):
    from fvq_hf.space.ui import tokenizer_info

    models = make_space_models(tmp_path / "models")
    registry = ModelRegistry(load_space_config(write_config(tmp_path, models), environ={}), device="cpu")
    info = tokenizer_info(registry, "tiny tokenizer")
    assert info.startswith("**tiny tokenizer** (`tokenizer`)") and str(tmp_path) not in info  # outside the cwd
    monkeypatch.chdir(tmp_path)  # run from a folder that holds the models: shown relative to it
    assert registry.spec("tokenizers", "tiny tokenizer").shown_source == os.path.join("models", "tokenizer")
