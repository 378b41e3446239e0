"""The Space's API through gradio_client: every endpoint, and several clients at once (bounded in count and time)
all served, with the queue's concurrency limit respected. The app runs on 127.0.0.1 at a free port in this process.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from test_space import (
    CARD_USAGE,
    coffee,
    make_bad_files,
    make_space_models,
    small_multicode_model,
    start_server,
    write_config,
)

from fvq_hf import FVQModel, FVQPipeline, MultiCodeFVQModel
from fvq_hf.data import center_crop_resize, pil_to_tensor, tensor_to_pil
from fvq_hf.space.generation import enlarge_for_display

gradio_client = pytest.importorskip("gradio_client")
pytest.importorskip("gradio")
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

ENDPOINTS = {"/reconstruct", "/generate", "/tokenizer_info", "/generator_classes"}
CONCURRENCY = 2
CLIENTS = 6
LOAD_TEST_SECONDS = 180


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("client")
    models = make_space_models(tmp / "models")
    models["multicode"] = tmp / "models" / "var"
    small_multicode_model("var-tiny").save_pretrained(models["multicode"])
    demo, url = start_server(write_config(tmp, models), device="cpu", concurrency_limit=CONCURRENCY, examples=[])
    pipe = FVQPipeline.from_pretrained(models["generator"])
    pipe.set_progress_bar_config(disable=True)
    yield SimpleNamespace(
        demo=demo,
        url=url,
        tmp=tmp,
        tokenizer=FVQModel.from_pretrained(models["tokenizer"]).eval(),
        multicode=MultiCodeFVQModel.from_pretrained(models["multicode"]).eval(),
        pipe=pipe,
    )
    demo.close()


def client(served) -> Client:
    return Client(served.url, verbose=False, download_files=str(served.tmp / "downloads"), analytics_enabled=False)


def expected_reconstruction(model, path, size):
    crop = center_crop_resize(Image.open(path).convert("RGB"), size)
    with torch.no_grad():
        return np.asarray(tensor_to_pil(model(pil_to_tensor(crop)[None]).sample)[0], dtype=int)


def assert_reconstruction(got_path, expected):
    got = np.asarray(Image.open(got_path).convert("RGB"), dtype=int)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1 and (got == expected).mean() > 0.999


def expected_samples(pipe, class_id, seed, n=1):
    generator = torch.Generator().manual_seed(seed)
    return pipe([class_id], guidance_scale=2.0, num_images_per_label=n, generator=generator).images


def gallery_images(gallery) -> list[np.ndarray]:
    return [np.asarray(Image.open(item["image"]).convert("RGB")) for item in gallery]


def test_every_api_endpoint(served):
    api = client(served).view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == ENDPOINTS, "a new endpoint needs a test here"
    c = client(served)
    photo = coffee(served.tmp)

    # /reconstruct: the pictures and the numbers
    crop, recon, difference, tokens, coarse_to_fine, summary, stats = c.predict(
        handle_file(str(photo)), "tiny tokenizer", 64, api_name="/reconstruct"
    )
    assert_reconstruction(recon, expected_reconstruction(served.tokenizer, photo, 64))
    assert Image.open(crop).size == Image.open(difference).size == Image.open(tokens).size == (64, 64)
    assert Image.open(recon).format == "PNG"  # lossless, not gradio's default WebP
    assert stats["tokens"] == [16, 16] and stats["card_codebook_usage"] == CARD_USAGE and "PSNR" in summary
    assert 0 < stats["distinct_codes"] <= 64
    # a single-code tokenizer has one level: the strip stays hidden
    assert coarse_to_fine == {"__type__": "update", "visible": False, "value": None}
    assert "Coarse to fine" not in summary

    # a multi-code (VAR) tokenizer: its one size, a token map per scale and the coarse-to-fine strip
    crop, recon, _, tokens, coarse_to_fine, summary, stats = c.predict(
        handle_file(str(photo)), "tiny VAR tokenizer", 64, api_name="/reconstruct"
    )
    assert_reconstruction(recon, expected_reconstruction(served.multicode, photo, 32))
    assert coarse_to_fine["visible"]
    strip = np.asarray(Image.open(coarse_to_fine["value"]).convert("RGB"), dtype=int)
    assert strip.shape == (32, 6 * 32 + 5 * 2, 3) and Image.open(tokens).size == (6 * 32 + 5 * 2, 32)
    assert np.abs(strip[:, -32:] - expected_reconstruction(served.multicode, photo, 32)).max() <= 1
    assert stats["tokens"] == [130] and stats["levels"][0] == "1×1" and "works at 32 px only" in summary
    assert "130 in 6 scales (1×1 … 8×8)" in summary and "Coarse to fine" in summary
    bad = make_bad_files(served.tmp / "bad")
    with pytest.raises(AppError, match="is not an image this app can read"):
        c.predict(handle_file(str(bad["notes.png"][0])), "tiny tokenizer", 64, api_name="/reconstruct")
    with pytest.raises(AppError, match="Make it with `python training/train_tokenizer.py"):
        c.predict(handle_file(str(photo)), "not trained yet", 64, api_name="/reconstruct")

    # /tokenizer_info: the card's usage, or the command that makes a missing model
    assert "87.50%" in c.predict("tiny tokenizer", api_name="/tokenizer_info")
    assert "Make it with" in c.predict("not trained yet", api_name="/tokenizer_info")

    # /generator_classes: the class list of a generator
    classes, *sliders = c.predict("tiny generator", api_name="/generator_classes")
    assert [choice[0] for choice in classes["choices"]] == ["zero", "one, uno", "two", "three", "four"]
    settings = served.pipe.sampling_settings()  # the sliders follow the pipeline's own defaults
    assert classes["value"] == "zero"
    assert [s["value"] for s in sliders] == [settings[k] for k in ("guidance_scale", "temperature", "top_k", "top_p")]

    # /generate: streams a preview per row, ends with the pipeline's images under the seed
    job = c.submit("tiny generator", "three", 2.0, 1.0, 0, 1.0, 5, 2, api_name="/generate")
    gallery, status = job.result(timeout=120)
    assert status.startswith("Done: 2 image(s)")
    for got, want in zip(gallery_images(gallery), expected_samples(served.pipe, 3, 5, n=2), strict=True):
        assert np.array_equal(got, np.asarray(enlarge_for_display(want)))  # shown enlarged by a whole factor
    previews = [out for out in job.outputs() if out[1].startswith("Sampling: row")]
    assert [p[1].split(" (")[0] for p in previews] == ["Sampling: row 1 of 4", "Sampling: row 2 of 4",
                                                        "Sampling: row 3 of 4"]  # fmt: skip
    with pytest.raises(AppError, match="Did you mean 'three'"):
        c.predict("tiny generator", "thre", 2.0, 1.0, 0, 1.0, 5, 1, api_name="/generate")


def test_several_clients_at_once_are_all_served_within_the_concurrency_limit(served):
    model = served.demo.fvq_registry.tokenizer("tiny tokenizer")
    photo, bad = coffee(served.tmp), make_bad_files(served.tmp / "bad")["truncated.png"][0]
    expected = expected_reconstruction(served.tokenizer, photo, 64)
    active, most, lock = [0], [0], threading.Lock()
    original = model.encode_indices

    def slow_counting_encode(*args, **kwargs):  # makes requests overlap, and counts how many run at once
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(0.3)
            return original(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    model.encode_indices = slow_counting_encode

    def one_user(i: int) -> dict:
        c = client(served)
        done = {}
        done["recon"] = c.predict(handle_file(str(photo)), "tiny tokenizer", 64, api_name="/reconstruct")[1]
        done["gallery"] = c.predict("tiny generator", "two", 2.0, 1.0, 0, 1.0, 100 + i, 1, api_name="/generate")[0]
        if i % 3 == 0:  # a bad upload among them: refused, nobody else affected
            with pytest.raises(AppError, match="could not be decoded"):
                c.predict(handle_file(str(bad)), "tiny tokenizer", 64, api_name="/reconstruct")
            done["refused"] = True
        return done

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(one_user, i) for i in range(CLIENTS)]
            results = [f.result(timeout=LOAD_TEST_SECONDS) for f in futures]
    finally:
        del model.encode_indices
    elapsed = time.perf_counter() - started
    assert elapsed < LOAD_TEST_SECONDS
    assert most[0] == CONCURRENCY  # the limit was reached, and never passed
    for i, done in enumerate(results):
        assert_reconstruction(done["recon"], expected)
        assert np.array_equal(
            gallery_images(done["gallery"])[0],
            np.asarray(enlarge_for_display(expected_samples(served.pipe, 2, 100 + i)[0])),
        )
        assert done.get("refused", False) == (i % 3 == 0)
