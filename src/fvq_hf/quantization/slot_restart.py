"""Dead-slot restart: keep every slot of a VQBridge in use on small data (a departure from the paper, off there).

VQBridge expands each bridge token into its p × p tile of codes with one Linear, so the code at position s of
every tile (slot s, ``VQBridge.slot_of``) comes from the same d rows of that Linear. When no code of a slot is
ever nearest to an encoder output, those rows get no gradient and the slot, K / p² codes at once, never comes
back: usage is capped at live slots / p². On ImageNet with tens of thousands of tokens per step this is rare; on
a few photographs it happens in the first steps (the CPU demo loses 1 to 2 of its 16 slots, a 16k-code image
run 7 of 16).

:class:`SlotRestart` counts the slot of every chosen code. Every ``every`` optimizer steps it looks at the
window just ended (summed over all processes): a slot that got under ``threshold`` of its fair share of the
tokens (none, or a few stray ones) is restarted from the busiest live slot. Its rows of the last Linear become the donor's plus Gaussian noise of ``noise`` × the donor rows' RMS,
and their Adam moments the donor's, so the revived codes sit beside the donor's codes, take part of their
tokens and from then on get gradient of their own; it is the dead-code restart of plain codebooks (e.g.
SoundStream, lucidrains' ``threshold_ema_dead_code``) applied to whole slots, the unit that dies behind a bridge.
"""

from __future__ import annotations

import torch

from .usage import all_reduce_sum
from .vqbridge import VQBridge


class SlotRestart:
    """Restart the dead slots of ``bridge`` every ``every`` optimizer steps.

    Call ``update(indices)`` with the code indices of every (micro-)batch and ``step(optimizer)`` once per
    optimizer step, after ``optimizer.step()``; ``step`` is collective when running distributed (every
    process calls it) and changes the same rows in the same way on every process. Training state, not model
    weights: ``state_dict``/``load_state_dict`` let ``accelerator.register_for_checkpointing`` save it, so a
    resumed run restarts exactly the slots an uninterrupted one would.

    Args:
        bridge: the ``VQBridge`` whose slots to keep alive.
        every: optimizer steps per window.
        threshold: a slot that got fewer than this fraction of its fair share of the window's tokens (total / p²)
            is dead; ``0`` restarts only slots no token chose at all. Slots rarely die outright on small data:
            a few stray tokens keep choosing them while every held-out image ignores them.
        noise: standard deviation of the noise added to the donor's rows, relative to their RMS.
        seed: seed of the noise (with the step, so every process and every resume draws the same).
    """

    def __init__(
        self,
        bridge: VQBridge,
        every: int = 25,
        threshold: float = 0.1,
        noise: float = 0.1,
        seed: int = 0,
    ):
        if every < 1:
            raise ValueError(f"SlotRestart(every={every}): the window must be at least 1 optimizer step")
        if not 0 <= threshold < 1:
            raise ValueError(f"SlotRestart(threshold={threshold}): a fraction of the fair share, in [0, 1)")
        if noise < 0:
            raise ValueError(f"SlotRestart(noise={noise}): the noise scale cannot be negative")
        self.bridge, self.every, self.threshold = bridge, every, threshold
        self.noise, self.seed = noise, seed
        self.num_slots = bridge.config.patch_size**2
        self.counts = torch.zeros(self.num_slots, dtype=torch.long)
        self.steps_in_window = 0
        self.optimizer_steps = 0
        self.restarts = 0  # slots restarted so far
        self.last_counts = None  # tokens per slot over the last window, summed over processes

    def update(self, indices: torch.Tensor) -> None:
        """Count the slots of a batch's chosen codes."""
        slots = self.bridge.slot_of(indices.detach().reshape(-1).long())
        self.counts = self.counts.to(slots.device) + torch.bincount(slots, minlength=self.num_slots)

    def step(self, optimizer: torch.optim.Optimizer | None = None) -> list[int]:
        """End one optimizer step; at the end of a window restart its dead slots. Returns the slots restarted."""
        self.optimizer_steps += 1
        self.steps_in_window += 1
        if self.steps_in_window < self.every:
            return []
        counts = all_reduce_sum(self.counts).cpu().clone()  # not a view of the counts zeroed next
        self.counts.zero_()
        self.steps_in_window = 0
        self.last_counts = counts
        fair_share = counts.sum().item() / self.num_slots
        dead = torch.nonzero(counts <= self.threshold * fair_share).flatten().tolist()
        live = torch.argsort(counts, descending=True, stable=True)[: self.num_slots - len(dead)].tolist()
        if not dead or not live:  # nothing to revive, or nothing to revive it from (no token seen at all)
            return []
        donors = [live[i % len(live)] for i in range(len(dead))]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.optimizer_steps)
        self.restart(dead, donors, optimizer, generator)
        self.restarts += len(dead)
        return dead

    @torch.no_grad()
    def restart(
        self,
        slots: list[int],
        donors: list[int],
        optimizer: torch.optim.Optimizer | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        """Set each slot's rows of the bridge's last Linear (and their optimizer state) from its donor's."""
        linear = self.bridge.final_layer.linear
        d = self.bridge.config.codebook_dim
        states = _optimizer_states(optimizer, (linear.weight, linear.bias))
        for slot, donor in zip(slots, donors):
            target, source = slice(slot * d, (slot + 1) * d), slice(donor * d, (donor + 1) * d)
            for param, state in zip((linear.weight, linear.bias), states):
                rows = param[source]
                scale = self.noise * rows.pow(2).mean().sqrt()
                fresh = torch.randn(rows.shape, generator=generator).to(rows.device, rows.dtype)
                param[target] = rows + scale * fresh
                for value in state.values():
                    if torch.is_tensor(value) and value.shape == param.shape:
                        value[target] = value[source]

    def state_dict(self) -> dict:
        return {
            "counts": self.counts.cpu(),
            "steps_in_window": self.steps_in_window,
            "optimizer_steps": self.optimizer_steps,
            "restarts": self.restarts,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["counts"].numel() != self.num_slots:
            raise ValueError(
                f"slot-restart state is for {state['counts'].numel()} slots, this bridge has {self.num_slots}"
            )
        self.counts = state["counts"].to(self.counts.device, torch.long).clone()
        self.steps_in_window = int(state["steps_in_window"])
        self.optimizer_steps = int(state["optimizer_steps"])
        self.restarts = int(state["restarts"])


def _optimizer_states(optimizer, params) -> list[dict]:
    """The optimizer's per-parameter state of each of ``params`` (empty dicts without an optimizer or state)."""
    if optimizer is None:
        return [{} for _ in params]
    state = getattr(optimizer, "optimizer", optimizer).state  # an Accelerate-wrapped optimizer keeps the real one
    return [state.get(param, {}) for param in params]
