"""Evaluation: metrics and the whole-set evaluator shared by training and evaluate_tokenizer.py."""

from .evaluator import EvaluationResult, evaluate_tokenizer
from .metrics import psnr

__all__ = ["EvaluationResult", "evaluate_tokenizer", "psnr"]
