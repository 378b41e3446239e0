"""FVQPipeline: class-conditional image generation, an FVQTransformer sampling tokens that an FVQModel decodes."""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Callable, Sequence

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.image_processor import VaeImageProcessor

from ..models.fvq_model import FVQModel
from ..models.fvq_transformer import FVQTransformer
from .sampling import generate

OUTPUT_TYPES = ("pil", "np", "pt", "latent")

# the library's sampling defaults: what a setting left at None becomes unless the pipeline saved its own
# (the FVQ paper samples GPT-L at guidance 1.75, §4.3)
DEFAULT_SAMPLING = {"guidance_scale": 1.75, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "guidance_interval": None}


def check_sampling_settings(settings: dict, what: str = "sampling setting") -> dict:
    """Validate sampling settings (any subset of ``DEFAULT_SAMPLING``'s keys); returns them unchanged.

    The one place a guidance scale, temperature, top-k, top-p or guidance interval is checked, whether it was
    given to ``pipe(...)``, saved with a pipeline, or set on a slider of the Space.
    """
    unknown = sorted(set(settings) - set(DEFAULT_SAMPLING))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {', '.join(DEFAULT_SAMPLING)}")
    rules = {  # setting: (its name for a reader, is a value valid, what a valid one is)
        "guidance_scale": ("the guidance scale", lambda v: _is_number(v) and v >= 0, "a number ≥ 0 (on above 1)"),
        "temperature": ("the temperature", lambda v: _is_number(v) and v > 0, "a number > 0"),
        "top_k": ("top-k", lambda v: _is_whole(v) and v >= 0, "a whole number ≥ 0 (0 = off)"),
        "top_p": ("top-p", lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1] (1 = off)"),
        "guidance_interval": (
            "the guidance interval",
            lambda v: v is None or (_is_whole(v) and v >= 0),
            "None (guide every token) or a whole number ≥ 0",
        ),
    }
    for name, value in settings.items():
        label, valid, wanted = rules[name]
        if not valid(value):
            raise ValueError(f"{label} ({what} {name}) must be {wanted}, got {value!r}")
    return settings


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value) -> bool:
    return _is_number(value) and int(value) == value


def _looks_like_a_path(source: str) -> bool:
    """A Hub id is ``name`` or ``org/name``; anything else (``./x``, ``/x``, ``~/x``, ``a/b/c``, ``C:\\x``) is a path."""
    return (
        source.startswith((".", "/", "~", os.sep))
        or source.count("/") > 1
        or (os.sep != "/" and os.sep in source)
        or (len(source) > 1 and source[1] == ":")
    )


def _no_folder_message(source: str) -> str:
    """Says the folder is not there, and names the nearest existing folders (a typo is the usual cause)."""
    parent = os.path.dirname(os.path.abspath(os.path.expanduser(source)))
    while parent and not os.path.isdir(parent):
        parent = os.path.dirname(parent) if os.path.dirname(parent) != parent else ""
    hint = ""
    if parent:
        names = sorted(n for n in os.listdir(parent) if os.path.isdir(os.path.join(parent, n)))
        near = difflib.get_close_matches(os.path.basename(os.path.normpath(source)), names, n=3, cutoff=0.6)
        hint = (
            f" Did you mean {', '.join(repr(os.path.join(os.path.dirname(source), n)) for n in near)}?" if near else ""
        )
    return (
        f"no pipeline folder at {source!r}: it does not exist.{hint} Pass an existing folder (one with "
        "model_index.json, as training/train_generator.py or fvq-convert --tokenizer writes) or a Hub id (org/name)."
    )


def check_pipeline_folder(folder: str, shown: str | None = None) -> None:
    """Refuse a folder that is not an FVQPipeline with what it is instead: a tokenizer or a transformer alone."""
    if os.path.isfile(os.path.join(folder, "model_index.json")):
        return
    shown = shown or folder
    config = os.path.join(folder, "config.json")
    kind = None
    if os.path.isfile(config):
        with open(config) as handle:
            kind = json.load(handle).get("_class_name")
    if kind == "FVQModel":
        raise ValueError(
            f"{shown!r} is a tokenizer (FVQModel), not a pipeline: load it with FVQModel.from_pretrained, or pair it "
            "with a generator trained on its codes (training/train_generator.py writes a whole pipeline)"
        )
    if kind == "FVQTransformer":
        raise ValueError(
            f"{shown!r} is a transformer alone (FVQTransformer), not a pipeline: load it with "
            "FVQTransformer.from_pretrained, or build FVQPipeline(vqvae=tokenizer, transformer=it) with the "
            "tokenizer whose codes it was trained on"
        )
    raise ValueError(
        f"{shown!r} is not an FVQPipeline folder: it has no model_index.json"
        + (f" (its config.json is a {kind})" if kind else "")
    )


