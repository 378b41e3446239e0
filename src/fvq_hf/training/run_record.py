"""A training run's record (``run.json``): the script, the options that define the run (local paths made absolute),
the data and the base model, the number of processes. Written into the output folder and every checkpoint; a resume
of a checkpoint whose record differs from the current one stops and shows the difference."""

from __future__ import annotations

import argparse
import json
import os

RUN_RECORD = "run.json"
# options that say how a run is watched, saved or published, not what it trains: they may change on a resume
NOT_DEFINING = frozenset(
    {
        "config",
        "output_dir",
        "overwrite_output_dir",
        "resume_from_checkpoint",
        "logging_steps",
        "logging_dir",
        "report_to",
        "checkpointing_steps",
        "checkpoints_total_limit",
        "validation_steps",
        "dataloader_num_workers",
        "cpu",
        "push_to_hub",
        "hub_model_id",
        "hub_token",
        "hub_private",
    }
)


def _resolved(value):
    """A local path as an absolute one (the same folder named from another directory is the same data)."""
    if isinstance(value, str) and value and os.path.exists(value):
        return os.path.abspath(value)
    return value


def run_record(args: argparse.Namespace, script: str, num_processes: int, not_defining=(), **facts) -> dict:
    """What a run is: the script, every option that defines it (local paths made absolute), the number of
    processes, and ``facts`` (e.g. the data and the base model as the script resolved them)."""
    skip = NOT_DEFINING | set(not_defining)
    options = {key: _resolved(value) for key, value in sorted(vars(args).items()) if key not in skip}
    return {"script": script, "options": options, "num_processes": num_processes, **facts}


def record_differences(saved: dict, current: dict) -> list[str]:
    """``key: saved → current`` for every option or fact that differs between two records."""
    flat = {}
    for name, record in (("saved", saved), ("current", current)):
        for key, value in record.items():
            if key == "options":
                for option, setting in value.items():
                    flat.setdefault(f"--{option}", {})[name] = setting
            else:
                flat.setdefault(key, {})[name] = value
    return [
        f"{key}: {values.get('saved')!r} (recorded) vs {values.get('current')!r} (now)"
        for key, values in sorted(flat.items())
        if values.get("saved") != values.get("current")
    ]


def read_run_record(folder: str) -> dict | None:
    path = os.path.join(folder, RUN_RECORD)
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def write_run_record(folder: str, record: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, RUN_RECORD)
    with open(path + ".tmp", "w") as handle:
        json.dump(record, handle, indent=2, default=str)
    os.replace(path + ".tmp", path)


def check_resume(checkpoint: str, record: dict) -> None:
    """Stop when ``checkpoint`` was saved by a run other than the one ``record`` describes, showing the difference
    (a checkpoint without a record, from an older version, is let through)."""
    saved = read_run_record(checkpoint)
    if saved is None:
        return
    differences = record_differences(saved, record)
    if differences:
        raise SystemExit(
            f"error: {checkpoint} was saved by another run than this one; resuming it would continue its weights "
            "under these options. What differs:\n  "
            + "\n  ".join(differences)
            + "\nResume with the recorded options, or start a new run in a new --output_dir."
        )
