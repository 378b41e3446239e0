"""The Space in a real browser: Debian's Chromium driven by Playwright's Python package (never `playwright
install`), the app served on 127.0.0.1 at a free port in this process.

Pixels are read back from the page (each <img> drawn on a canvas) and compared with FVQModel's own output and with
the pipeline's under the same seed; every bad file shows its message and the next request still works; both tabs
are photographed; the time from click to result is written to a latency JSON (recorded, not asserted).

Runs on tiny models built here ("test-models") and, when the README's demo commands have been run, on the demo
models of spaces/models.yaml ("demo-models"; $FVQ_SPACE_DEMO_CONFIG names another config listing them). Screenshots
and latency go to the ignored outputs/space-browser/<models>/ ($FVQ_SPACE_ARTIFACTS for another folder): running the
tests never rewrites a tracked file. FVQ_SPACE_UPDATE_README_FILES=1 writes the demo models' ones where the READMEs
show them (spaces/screenshots/{reconstruct,generate}.png and spaces/latency.json)."""

from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from test_space import (
    SPACE,
    coffee,
    make_bad_files,
    make_odd_files,
    make_space_models,
    start_server,
    write_config,
)

from fvq_hf import FVQModel, FVQPipeline
from fvq_hf.data import center_crop_resize, pil_to_tensor, tensor_to_pil
from fvq_hf.space.generation import MAX_IMAGES, enlarge_for_display, label_choices, resolve_label

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install -y chromium")

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAX_FILE_SIZE = 1 << 20  # 1 MB for the test server, so the oversized upload is small
TIMEOUT_MS = int(os.environ.get("FVQ_SPACE_TIMEOUT_MS", "120000"))
LATENCY_RUNS = 3

# the browser side: wait for an event to finish, whatever its outputs (they may equal the last ones)
ARM = """(selector) => {
    const tracker = document.querySelector(selector + ' [data-testid="status-tracker"]');
    // after an error the tracker stays shown (no class change while the next request runs): count it as started
    window.__fvq = {started: !tracker.classList.contains('hide'), done: false};
    const observer = new MutationObserver(() => {
        const busy = !tracker.classList.contains('hide');
        if (busy) window.__fvq.started = true;
        if (!busy && window.__fvq.started) { window.__fvq.done = true; observer.disconnect(); }
    });
    observer.observe(tracker, {attributes: true, attributeFilter: ['class']});
}"""
PIXELS = """async (img) => {
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let text = '';
    for (let i = 0; i < data.length; i += 0x8000) text += String.fromCharCode.apply(null, data.subarray(i, i + 0x8000));
    return [canvas.width, canvas.height, btoa(text)];
}"""


# ------------------------------------------------------------------------------------------------ fixtures
def demo_model_sources() -> tuple[Path, str | None, str | None]:
    from fvq_hf.space import load_space_config

    config_path = Path(os.environ.get("FVQ_SPACE_DEMO_CONFIG", SPACE / "models.yaml"))  # demo models elsewhere
    config = load_space_config(config_path, environ={})
    tokenizers = [s for s in config.tokenizers if s.exists_locally]
    generators = [s for s in config.generators if s.exists_locally]
    return config_path, tokenizers[0] if tokenizers else None, generators[0] if generators else None


