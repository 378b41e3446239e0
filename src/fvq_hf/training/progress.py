"""Where training stands in steps and data, saved in every checkpoint, so a resumed run takes up the data exactly.

A run killed mid-epoch must not see again the batches it already trained on, nor skip any: the checkpoint
records the optimizer step, the epoch and how many batches of that epoch were drawn, and
:func:`resumable_batches` continues from there (datasets draw their augmentations from (seed, epoch, index),
so the resumed batches are the very ones an uninterrupted run would have drawn).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from torch.utils.data import IterableDataset


class TrainingProgress:
    """The optimizer step, the epoch and the batches drawn in that epoch; register it with
    ``accelerator.register_for_checkpointing`` so ``save_state``/``load_state`` carry it."""

    def __init__(self):
        self.global_step = 0
        self.epoch = 0
        self.batches_in_epoch = 0

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(state)

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value}" for key, value in vars(self).items())
        return f"TrainingProgress({fields})"


def resumable_batches(accelerator, dataloader, progress: TrainingProgress) -> Iterator:
    """Batches for ever, epoch after epoch, starting where ``progress`` says and keeping it up to date.

    Each epoch sets the epoch on the dataset (its augmentations) and on the dataloader (its shuffling), skips the
    batches of that epoch already drawn, and counts every batch it yields; when an epoch's batches are used up it
    moves ``progress`` to the next epoch. The caller counts optimizer steps in ``progress.global_step`` and stops
    iterating when it has done enough. A map-style dataset's loader should be prepared by ``accelerator``; an
    iterable one (a streamed dataset, sharded by itself) is used as is.
    """
    dataset = dataloader.dataset
    while True:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(progress.epoch)
        if hasattr(dataloader, "set_epoch"):
            dataloader.set_epoch(progress.epoch)
        batches, resumed = dataloader, progress.batches_in_epoch
        if resumed:  # resuming mid-epoch: skip what the interrupted run already trained on
            if isinstance(dataset, IterableDataset):
                batches = itertools.islice(dataloader, resumed, None)
            else:
                batches = accelerator.skip_first_batches(dataloader, resumed)
        drawn = 0
        for batch in batches:
            progress.batches_in_epoch += 1
            drawn += 1
            yield batch
        if not drawn and not resumed:
            raise ValueError("the training data gives no batch: fewer images than --train_batch_size per process?")
        progress.epoch += 1
        progress.batches_in_epoch = 0
