"""Evaluation: protocols, metrics and the whole-set evaluator shared by training and evaluate_tokenizer.py."""

from .evaluator import EvaluationResult, evaluate_tokenizer
from .metrics import psnr, psnr_y, rgb_to_y, ssim
from .protocols import (
    PROTOCOLS,
    EvaluationProtocol,
    ProtocolImageFolder,
    adm_center_crop,
    center_crop_no_resize,
    collate_protocol_images,
    file_round_trip,
    get_protocol,
    prepare_image,
    protocol_hf_dataset,
    quantize,
)

__all__ = [
    "PROTOCOLS",
    "EvaluationProtocol",
    "EvaluationResult",
    "ProtocolImageFolder",
    "adm_center_crop",
    "center_crop_no_resize",
    "collate_protocol_images",
    "evaluate_tokenizer",
    "file_round_trip",
    "get_protocol",
    "prepare_image",
    "protocol_hf_dataset",
    "psnr",
    "psnr_y",
    "quantize",
    "rgb_to_y",
    "ssim",
]
