"""The Gradio Space (``spaces/app.py``): image handling, model loading and the UI factory.

``images`` and ``models`` and ``generation`` need no gradio and are tested without a browser; ``build_demo`` and
``launch_demo`` (in ``ui``) import gradio when called (``pip install "fvq_hf[space]"``).
"""

from .generation import GenerationUpdate, label_choices, resolve_label, stream_generation
from .images import (
    MAX_FILE_SIZE,
    MAX_PIXELS,
    MIN_SIDE,
    ImageInputError,
    LoadedImage,
    Reconstruction,
    difference_map,
    heat_map,
    load_image,
    psnr_uint8,
    reconstruct,
    token_map,
    working_size,
)
from .models import (
    CardUsage,
    ModelRegistry,
    ModelSpec,
    ModelUnavailable,
    SpaceConfig,
    load_space_config,
    pick_device,
    read_card_usage,
)
from .result_files import ResultFiles
from .ui import build_demo, example_photos, gpu_decorator, launch_demo

__all__ = [
    "MAX_FILE_SIZE",
    "MAX_PIXELS",
    "MIN_SIDE",
    "CardUsage",
    "GenerationUpdate",
    "ImageInputError",
    "LoadedImage",
    "ModelRegistry",
    "ModelSpec",
    "ModelUnavailable",
    "Reconstruction",
    "ResultFiles",
    "SpaceConfig",
    "build_demo",
    "difference_map",
    "example_photos",
    "gpu_decorator",
    "heat_map",
    "label_choices",
    "launch_demo",
    "load_image",
    "load_space_config",
    "pick_device",
    "psnr_uint8",
    "read_card_usage",
    "reconstruct",
    "resolve_label",
    "stream_generation",
    "token_map",
    "working_size",
]
