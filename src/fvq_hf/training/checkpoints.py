"""Training checkpoints on top of ``accelerator.save_state``: atomic, numbered, pruned to the last k.

A checkpoint is written into a hidden temporary folder and renamed into place only once complete, so a run
killed mid-write leaves the previous checkpoint intact and no half-written ``checkpoint-N`` behind.
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
