"""An exponential moving average of the weights with a fixed decay from the first step.

This is the EMA the official FVQ / LlamaGen tokenizer training keeps (optional there): a copy of the weights
taken before training, then after every optimizer step ``ema = decay · ema + (1 − decay) · weights``. diffusers'
``EMAModel`` instead warms its decay up (``(1 + t) / (10 + t)``, capped at ``decay``; 0 at the first step), so
the two averages differ most early in training; ``train_tokenizer.py --ema_schedule`` selects either. The
interface is ``EMAModel``'s (``step``, ``copy_to``, ``store``/``restore``, ``to``, ``state_dict``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class FixedDecayEMA:
    """EMA of ``parameters`` with a constant ``decay``, starting from their current values.

    Args:
        parameters: the parameters to average (e.g. ``model.parameters()``); their order is the state's order.
        decay: the weight of the running average at every step (0.9999 in the official recipe).
    """

    def __init__(self, parameters: Iterable[torch.nn.Parameter], decay: float = 0.9999):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.optimization_step = 0
        self.shadow_params = [p.detach().clone() for p in parameters]
        self._stored: list[torch.Tensor] | None = None

    @torch.no_grad()
    def step(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Move the average towards ``parameters`` (call once per optimizer step)."""
        self.optimization_step += 1
        for shadow, param in zip(self.shadow_params, parameters, strict=True):
            shadow.lerp_(param.detach().to(shadow.dtype), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Write the average into ``parameters``."""
        for shadow, param in zip(self.shadow_params, parameters, strict=True):
            param.copy_(shadow)

    def store(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Keep a copy of ``parameters`` to :meth:`restore` after evaluating with the average."""
        self._stored = [p.detach().clone() for p in parameters]

    @torch.no_grad()
    def restore(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        if self._stored is None:
            raise RuntimeError("restore() without a store() before it")
        for stored, param in zip(self._stored, parameters, strict=True):
            param.copy_(stored)
        self._stored = None

    def to(self, device=None, dtype=None) -> FixedDecayEMA:
        self.shadow_params = [
            p.to(device=device, dtype=dtype if p.is_floating_point() else None) for p in self.shadow_params
        ]
        return self

    def state_dict(self) -> dict:
        return {"decay": self.decay, "optimization_step": self.optimization_step, "shadow_params": self.shadow_params}

    def load_state_dict(self, state: dict) -> None:
        if len(state["shadow_params"]) != len(self.shadow_params):
            raise ValueError(
                f"EMA state holds {len(state['shadow_params'])} parameters, this model {len(self.shadow_params)}"
            )
        self.decay = state["decay"]
        self.optimization_step = state["optimization_step"]
        self.shadow_params = [
            saved.to(device=current.device, dtype=current.dtype)
            for saved, current in zip(state["shadow_params"], self.shadow_params, strict=True)
        ]
