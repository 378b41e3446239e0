"""Training checkpoints on top of ``accelerator.save_state``: atomic, numbered, pruned to the last k.

A checkpoint is written into a hidden temporary folder and renamed into place only once complete, so a run
killed mid-write leaves the previous checkpoint intact and no half-written ``checkpoint-N`` behind.

The trained models are saved once, as ``from_pretrained`` folders (``checkpoint-N/model``,
``checkpoint-N/transformer``), so a user can sample or evaluate any checkpoint; :func:`register_pretrained_folders`
takes them out of Accelerate's own model files (as diffusers' training examples do with their save/load hooks) and
loads them back from those folders on a resume.
"""

from __future__ import annotations

import os
import re
import shutil

from .run_record import check_resume, write_run_record

_NAME = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(checkpoints_dir: str) -> list[tuple[int, str]]:
    """Complete checkpoints as (step, path), oldest first."""
    if not os.path.isdir(checkpoints_dir):
        return []
    found = [
        (int(m.group(1)), os.path.join(checkpoints_dir, name))
        for name in os.listdir(checkpoints_dir)
        if (m := _NAME.match(name))
    ]
    return sorted(found)


def resolve_checkpoint(checkpoints_dir: str, which: str | None) -> tuple[int, str] | None:
    """``"latest"`` → the newest complete checkpoint (None if there is none yet); a path or name → that one."""
    if not which:
        return None
    if which == "latest":
        found = list_checkpoints(checkpoints_dir)
        return found[-1] if found else None
    path = which if os.path.isdir(which) else os.path.join(checkpoints_dir, which)
    match = _NAME.match(os.path.basename(os.path.normpath(path)))
    if not os.path.isdir(path) or not match:
        available = ", ".join(os.path.basename(p) for _, p in list_checkpoints(checkpoints_dir)) or "none"
        raise FileNotFoundError(
            f"--resume_from_checkpoint {which!r}: no such checkpoint (available in {checkpoints_dir}: {available}); "
            "use 'latest' to take the newest"
        )
    return int(match.group(1)), path


def _index_of(accelerator, models: list, model) -> int | None:
    for i, candidate in enumerate(models):
        if accelerator.unwrap_model(candidate) is model:
            return i
    return None


def register_pretrained_folders(accelerator, pretrained: dict) -> None:
    """Save and load each of ``pretrained`` (subfolder → the unwrapped model) only as its ``from_pretrained``
    folder in a checkpoint, never a second time in Accelerate's ``model*.safetensors``.

    A checkpoint written before this existed (its weights in ``model*.safetensors`` and no such folder) still
    loads: a model whose folder is absent is left to Accelerate."""

    def drop_saved_weights(models: list, weights: list, output_dir: str) -> None:
        if len(weights) != len(models):  # FSDP / DeepSpeed save their models their own way
            return
        found = (_index_of(accelerator, models, model) for model in pretrained.values())
        for i in sorted((i for i in found if i is not None), reverse=True):
            weights.pop(i)

    def load_from_folders(models: list, input_dir: str) -> None:
        for subfolder, model in pretrained.items():
            folder = os.path.join(input_dir, subfolder)
            i = _index_of(accelerator, models, model)
            if i is None or not os.path.isdir(folder):
                continue
            models.pop(i)
            model.load_state_dict(type(model).from_pretrained(folder).state_dict())

    accelerator.register_save_state_pre_hook(drop_saved_weights)
    accelerator.register_load_state_pre_hook(load_from_folders)


def save_checkpoint(
    accelerator,
    checkpoints_dir: str,
    step: int,
    total_limit: int | None = None,
    record: dict | None = None,
    pretrained: dict | None = None,
) -> str:
    """Save the full training state (every process takes part) as ``checkpoint-<step>``, atomically, with the
    run's ``record`` (``run.json``) beside it, so a resume can tell whether the checkpoint is its own, and each of
    ``pretrained`` (subfolder → model) saved with ``save_pretrained``, so any checkpoint can be loaded with
    ``from_pretrained(checkpoint, subfolder=...)`` to sample or evaluate."""
    final = os.path.join(checkpoints_dir, f"checkpoint-{step}")
    temporary = os.path.join(checkpoints_dir, f".checkpoint-{step}.tmp")
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        os.makedirs(checkpoints_dir, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(temporary)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if record is not None:
            write_run_record(temporary, record)
        for subfolder, model in (pretrained or {}).items():
            model.save_pretrained(os.path.join(temporary, subfolder))
        if os.path.isdir(final):  # the same step saved again (e.g. after a resume): replace it whole
            shutil.rmtree(final)
        os.replace(temporary, final)
        if total_limit:
            for _, old in list_checkpoints(checkpoints_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def register_and_resume(
    accelerator, stateful, checkpoints_dir: str, which: str | None, log=print, record: dict | None = None
) -> str | None:
    """Register the training state that ``save_state`` must carry (``None`` entries are skipped), then load the
    checkpoint ``which`` names (``"latest"`` or a folder name) if there is one; returns its path.

    With ``record`` (the current run's), a checkpoint saved by another run stops the program showing what
    differs, before anything is loaded; a checkpoint whose saved state does not fit what this run registered
    stops it with the same advice instead of Accelerate's internal count."""
    for item in stateful:
        if item is not None:
            accelerator.register_for_checkpointing(item)
    resume = resolve_checkpoint(checkpoints_dir, which)
    if which and resume is None:
        log(f"no checkpoint in {checkpoints_dir} yet: starting from scratch")
        return None
    if resume is not None:
        if record is not None:
            check_resume(resume[1], record)
        try:
            accelerator.load_state(resume[1])
        except (ValueError, RuntimeError, KeyError):
            raise SystemExit(
                f"error: {resume[1]} does not hold this run's training state: it was saved by a run with other "
                "options (e.g. with or without --use_ema, a discriminator or slot restart). Resume with that run's "
                "options, or start a new run in a new --output_dir."
            ) from None
        log(f"resumed from {resume[1]}")
        return resume[1]
    return None
