"""The tokenizer's parameters as optimizer groups: the quantizer may train at its own rate."""

from __future__ import annotations

from torch import nn


def tokenizer_param_groups(model: nn.Module, lr: float, quantizer_lr_scale: float = 1.0) -> list[dict]:
    """The tokenizer's trainable parameters for Adam: one group at ``lr``, or, with a ``quantizer_lr_scale`` other
    than 1, the quantizer's (``model.quantize``: raw codebook, projector, VAR's φ) in a second group at
    ``lr × quantizer_lr_scale``. A schedule multiplies both alike. One group when the quantizer has nothing to train
    (a folded, frozen codebook): ``applied_quantizer_lr_scale`` says which multiplier was applied.

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


def applied_quantizer_lr_scale(param_groups: list[dict], quantizer_lr_scale: float) -> float:
    """The multiplier ``tokenizer_param_groups`` applied, for logs and model cards: ``quantizer_lr_scale`` when it
    made a quantizer group, 1 when it made one group (nothing to scale). ``param_groups``: its groups, or the
    ``param_groups`` of an optimizer built from them."""
    return quantizer_lr_scale if len(param_groups) > 1 else 1.0
