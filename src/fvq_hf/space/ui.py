"""The Gradio app: :func:`build_demo` makes the Blocks (a Reconstruct tab and a Generate tab), :func:`launch_demo`
serves it with the upload limit. ``spaces/app.py`` is these two calls.

Every handler turns a bad input into a ``gr.Error`` with a message for the user (the server goes on serving);
requests are queued with a concurrency limit; on ZeroGPU hardware the handlers are wrapped in ``spaces.GPU``,
which is imported only if installed.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable

from ..generation.pipeline import DEFAULT_SAMPLING
from .generation import GALLERY_COLUMNS, MAX_IMAGES, enlarge_for_display, label_choices, stream_generation
from .images import MAX_FILE_SIZE, MAX_PIXELS, ImageInputError, load_image, reconstruct
from .models import ModelRegistry, ModelUnavailable, SpaceConfig, load_space_config
from .result_files import ResultFiles

logger = logging.getLogger(__name__)

MIN_WORKING_SIZE, MAX_WORKING_SIZE, DEFAULT_WORKING_SIZE = 32, 512, 256
CONCURRENCY_LIMIT = 2  # a free CPU Space has 2 vCPUs
MAX_QUEUE = 32
CSS = f"""
#recon-input img, #recon-output img, #recon-difference img, #recon-tokens img, #recon-coarse-to-fine img,
#gen-gallery img {{
    image-rendering: pixelated;
}}
/* the gallery keeps its columns whatever the count: Gradio gives a lone sample the whole width, taller than the
   gallery, which then crops it; with scale-down a sample (enlarged by a whole factor) shows at its own size */
