"""Generation for the Space: a class name from the dropdown → class id, and sampling that streams previews.

:func:`stream_generation` runs ``FVQPipeline.__call__`` (so the final images are exactly the pipeline's under the
same seed) in a worker thread and yields an update after every sampled token, with a decoded preview each time a
row of the token grid is complete (``pipe.decode_partial``): the image builds up row by row.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from PIL import Image

from ..data import tensor_to_pil

MAX_IMAGES = 8
GALLERY_COLUMNS = 4
# the size a sample is enlarged towards for the gallery, by a whole factor (a 16 px digit: 10×), so that four fit
# side by side in the page's column and pixels stay square
DISPLAY_SIZE = 160


def enlarge_for_display(image: Image.Image, size: int = DISPLAY_SIZE) -> Image.Image:
    """``image`` enlarged by the largest whole factor that keeps it within ``size`` (1 for larger samples), each
    pixel a k × k block: the whole sample, sharp, and its pixels recoverable exactly."""
    factor = max(1, size // max(image.size))
    return image if factor == 1 else image.resize((image.width * factor, image.height * factor), Image.NEAREST)


@dataclass
class GenerationUpdate:
    step: int  # tokens sampled so far
    total: int  # tokens per image
    images: list[Image.Image] | None  # a preview (or, when final, the result); None between previews
    final: bool = False


def label_choices(pipe) -> list[str]:
    """The dropdown's entries: each class's full ``id2label`` name (``"seven, 7"``), in id order; ``class N``
    for a pipeline without names."""
    id2label = pipe.config.id2label
    if id2label:
        return [id2label[k] for k in sorted(id2label)]
    return [f"class {i}" for i in range(pipe.transformer.config.num_classes)]


def resolve_label(pipe, label: str | int) -> int:
    """A dropdown entry, one of its synonyms (``"seven"``), ``"class N"`` or an id → the class id; a
    ``ValueError`` that suggests close names otherwise."""
    if isinstance(label, int) and not isinstance(label, bool):
        ids = [label]
    else:
        text = str(label).strip()
        by_full_name = {name: k for k, name in pipe.config.id2label.items()}
        if text in by_full_name:
            return int(by_full_name[text])
        if text.startswith("class ") and text[6:].isdigit():
            ids = [int(text[6:])]
        elif text.isdigit() and text not in pipe.labels:
            ids = [int(text)]
        else:
            ids = pipe.get_label_ids(text)
    num_classes = pipe.transformer.config.num_classes
    if not 0 <= ids[0] < num_classes:
        raise ValueError(f"class id {ids[0]} is out of range: this generator has classes 0 to {num_classes - 1}")
    return int(ids[0])


def check_request(num_images: int, seed: int) -> None:
    """What the Space adds to a pipeline call: how many images, and the seed (the sampling settings are checked
    by the pipeline, ``FVQPipeline.sampling_settings``)."""
    if int(num_images) != num_images or not 1 <= num_images <= MAX_IMAGES:
        raise ValueError(f"the number of images must be a whole number from 1 to {MAX_IMAGES}, got {num_images}")
    if int(seed) != seed or not 0 <= seed < 2**63:
        raise ValueError(f"the seed must be a whole number ≥ 0, got {seed}")


def stream_generation(
    pipe,
    label: str | int,
    num_images: int = 1,
    seed: int = 0,
    guidance_scale: float | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    previews: bool = True,
) -> Iterator[GenerationUpdate]:
    """Sample ``num_images`` images of ``label`` with ``torch.Generator(pipe.device).manual_seed(seed)``; a sampling
    setting left at None is the pipeline's own (``pipe.sampling_settings``).

    Yields a :class:`GenerationUpdate` per token (``images`` set at each completed row of the token grid when
    ``previews``), then a final one whose images are ``pipe(..., output_type="pil").images``.
    """
    check_request(num_images, seed)
    settings = pipe.sampling_settings(guidance_scale, temperature, top_k, top_p)  # checked before the thread starts
    class_id = resolve_label(pipe, label)
    grid = pipe.transformer.grid_size
    total = grid * grid
    updates: queue.Queue = queue.Queue()
    result: dict = {}

    def on_token(_pipe, step, _timestep, tensors):
        tokens = tensors["tokens"]
        done = tokens.shape[1]
        images = None
        if previews and done % grid == 0 and done < total:
            images = tensor_to_pil(pipe.decode_partial(tokens).float().cpu())
        updates.put(GenerationUpdate(done, total, images))

    def run():
        try:
            generator = torch.Generator(device=pipe.device).manual_seed(int(seed))
            result["images"] = pipe(
                class_labels=[class_id],
                **settings,
                num_images_per_label=int(num_images),
                generator=generator,
                output_type="pil",
                callback_on_step_end=on_token,
            ).images
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = error
        finally:
            updates.put(None)

    worker = threading.Thread(target=run, name="fvq-space-generate", daemon=True)
    worker.start()
    while (update := updates.get()) is not None:
        yield update
    worker.join()
    if "error" in result:
        raise result["error"]
    yield GenerationUpdate(total, total, result["images"], final=True)
