"""The tokenizer's parameters as optimizer groups: the quantizer may train at its own rate."""

from __future__ import annotations

from torch import nn


def tokenizer_param_groups(model: nn.Module, lr: float, quantizer_lr_scale: float = 1.0) -> list[dict]:
    """The tokenizer's trainable parameters for Adam: one group at ``lr``, or, with a ``quantizer_lr_scale`` other
    than 1, the quantizer's (``model.quantize``: raw codebook, projector, VAR's φ) in a second group at
    ``lr × quantizer_lr_scale``. A schedule multiplies both alike. One group when the quantizer has nothing to train
    (a folded, frozen codebook): check ``len(optimizer.param_groups)`` for the multiplier actually applied.

    Args:
        model: an ``FVQModel`` or ``MultiCodeFVQModel`` (anything with a ``quantize`` submodule).
        lr: the learning rate of the encoder and decoder.
        quantizer_lr_scale: the quantizer's rate as a multiple of ``lr``; must be positive.
    """
    if not quantizer_lr_scale > 0:
        raise ValueError(
            f"quantizer_lr_scale must be positive (1 trains everything at one rate), got {quantizer_lr_scale}"
        )
    trainable = [p for p in model.parameters() if p.requires_grad]
    in_quantizer = {id(p) for p in model.quantize.parameters()}
    quantizer = [p for p in trainable if id(p) in in_quantizer]
    if quantizer_lr_scale == 1 or not quantizer:
        return [{"params": trainable}]
    return [
        {"params": [p for p in trainable if id(p) not in in_quantizer]},
        {"params": quantizer, "lr": lr * quantizer_lr_scale},
    ]