class FVQPipeline(DiffusionPipeline):
    r"""
    Class-conditional generation with FVQ tokens: the ``transformer`` samples a grid of codes for each class, the
    ``vqvae`` decodes it.

    ```py
    >>> from fvq_hf import FVQPipeline
    >>> pipe = FVQPipeline.from_pretrained("your-org/fvq-gen")
    >>> images = pipe(class_labels=["goldfish", 207], generator=torch.Generator().manual_seed(0)).images
    ```

    Parameters:
        vqvae ([`FVQModel`]): The tokenizer; its codebook size must be the transformer's ``vocab_size``.
        transformer ([`FVQTransformer`]): The class-conditional GPT over the tokenizer's codes.
        id2label (`dict[int, str]`, *optional*): Class names; a name may list synonyms separated by commas, as
            ImageNet's do, and each synonym works in ``get_label_ids``. Saved in ``model_index.json``.
        sampling_defaults (`dict`, *optional*): Defaults for ``guidance_scale``, ``temperature``, ``top_k``, ``top_p``
            and ``guidance_interval`` (the recipe the model was evaluated with); saved with the pipeline.
    """

    model_cpu_offload_seq = "transformer->vqvae"

    def __init__(
        self,
        vqvae: FVQModel,
        transformer: FVQTransformer,
        id2label: dict | None = None,
        sampling_defaults: dict | None = None,
    ):
        super().__init__()
        if transformer.config.vocab_size != vqvae.config.codebook_size:
            raise ValueError(
                f"the transformer models {transformer.config.vocab_size} codes but the tokenizer has "
                f"{vqvae.config.codebook_size}: pair a transformer with the tokenizer whose codes it was trained on"
            )
        id2label = {int(k): v for k, v in (id2label or {}).items()}  # JSON turns keys into strings
        check_sampling_settings(dict(sampling_defaults or {}), "sampling default")
        self.register_modules(vqvae=vqvae, transformer=transformer)
        self.register_to_config(id2label=id2label, sampling_defaults=dict(sampling_defaults or {}))
        self.image_processor = VaeImageProcessor(vae_scale_factor=vqvae.downsample_factor, do_normalize=True)
        self.labels: dict[str, int] = {}
        for class_id, names in sorted(id2label.items()):
            for name in names.split(","):
                self.labels.setdefault(name.strip(), class_id)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> FVQPipeline:
        """Load from a local folder or a Hub id.

        diffusers' own download step only resolves diffusers and transformers components, so a Hub id is first
        fetched whole with ``huggingface_hub.snapshot_download`` (cached as usual) and then loaded from disk. A
        folder that is not a pipeline, or a path that names no folder, gets an error saying which and what to do.
        """
        source = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(source):
            check_pipeline_folder(source)
            return super().from_pretrained(source, **kwargs)
        if _looks_like_a_path(source):
            raise FileNotFoundError(_no_folder_message(source))
        from huggingface_hub import snapshot_download

        download = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "token", "force_download") if k in kwargs}
        if kwargs.pop("local_files_only", False):
            download["local_files_only"] = True
        try:
            folder = snapshot_download(source, **download)
        except Exception as error:
            first = source.split("/")[0]
            if os.path.isdir(first):  # "outputs/fvq-mnist-generatr": a typo in a local folder, not a Hub id
                raise FileNotFoundError(_no_folder_message(source)) from error
            raise
        check_pipeline_folder(folder, source)
        return super().from_pretrained(folder, **kwargs)

    # ------------------------------------------------------------------ labels
    def get_label_ids(self, label: str | int | Sequence[str | int]) -> list[int]:
        """Class names (or ids, passed through) → class ids; one name or a list."""
        labels = [label] if isinstance(label, (str, int)) else list(label)
        ids = []
        for item in labels:
            if isinstance(item, int) and not isinstance(item, bool):
                ids.append(item)
                continue
            if not isinstance(item, str):
                raise TypeError(f"class labels are names or integer ids, got {type(item).__name__}")
            if item.strip() not in self.labels:
                if not self.labels:
                    raise ValueError(
                        f"this pipeline has no class names (id2label is empty): pass class ids, not {item!r}"
                    )
                near = difflib.get_close_matches(item.strip(), list(self.labels), n=5)
                hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
                raise ValueError(f"{item!r} is not a class name of this pipeline.{hint} All names: pipe.labels")
            ids.append(self.labels[item.strip()])
        return ids

    # ------------------------------------------------------------------ generation
    def sampling_settings(
        self,
        guidance_scale: float | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance_interval: int | None = None,
    ) -> dict:
        """The sampling settings ``pipe(...)`` uses: each given value, else the pipeline's saved
        ``sampling_defaults``, else the library's ``DEFAULT_SAMPLING``; validated. With no argument: the settings
        this pipeline samples with by default (what a UI should start its controls from)."""
        given = {
            "guidance_scale": guidance_scale,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "guidance_interval": guidance_interval,
        }
        defaults = {**DEFAULT_SAMPLING, **self.config.sampling_defaults}
        return check_sampling_settings({k: defaults[k] if v is None else v for k, v in given.items()})

    @torch.no_grad()
    def __call__(
        self,
        class_labels: str | int | Sequence[str | int],
        guidance_scale: float | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance_interval: int | None = None,
        num_images_per_label: int = 1,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("tokens",),
        compile_mode: str | None = None,
    ) -> ImagePipelineOutput | tuple:
        r"""
        Generate images of the given classes.

        Args:
            class_labels (`str`, `int` or a list of them): Class names (see ``labels``) or ids, one image each
                (times ``num_images_per_label``), e.g. ``["goldfish", 207]``.
            guidance_scale (`float`, *optional*): Classifier-free guidance; on when > 1.
            temperature (`float`, *optional*): Softmax temperature, > 0.
            top_k (`int`, *optional*): Keep the k most likely tokens; 0 = off, 1 = greedy.
            top_p (`float`, *optional*): Nucleus sampling; 1 = off.
            guidance_interval (`int`, *optional*): Guide only the first this many tokens (None: all).

                A sampling setting left at None is the pipeline's saved ``sampling_defaults``, else the library's
                ``DEFAULT_SAMPLING`` (guidance 1.75, temperature 1, top-k 0, top-p 1): see ``sampling_settings``.
            num_images_per_label (`int`, defaults to 1): Images per class label.
            generator (`torch.Generator`, *optional*): Makes sampling reproducible; on the pipeline's device.
            output_type (`str`, defaults to `"pil"`): ``"pil"``, ``"np"`` (B, H, W, 3) in [0, 1], ``"pt"``
                (B, 3, H, W) in [0, 1], or ``"latent"``: the token indices (B, h, w), not decoded.
            return_dict (`bool`, defaults to `True`): Return an ``ImagePipelineOutput`` rather than a tuple.
            callback_on_step_end (`Callable`, *optional*): ``callback(pipe, step, step, callback_kwargs)`` after each
                token, with ``callback_kwargs["tokens"]`` the (B, step + 1) tokens so far (raster order); it may
                return a dict (ignored; tokens cannot be replaced mid-sample).
            callback_on_step_end_tensor_inputs (`list[str]`): Only ``"tokens"`` exists.
            compile_mode (`str`, *optional*): None decodes eagerly with the kernels calibrated on this machine; a
                ``torch.compile`` mode runs the decode step compiled (see ``fvq_hf.generate``). Speed only: the
                tokens are the eager ones up to the order of floating-point additions.

        Returns:
            [`~pipelines.ImagePipelineOutput`] or `tuple`: the images (or indices, for ``output_type="latent"``).
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        unknown_inputs = set(callback_on_step_end_tensor_inputs) - {"tokens"}
        if unknown_inputs:
            raise ValueError(f"callback_on_step_end_tensor_inputs: only 'tokens' exists, got {sorted(unknown_inputs)}")
        if int(num_images_per_label) != num_images_per_label or num_images_per_label < 1:
            raise ValueError(f"num_images_per_label must be a whole number ≥ 1, got {num_images_per_label}")
        settings = self.sampling_settings(guidance_scale, temperature, top_k, top_p, guidance_interval)
        ids = self.get_label_ids(class_labels)
        labels = torch.tensor(ids, dtype=torch.long, device=self._execution_device).repeat_interleave(
            int(num_images_per_label)
        )

        with self.progress_bar(total=self.transformer.config.block_size) as progress:

            def on_token(step: int, tokens: torch.LongTensor) -> None:
                progress.update()
                if callback_on_step_end is not None:
                    callback_on_step_end(self, step, step, {"tokens": tokens})

            indices = generate(
                self.transformer, labels, generator=generator, callback=on_token, compile_mode=compile_mode, **settings
            )

        if output_type == "latent":
            images = indices
        else:
            decoded = self.vqvae.decode_indices(indices)
            images = self.image_processor.postprocess(decoded.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    def decode_partial(self, tokens: torch.LongTensor, fill: int | None = None) -> torch.Tensor:
        """Decode a raster-order prefix (B, n) of a sample into images (B, 3, H, W) in [-1, 1], the positions not
        yet sampled filled with code ``fill`` (default: the code of the first token), for previews while sampling."""
        grid = self.transformer.grid_size
        full = torch.empty(tokens.shape[0], grid * grid, dtype=torch.long, device=tokens.device)
        full[:] = tokens[:, :1] if fill is None else fill
        full[:, : tokens.shape[1]] = tokens
        return self.vqvae.decode_indices(full.view(-1, grid, grid))