#gen-gallery .grid-container {{ grid-template-columns: repeat({GALLERY_COLUMNS}, minmax(0, 1fr)) !important; }}
"""


def gpu_decorator() -> Callable:
    """``spaces.GPU`` when the ``spaces`` package is installed (ZeroGPU hardware; elsewhere it passes the
    function through), else the identity."""
    try:
        import spaces
    except ImportError:
        return lambda fn: fn
    # a folder named spaces/ on sys.path (this repository's, when run from its root) imports as an empty
    # namespace package: it is not Hugging Face's `spaces`
    gpu = getattr(spaces, "GPU", None)
    return gpu if callable(gpu) else (lambda fn: fn)


def example_photos(folder: str | None = None, size: int = 512) -> list[str]:
    """The embedded demo photographs (scikit-image) as PNG files in ``folder``, for the Examples row; empty when
    scikit-image is not installed."""
    try:
        from ..data import load_demo_photos

        photos = load_demo_photos("all")
    except ModuleNotFoundError:
        return []
    folder = folder or os.path.join(tempfile.gettempdir(), "fvq-space-examples")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, photo in photos.items():
        path = os.path.join(folder, os.path.splitext(name)[0] + ".png")
        if not os.path.exists(path):
            photo.thumbnail((size, size))
            photo.save(path + ".tmp.png")
            os.replace(path + ".tmp.png", path)
        paths.append(path)
    return paths


def _user_error(error: Exception):
    import gradio as gr

    if isinstance(error, (ImageInputError, ModelUnavailable, ValueError)):
        return gr.Error(str(error).replace("**", ""), duration=None, print_exception=False)
    logger.exception("unexpected error in a request")
    return gr.Error(f"Something went wrong: {type(error).__name__}: {error}", duration=None)


def _format_usage(registry: ModelRegistry, name: str) -> str:
    usage = registry.card_usage(name)
    if usage is None:
        return "not in its model card"
    on = f" on {usage.dataset}" if usage.dataset else ""
    return f"{usage.usage:.2%}{on} (from its model card)"


def tokenizer_info(registry: ModelRegistry, name: str | None) -> str:
    """The Markdown under the tokenizer selector: what it is, or why it is not available."""
    if not name:
        return "No tokenizer is configured."
    spec = registry.spec("tokenizers", name)
    if not spec.available:
        return spec.missing_message()
    return (
        f"**{spec.name}** (`{spec.shown_source}`) · codebook usage on its evaluation set: "
        f"{_format_usage(registry, name)}"
    )


def reconstruction_summary(result, usage: str, notes: list[str]) -> str:
    psnr = "∞ (identical)" if result.psnr == float("inf") else f"{result.psnr:.2f} dB"
    lines = [
        (
            f"**PSNR** {psnr} at {result.input.width} × {result.input.height} px · **tokens** {result.tokens} · "
            f"**distinct codes** {result.distinct_codes:,} of {result.codebook_size:,} in this image · "
            f"**codebook usage on its evaluation set** {usage}"
        )
    ]
    if result.levels:
        lines.append(
            f"**Coarse to fine**: the image decoded from the codes of the first 1, 2, … {len(result.levels)} "
            f"{'scales' if result.indices.ndim == 1 else 'depths'} ({', '.join(result.levels)}), each at full size."
        )
    notes = [*notes, *result.notes]
    if notes:
        lines.append("Input: " + "; ".join(notes) + ".")
    return "\n\n".join(lines)


def build_demo(
    config: SpaceConfig | str | os.PathLike | None = None,
    registry: ModelRegistry | None = None,
    device: str | None = None,
    max_pixels: int = MAX_PIXELS,
    max_file_size: int = MAX_FILE_SIZE,
    concurrency_limit: int = CONCURRENCY_LIMIT,
    max_queue: int = MAX_QUEUE,
    examples: list[str] | None = None,
):
    """The app. ``config``: a :class:`SpaceConfig`, a config file, or ``None`` for ``$FVQ_SPACE_CONFIG`` and the
    ``$FVQ_SPACE_TOKENIZERS`` / ``$FVQ_SPACE_GENERATORS`` variables (see :mod:`fvq_hf.space.models`).
    ``examples``: image files for the Examples row (default: the embedded demo photographs).

    Endpoints (``gradio_client``): ``/reconstruct`` (image file, tokenizer name, working size → input crop,
    reconstruction, difference heat map, token map, coarse-to-fine strip (multi-code tokenizers; else none),
    summary Markdown, stats JSON), ``/generate`` (generator name,
    class, guidance, temperature, top-k, top-p, seed, number of images → gallery, status; streams previews),
    ``/tokenizer_info`` and ``/generator_classes`` (what the selectors update).
    """
    import gradio as gr

    gpu = gpu_decorator()  # first: ZeroGPU's `spaces` must be imported before CUDA is asked about
    if registry is None:
        if not isinstance(config, SpaceConfig):
            config = load_space_config(config)
        registry = ModelRegistry(config, device=device)
    device_note = "GPU" if registry.device.type == "cuda" else "CPU (no GPU here: expect seconds, not milliseconds)"
    if examples is None:
        examples = example_photos()
    # every result image goes out as a file of its own (see result_files: Gradio's own PIL caching is not safe
    # for identical results of concurrent requests)
    result_files = ResultFiles()

    # ------------------------------------------------------------------ handlers
    @gpu
    def on_reconstruct(image, tokenizer_name, size):
        try:
            path = image.get("path") if isinstance(image, dict) else image
            if not path:
                raise ImageInputError("No image was received: upload an image file or pick an example.")
            size = float(size if size is not None else DEFAULT_WORKING_SIZE)
            if not MIN_WORKING_SIZE <= size <= MAX_WORKING_SIZE:
                raise ValueError(f"the working size must be from {MIN_WORKING_SIZE} to {MAX_WORKING_SIZE} px")
            if not tokenizer_name:
                raise ModelUnavailable("No tokenizer is configured: see the message at the top of the tab.")
            loaded = load_image(path, max_pixels=max_pixels, max_file_size=max_file_size)
            model = registry.tokenizer(tokenizer_name)
            result = reconstruct(model, loaded.image, int(size))
        except Exception as error:  # noqa: BLE001 - every failure becomes a message in the page
            raise _user_error(error) from None
        usage = _format_usage(registry, tokenizer_name)
        card = registry.card_usage(tokenizer_name)
        stats = {
            **result.stats(),
            "tokenizer": tokenizer_name,
            "card_codebook_usage": card.usage if card else None,
            "input_notes": loaded.notes + result.notes,
        }
        summary = reconstruction_summary(result, usage, loaded.notes)
        images = [
            result_files.save(image, name)
            for image, name in zip(
                (result.input, result.reconstruction, result.difference, result.token_map),
                ("input", "reconstruction", "difference", "tokens"),
            )
        ]
        strip = result.coarse_to_fine
        coarse = gr.Image(
            value=result_files.save(strip, "coarse-to-fine") if strip is not None else None, visible=strip is not None
        )
        return (*images, coarse, summary, stats)

    progress_tracker = gr.Progress()

    @gpu
    def on_generate(
        generator_name, label, guidance_scale, temperature, top_k, top_p, seed, num_images, progress=progress_tracker
    ):
        started = time.perf_counter()
        try:
            if not generator_name:
                raise ModelUnavailable("No generator is configured: see the message at the top of the tab.")
            if label is None or label == "":
                raise ValueError("pick a class first")
            pipe = registry.pipeline(generator_name)
            grid = pipe.transformer.grid_size
            seed = int(seed) if seed is not None and float(seed).is_integer() else seed
            for update in stream_generation(
                pipe,
                label,
                num_images=int(num_images),
                seed=seed,
                guidance_scale=guidance_scale,
                temperature=temperature,
                top_k=int(top_k) if isinstance(top_k, float) and top_k.is_integer() else top_k,  # sliders send floats
                top_p=top_p,
            ):
                progress((update.step, update.total), desc="sampling tokens", unit="tokens")
                if update.final:
                    seconds = time.perf_counter() - started
                    # no captions: Gradio draws them over the image's corner; the status line says what they are
                    yield (
                        [result_files.save(enlarge_for_display(image), "sample") for image in update.images],
                        (
                            f"Done: {len(update.images)} image(s) of **{label}**, seed {seed}, "
                            f"{update.total} tokens each, in {seconds:.2f} s."
                        ),
                    )
                elif update.images is not None:
                    previews = [result_files.save(enlarge_for_display(image), "preview") for image in update.images]
                    yield previews, f"Sampling: row {update.step // grid} of {grid} ({update.step} tokens)…"
        except Exception as error:  # noqa: BLE001 - every failure becomes a message in the page
            raise _user_error(error) from None

    def on_tokenizer_change(name):
        return tokenizer_info(registry, name)

    def on_generator_change(name):
        try:
            pipe = registry.pipeline(name)
        except Exception as error:  # noqa: BLE001 - every failure becomes a message in the page
            raise _user_error(error) from None
        choices = label_choices(pipe)
        settings = pipe.sampling_settings()  # the sliders start where pipe(...) samples by default
        return (
            gr.Dropdown(choices=choices, value=choices[0]),
            gr.Slider(value=settings["guidance_scale"]),
            gr.Slider(value=settings["temperature"]),
            gr.Slider(value=settings["top_k"], maximum=pipe.transformer.config.vocab_size),
            gr.Slider(value=settings["top_p"]),
        )

    # ------------------------------------------------------------------ layout
    tokenizer_names = registry.names("tokenizers")
    tokenizer_default = (registry.available_names("tokenizers") or tokenizer_names or [None])[0]
    generator_names = registry.names("generators")
    generator_default = (registry.available_names("generators") or generator_names or [None])[0]
    classes, generator_error, top_k_max = [], None, 1024
    sampling = dict(DEFAULT_SAMPLING)  # no generator loaded: the library's defaults
    if generator_default and registry.spec("generators", generator_default).available:
        try:
            pipe = registry.pipeline(generator_default)
            classes = label_choices(pipe)
            sampling = pipe.sampling_settings()  # the sliders start where pipe(...) samples by default
            top_k_max = pipe.transformer.config.vocab_size
        except ModelUnavailable as error:
            generator_error = str(error)

    with gr.Blocks(title="FVQ tokenizers: reconstruct and generate", analytics_enabled=False) as demo:
        gr.Markdown(
            "# FVQ image tokenizers\n"
            "Reconstruct an image through a tokenizer's codebook, or generate images of a class token by token "
            f"(FVQ, arXiv 2509.10140). Running on {device_note}."
        )
        with gr.Tab("Reconstruct", id="reconstruct"):
            missing = registry.missing_messages("tokenizers")
            if not tokenizer_names:
                missing = ["No tokenizer is configured: set `FVQ_SPACE_TOKENIZERS` or a config file."]
            gr.Markdown("\n\n".join(missing), visible=bool(missing), elem_id="recon-missing")
            with gr.Row():
                with gr.Column(scale=1):
                    image_in = gr.Image(
                        label="Image", type="filepath", sources=["upload", "clipboard"], elem_id="recon-upload"
                    )
                    tokenizer_dd = gr.Dropdown(
                        choices=tokenizer_names, value=tokenizer_default, label="Tokenizer", elem_id="recon-model"
                    )
                    tokenizer_md = gr.Markdown(tokenizer_info(registry, tokenizer_default), elem_id="recon-model-info")
                    size_in = gr.Slider(
                        MIN_WORKING_SIZE,
                        MAX_WORKING_SIZE,
                        value=DEFAULT_WORKING_SIZE,
                        step=32,
                        label="Working size (px): centre crop, resized; rounded to the model's downsampling",
                        elem_id="recon-size",
                    )
                    recon_button = gr.Button("Reconstruct", variant="primary", elem_id="recon-button")
                    if examples:
                        gr.Examples(
                            [[p] for p in examples], inputs=[image_in], label="Demo photos", cache_examples=False
                        )
                with gr.Column(scale=2):
                    with gr.Row():
                        input_out = gr.Image(label="Input (centre crop)", format="png", interactive=False,
                                             elem_id="recon-input")  # fmt: skip
                        recon_out = gr.Image(label="Reconstruction", format="png", interactive=False,
                                             elem_id="recon-output")  # fmt: skip
                    with gr.Row():
                        diff_out = gr.Image(
                            label="Difference |input − reconstruction| (bright = 64+ grey levels)",
                            format="png",
                            interactive=False,
                            elem_id="recon-difference",
                        )
                        tokens_out = gr.Image(
                            label="Token map (one colour per code; one map per depth or scale)",
                            format="png",
                            interactive=False,
                            elem_id="recon-tokens",
                        )
                    coarse_out = gr.Image(
                        label="Coarse to fine (multi-code tokenizers): decoded after each depth or scale",
                        format="png",
                        interactive=False,
                        visible=False,
                        elem_id="recon-coarse-to-fine",
                    )
                    summary_out = gr.Markdown(elem_id="recon-summary")
                    with gr.Accordion("Numbers (JSON)", open=False):
                        stats_out = gr.JSON(elem_id="recon-stats")
            recon_button.click(
                on_reconstruct,
                inputs=[image_in, tokenizer_dd, size_in],
                outputs=[input_out, recon_out, diff_out, tokens_out, coarse_out, summary_out, stats_out],
                api_name="reconstruct",
                preprocess=False,  # the upload is opened by load_image, which checks it before decoding
            )
            tokenizer_dd.change(on_tokenizer_change, tokenizer_dd, tokenizer_md, api_name="tokenizer_info")

        with gr.Tab("Generate", id="generate"):
            missing = registry.missing_messages("generators")
            if generator_error:
                missing.append(generator_error)
            if not generator_names:
                missing = ["No generator is configured: set `FVQ_SPACE_GENERATORS` or a config file."]
            gr.Markdown("\n\n".join(missing), visible=bool(missing), elem_id="gen-missing")
            with gr.Row():
                with gr.Column(scale=1):
                    generator_dd = gr.Dropdown(
                        choices=generator_names, value=generator_default, label="Generator", elem_id="gen-model"
                    )
                    class_dd = gr.Dropdown(
                        choices=classes,
                        value=classes[0] if classes else None,
                        label="Class (type to search)",
                        filterable=True,
                        allow_custom_value=True,
                        elem_id="gen-class",
                    )
                    guidance_in = gr.Slider(1.0, 10.0, value=sampling["guidance_scale"], step=0.25,
                                            label="Guidance scale", elem_id="gen-guidance")  # fmt: skip
                    temperature_in = gr.Slider(0.05, 2.0, value=sampling["temperature"], step=0.05,
                                               label="Temperature", elem_id="gen-temperature")  # fmt: skip
                    top_k_in = gr.Slider(0, top_k_max, value=sampling["top_k"], step=1, label="Top-k (0 = off)",
                                         elem_id="gen-top-k")  # fmt: skip
                    top_p_in = gr.Slider(0.05, 1.0, value=sampling["top_p"], step=0.01, label="Top-p (1 = off)",
                                         elem_id="gen-top-p")  # fmt: skip
                    seed_in = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="gen-seed")
                    num_in = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Images", elem_id="gen-num")
                    gen_button = gr.Button("Generate", variant="primary", elem_id="gen-button")
                with gr.Column(scale=2):
                    gallery = gr.Gallery(label="Samples", format="png", columns=GALLERY_COLUMNS, object_fit="scale-down",
                                         height="auto", elem_id="gen-gallery")  # fmt: skip
                    gen_status = gr.Markdown(elem_id="gen-status")
            gen_button.click(
                on_generate,
                inputs=[generator_dd, class_dd, guidance_in, temperature_in, top_k_in, top_p_in, seed_in, num_in],
                outputs=[gallery, gen_status],
                api_name="generate",
                show_progress_on=[gen_status],
            )
            generator_dd.change(
                on_generator_change,
                generator_dd,
                [class_dd, guidance_in, temperature_in, top_k_in, top_p_in],
                api_name="generator_classes",
            )
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue)
    demo.fvq_registry = registry
    demo.fvq_max_file_size = max_file_size
    return demo


def launch_demo(demo, server_name: str | None = None, server_port: int | None = None, **kwargs):
    """``demo.launch`` with the app's upload limit (``max_file_size``) and stylesheet; other arguments pass on."""
    kwargs.setdefault("max_file_size", getattr(demo, "fvq_max_file_size", MAX_FILE_SIZE))
    kwargs.setdefault("css", CSS)
    kwargs.setdefault("footer_links", ["api"])
    return demo.launch(server_name=server_name, server_port=server_port, **kwargs)