@pytest.fixture(scope="module", params=["test-models", "demo-models"])
def space(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "test-models":
        models = make_space_models(tmp / "models")
        config, tokenizer_dir, generator_dir = write_config(tmp, models), models["tokenizer"], models["generator"]
        model_names = ("tiny tokenizer", "tiny generator")  # write_config's names
        label = "three"
    else:
        config, tokenizer, generator = demo_model_sources()
        if tokenizer is None or generator is None:
            pytest.skip(
                "the demo models are not there: python training/train_tokenizer.py --config "
                "training/configs/demo-cpu.yaml and python training/generation_demo.py make them"
            )
        tokenizer_dir, generator_dir, label = tokenizer.path, generator.path, None  # class 7's name, below
        model_names = (tokenizer.name, generator.name)  # as the config names them, never a machine folder
    artifacts = Path(os.environ.get("FVQ_SPACE_ARTIFACTS", SPACE.parent / "outputs" / "space-browser")) / request.param
    latency_path = artifacts / "latency.json"
    if request.param == "demo-models" and os.environ.get("FVQ_SPACE_UPDATE_README_FILES") == "1":
        artifacts, latency_path = SPACE / "screenshots", SPACE / "latency.json"
    demo, url = start_server(config, device="cpu", max_file_size=MAX_FILE_SIZE)
    pipe = FVQPipeline.from_pretrained(generator_dir)
    pipe.set_progress_bar_config(disable=True)
    label = label or label_choices(pipe)[7]  # the MNIST generator's "seven" (the dropdown shows id2label's names)
    state = SimpleNamespace(
        kind=request.param,
        url=url,
        tmp=tmp,
        tokenizer=FVQModel.from_pretrained(tokenizer_dir).eval(),
        pipe=pipe,
        label=label,
        artifacts=artifacts,
        latency={},
    )
    artifacts.mkdir(parents=True, exist_ok=True)
    yield state
    demo.close()
    if state.latency:
        write_latency(latency_path, state, *model_names)


@pytest.fixture(scope="module")
def page(space):
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(space.tmp / "chromium-profile"),  # a fresh profile every run
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(TIMEOUT_MS)
        tab = context.new_page()
        tab.goto(space.url)
        tab.wait_for_selector("#recon-button")
        yield tab
        context.close()


def write_latency(path: Path, space, tokenizer_name: str, generator_name: str) -> None:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    record = {
        "what": "seconds from the click to the result shown in the page (Chromium, the app on 127.0.0.1, CPU)",
        "models": space.kind,
        "tokenizer": tokenizer_name,
        "generator": generator_name,
        **space.latency,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1_5_15_min": [round(x, 2) for x in load] if load else None,
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


# ------------------------------------------------------------------------------------------------ helpers
def pixels(page, selector: str) -> np.ndarray:
    width, height, data = page.locator(selector).first.evaluate(PIXELS)
    return np.frombuffer(base64.b64decode(data), dtype=np.uint8).reshape(height, width, 4)[..., :3]


def upload(page, path, wait: bool = True) -> None:
    """Put a file in the upload box and wait until the box shows it (its name is in the served URL)."""
    page.locator("#recon-upload input[type=file]").set_input_files(str(path))
    if wait:
        page.wait_for_function(
            "(name) => document.querySelector('#recon-upload img')?.src.endsWith('/' + name)", arg=Path(path).name
        )


def set_number(page, selector: str, value) -> None:
    box = page.locator(f"{selector} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def click_and_wait(page, button: str, tracked: str) -> float:
    """Click ``button`` and wait until the event that updates ``tracked`` has finished; seconds elapsed."""
    page.evaluate(ARM, tracked)
    started = time.perf_counter()
    page.click(button)
    page.wait_for_function("window.__fvq.done || document.querySelector('[data-testid=toast-text]') !== null")
    return time.perf_counter() - started


def toasts(page) -> list[str]:
    return page.locator('[data-testid="toast-text"]').all_inner_texts()


def close_toasts(page) -> None:
    page.evaluate("() => document.querySelectorAll('[data-testid=toast-close]').forEach(b => b.click())")
    page.wait_for_function("document.querySelector('[data-testid=toast-text]') === null")


def expected_reconstruction(model, path, size: int) -> tuple[np.ndarray, np.ndarray]:
    crop = center_crop_resize(Image.open(path).convert("RGB"), size)
    with torch.no_grad():
        out = model(pil_to_tensor(crop)[None]).sample
    return np.asarray(crop), np.asarray(tensor_to_pil(out)[0])


def assert_close_pixels(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    difference = np.abs(got.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999  # forward vs encode/decode: float rounding


# ------------------------------------------------------------------------------------------------ tests
def test_reconstruct_in_the_browser_is_the_models_output(space, page):
    photo = coffee(space.tmp)
    upload(page, photo)
    times = [click_and_wait(page, "#recon-button", "#recon-output") for _ in range(LATENCY_RUNS)]
    assert not toasts(page)
    crop, expected = expected_reconstruction(space.tokenizer, photo, 256)
    assert np.array_equal(pixels(page, "#recon-input img"), crop)
    assert_close_pixels(pixels(page, "#recon-output img"), expected)
    summary = page.locator("#recon-summary").inner_text()
    grid = 256 // space.tokenizer.downsample_factor
    assert "PSNR" in summary and f"tokens {grid} × {grid}" in summary and "distinct codes" in summary
    assert pixels(page, "#recon-tokens img").shape == (256, 256, 3)
    assert pixels(page, "#recon-difference img").shape == (256, 256, 3)
    if space.kind == "test-models":
        assert "87.50% on held-out demo photos" in summary  # the card's model-index
    space.latency["reconstruct_256px_seconds"] = {
        "first_click_including_model_load": round(times[0], 3),
        "median_of_next": round(statistics.median(times[1:]), 3),
        "runs": [round(t, 3) for t in times],
    }
    page.screenshot(path=str(space.artifacts / "reconstruct.png"), full_page=True)


def test_an_example_photo_reconstructs(space, page):
    from fvq_hf.space import example_photos

    first = example_photos()[0]
    set_number(page, "#recon-size", 64)
    page.locator(".gallery-item, [data-testid='examples'] button, .example").first.click()
    page.wait_for_function("document.querySelector('#recon-upload img')?.src.includes('astronaut')")
    click_and_wait(page, "#recon-button", "#recon-output")
    _, expected = expected_reconstruction(space.tokenizer, first, 64)
    assert_close_pixels(pixels(page, "#recon-output img"), expected)


def test_bad_files_show_their_message_and_the_next_request_works(space, page):
    if space.kind != "test-models":
        pytest.skip("the bad files are the same whatever the model: once is enough")
    good = coffee(space.tmp)
    _, expected = expected_reconstruction(space.tokenizer, good, 64)
    set_number(page, "#recon-size", 64)
    oversized = space.tmp / "oversized.png"
    oversized.write_bytes(b"\0" * (MAX_FILE_SIZE + 1024))
    bad = {**make_bad_files(space.tmp / "bad"), "oversized.png": (oversized, "exceed the maximum allowed size")}
    odd = make_odd_files(space.tmp / "odd")
    for name, (path, phrase) in {**bad, **odd}.items():
        close_toasts(page)
        upload(page, path, wait=name != "oversized.png")
        if name == "oversized.png":  # refused by the server at upload, before any handler runs
            page.wait_for_function(
                "(p) => [...document.querySelectorAll('[data-testid=toast-text]')].some(e => e.innerText.includes(p))",
                arg=phrase,
            )
        else:
            click_and_wait(page, "#recon-button", "#recon-output")
            if name in bad:
                assert any(phrase in t for t in toasts(page)), (name, toasts(page))
                assert any(t.startswith(name) for t in toasts(page)), (name, toasts(page))  # it names the file
            else:
                assert not toasts(page), (name, toasts(page))
                assert phrase in page.locator("#recon-summary").inner_text(), name
        close_toasts(page)
        upload(page, good)  # the next good request still succeeds
        click_and_wait(page, "#recon-button", "#recon-output")
        assert not toasts(page), (name, toasts(page))
        assert_close_pixels(pixels(page, "#recon-output img"), expected)


def choose_class(page, label: str) -> None:
    box = page.locator("#gen-class input")
    box.click()
    box.fill(label[:3])  # the dropdown is searchable: type a prefix, pick the entry
    page.get_by_role("option", name=label, exact=True).click()
    assert box.input_value() == label


def test_generate_with_a_seed_is_the_pipelines_output(space, page):
    close_toasts(page)
    page.get_by_role("tab", name="Generate").click()
    page.wait_for_selector("#gen-button")
    choose_class(page, space.label)
    set_number(page, "#gen-seed", 5)
    set_number(page, "#gen-num", 1)
    guidance = float(page.locator("#gen-guidance input[type=number]").input_value())
    page.evaluate(
        """() => { window.__statuses = []; const el = document.querySelector('#gen-status');
        new MutationObserver(() => window.__statuses.push(el.innerText)).observe(el,
            {subtree: true, childList: true, characterData: true}); }"""
    )
    times = [click_and_wait(page, "#gen-button", "#gen-status") for _ in range(LATENCY_RUNS)]
    assert not toasts(page)
    assert page.locator("#gen-status").inner_text().startswith("Done: 1 image(s)")
    class_id = resolve_label(space.pipe, space.label)
    expected = space.pipe([class_id], guidance_scale=guidance, generator=torch.Generator().manual_seed(5)).images
    assert np.array_equal(pixels(page, "#gen-gallery img"), np.asarray(enlarge_for_display(expected[0])))
    statuses = page.evaluate("window.__statuses")
    space.latency["generate_1_image_seconds"] = {
        "first_click": round(times[0], 3),
        "median_of_next": round(statistics.median(times[1:]), 3),
        "runs": [round(t, 3) for t in times],
        "tokens_per_image": space.pipe.transformer.config.block_size,
        "row_previews_seen_in_the_page": sum("Sampling: row" in s for s in statuses) > 0,
    }

    set_number(page, "#gen-num", 3)  # several images, another seed: still the pipeline's
    set_number(page, "#gen-seed", 11)
    click_and_wait(page, "#gen-button", "#gen-status")
    page.wait_for_function("document.querySelectorAll('#gen-gallery img').length === 3")
    expected = space.pipe(
        [class_id], guidance_scale=guidance, num_images_per_label=3, generator=torch.Generator().manual_seed(11)
    ).images
    shown = page.locator("#gen-gallery img").all()
    for img, want in zip(shown, expected):
        width, height, data = img.evaluate(PIXELS)
        got = np.frombuffer(base64.b64decode(data), dtype=np.uint8).reshape(height, width, 4)[..., :3]
        assert np.array_equal(got, np.asarray(enlarge_for_display(want)))
    page.screenshot(path=str(space.artifacts / "generate.png"), full_page=True)


SHOWN = """(img) => {
    const box = img.getBoundingClientRect(), view = img.closest('.grid-wrap').getBoundingClientRect();
    // object-fit: scale-down draws the image at its own size when it fits its box, else contained in it
    const scale = Math.min(1, box.width / img.naturalWidth, box.height / img.naturalHeight);
    const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
    const left = box.left + (box.width - w) / 2, top = box.top + (box.height - h) / 2;
    return {fit: getComputedStyle(img).objectFit, natural: [img.naturalWidth, img.naturalHeight], drawn: [w, h],
            inside: left >= view.left - 0.5 && top >= view.top - 0.5 && left + w <= view.right + 0.5
                    && top + h <= view.bottom + 0.5};
}"""


def test_samples_are_shown_whole_and_enlarged_by_a_whole_factor_for_every_count(space, page):
    """Images = 1 once filled the gallery's width and lost the bottom of the digit; every count from 1 to 8 now
    shows each sample whole (drawn inside the gallery's visible area), enlarged by a whole factor, its pixels the
    pipeline's."""
    close_toasts(page)
    page.get_by_role("tab", name="Generate").click()
    page.set_viewport_size({"width": 1280, "height": 1000})
    choose_class(page, space.label)
    set_number(page, "#gen-seed", 3)
    guidance = float(page.locator("#gen-guidance input[type=number]").input_value())
    class_id = resolve_label(space.pipe, space.label)
    side = space.pipe.transformer.grid_size * space.pipe.vqvae.downsample_factor
    for count in range(1, MAX_IMAGES + 1):
        set_number(page, "#gen-num", count)
        click_and_wait(page, "#gen-button", "#gen-status")
        page.wait_for_function(f"document.querySelectorAll('#gen-gallery img').length === {count}")
        expected = space.pipe(
            [class_id], guidance_scale=guidance, num_images_per_label=count, generator=torch.Generator().manual_seed(3)
        ).images
        for img, want in zip(page.locator("#gen-gallery img").all(), expected):
            img.evaluate("(img) => img.decode()")
            shown = img.evaluate(SHOWN)
            factor = shown["natural"][0] // side
            assert shown["natural"] == [side * factor, side * factor] and factor >= 1, shown
            assert shown["drawn"] == shown["natural"] and shown["inside"], (count, shown)
            width, height, data = img.evaluate(PIXELS)
            got = np.frombuffer(base64.b64decode(data), dtype=np.uint8).reshape(height, width, 4)[..., :3]
            assert np.array_equal(got[::factor, ::factor], np.asarray(want))  # each pixel a factor × factor block
            assert np.array_equal(got, np.asarray(enlarge_for_display(want)))
