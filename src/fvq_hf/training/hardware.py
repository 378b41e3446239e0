"""What a run trains on: the Accelerate device choice, the default precision, and a one-line summary for cards."""

from __future__ import annotations

import os
import platform

import torch


def default_mixed_precision(cpu: bool = False) -> str:
    """``"bf16"`` on a GPU that supports it (the paper trains in bf16), ``"no"`` elsewhere."""
    if not cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def use_cpu(cpu: bool = False) -> bool:
    """Whether to tell Accelerate to train on the CPU: when asked, or when launched on several processes without a
    GPU (Accelerate sets up multi-process CPU training, with gloo, only when told to use the CPU)."""
    distributed_without_gpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    return cpu or distributed_without_gpu


def hardware_summary(accelerator) -> str:
    """E.g. ``"8 × NVIDIA H100 80GB HBM3, torch 2.13.0, mixed precision bf16"``, for logs and model cards."""
    if torch.cuda.is_available() and accelerator.device.type == "cuda":
        device = f"{accelerator.num_processes} × {torch.cuda.get_device_name()}"
    else:
        processor = platform.processor() or platform.machine()
        device = f"{accelerator.num_processes} CPU process(es), {os.cpu_count()} cores ({processor})"
    return f"{device}, torch {torch.__version__}, mixed precision {accelerator.mixed_precision}"
