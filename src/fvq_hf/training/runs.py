"""What both training scripts do around their loops, written once: set up Accelerate, check everything a run can
check before its first step, record what the run is, log, and leave its results.

A run's record (``run.json``: the script, the options that define the run, the data and the base model, the number
of processes) is written into its output folder and into every checkpoint. It is what keeps a user's work apart:

- a new run into a folder that already holds a run (a model, checkpoints, metrics) stops and says how to go on (a
  new ``--output_dir``, ``--resume_from_checkpoint latest``, or ``--overwrite_output_dir``), before it writes
  anything;
- a resume whose checkpoint records another run stops and shows the options that differ, so the weights of one
  run are never continued under the options (and card) of another;
- ``--push_to_hub`` checks the token and the repository before the first step, and pushes only after the results
  are written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

from ..hub.push import HubTarget
from .checkpoints import register_and_resume, register_pretrained_folders, resolve_checkpoint, save_checkpoint
from .config import start_trackers
from .hardware import default_mixed_precision, use_cpu
from .run_record import RUN_RECORD, check_resume, read_run_record, record_differences, run_record, write_run_record

METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "train_results.json"
CHECKPOINTS_DIR = "checkpoints"
# files a finished or interrupted run leaves in its output folder (besides the model's own, named by the script)
RUN_FILES = (RUN_RECORD, METRICS_FILE, RESULTS_FILE, CHECKPOINTS_DIR)


# ------------------------------------------------------------------------------------ options both scripts take
def add_run_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--overwrite_output_dir`` and the Hub flags (``--push_to_hub``, ``--hub_model_id``, ``--hub_token``,
    ``--hub_private``, named as in diffusers' examples)."""
    parser.add_argument(
        "--overwrite_output_dir",
        action="store_true",
        help="start a new run in an --output_dir that holds another run, deleting its checkpoints and logs "
        "(without it such a run stops before writing anything)",
    )
    parser.add_argument("--push_to_hub", action="store_true", help="upload the final output folder with its model card")
    parser.add_argument(
        "--hub_model_id", default=None, help="repository for --push_to_hub (default: the output folder's name)"
    )
    parser.add_argument("--hub_token", default=None, help="Hub token (default: the one `hf auth login` stored)")
    parser.add_argument("--hub_private", action="store_true", help="create the Hub repository as private")


# ------------------------------------------------------------------------------------ set-up
def build_accelerator(args: argparse.Namespace) -> Accelerator:
    """The Accelerator of a training run: CPU where asked (or under torchrun without GPUs), the run's precision
    (``args.mixed_precision`` is resolved in place: bf16 on GPUs that support it), trackers logging under
    ``output_dir/logging_dir``, a seedable sampler so a resume draws the same batches."""
    args.mixed_precision = args.mixed_precision or default_mixed_precision(args.cpu)
    return Accelerator(
        cpu=use_cpu(args.cpu),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(args.output_dir, os.path.join(args.output_dir, args.logging_dir)),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )


def main_process_printer(accelerator: Accelerator):
    """``log(message)``: print on the main process only, flushed (logs of several processes stay readable)."""

    def log(message: str) -> None:
        if accelerator.is_main_process:
            print(message, flush=True)

    return log


def scaled_learning_rate(args: argparse.Namespace, global_batch: int) -> float:
    """``--learning_rate`` per ``--lr_reference_batch`` scaled linearly to the global batch (as a float), or as is
    with ``--no_scale_lr``."""
    return args.learning_rate if args.no_scale_lr else args.learning_rate * global_batch / args.lr_reference_batch


def previous_run(output_dir: str, model_files: tuple[str, ...]) -> list[str]:
    """What of another run ``output_dir`` holds (its saved model, checkpoints, logs), by name; empty if nothing."""
    if not os.path.isdir(output_dir):
        return []
    found = [name for name in (*model_files, *RUN_FILES) if os.path.exists(os.path.join(output_dir, name))]
    checkpoints = os.path.join(output_dir, CHECKPOINTS_DIR)
    if CHECKPOINTS_DIR in found and not any(n.startswith("checkpoint-") for n in os.listdir(checkpoints)):
        found.remove(CHECKPOINTS_DIR)
    return found


def check_output_dir(
    args: argparse.Namespace, record: dict, model_files: tuple[str, ...], checkpoint: tuple[int, str] | None
) -> None:
    """Stop before anything is written when ``--output_dir`` holds another run, saying how to go on.

    A new run (no ``--resume_from_checkpoint``, or one with no checkpoint to resume) may only go into a folder
    that holds no run, or the same run interrupted before its first checkpoint (its record equal to this one's);
    ``--overwrite_output_dir`` lets it replace what is there. A resume (``checkpoint``: the (step, path) it will
    load) is checked against the checkpoint's record by :func:`check_resume`.
    """
    if checkpoint is not None:
        check_resume(checkpoint[1], record)
        return
    if args.overwrite_output_dir:
        return
    found = previous_run(args.output_dir, model_files)
    if found in ([], [RUN_RECORD]):
        return  # nothing, or only the record of a run that failed before its first logged step: nothing to lose
    saved = read_run_record(args.output_dir)
    if saved is not None and not record_differences(saved, record) and CHECKPOINTS_DIR not in found:
        return  # this very run, stopped before its first checkpoint: starting it again loses nothing
    what = ", ".join(found)
    raise SystemExit(
        f"error: --output_dir {args.output_dir} already holds a run ({what}); a new run would replace its model "
        "and mix its checkpoints and metrics with this one's. Choose a new --output_dir, continue that run with "
        "--resume_from_checkpoint latest (and its options), or pass --overwrite_output_dir to replace it."
    )


def clear_previous_run(
    accelerator: Accelerator, args: argparse.Namespace, model_files: tuple[str, ...], checkpoint
) -> list[str]:
    """Before a run that does not resume a ``checkpoint``, delete what :func:`check_output_dir` let it replace: with
    ``--overwrite_output_dir`` the previous run's record, metrics, results, checkpoints, logs and model (nothing
    else in the folder is touched); otherwise the metrics of this same run's earlier attempt, which start again."""
    if checkpoint is not None:
        return []
    if args.overwrite_output_dir:
        found = previous_run(args.output_dir, (*model_files, args.logging_dir))
    else:
        found = [METRICS_FILE] if os.path.isfile(os.path.join(args.output_dir, METRICS_FILE)) else []
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for name in found:
            path = os.path.join(args.output_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    accelerator.wait_for_everyone()
    return found if args.overwrite_output_dir else []


# ------------------------------------------------------------------------------------ the Hub
def check_hub(args: argparse.Namespace, is_main_process: bool = True) -> HubTarget | None:
    """With ``--push_to_hub``, check before the first step that there is a token and that the repository can be
    created or reached (creating it, as diffusers' training scripts do), so a run is never lost to a push that
    could not have worked. Returns the target, or None without ``--push_to_hub``."""
    if not args.push_to_hub:
        return None
    from huggingface_hub import HfApi, get_token

    from ..hub import default_repo_id

    repo_id = default_repo_id(args.output_dir, args.hub_model_id)
    token = args.hub_token or get_token()
    if token is None:
        raise SystemExit(
            "error: --push_to_hub needs a Hub token: log in with `hf auth login` or pass --hub_token "
            "(or drop --push_to_hub and upload the output folder later)"
        )
    if is_main_process:
        try:
            repo_id = HfApi(token=token).create_repo(repo_id, private=args.hub_private or None, exist_ok=True).repo_id
        except Exception as error:  # noqa: BLE001 - any failure here would have lost the run at the end
            raise SystemExit(
                f"error: --push_to_hub: cannot create or reach the Hub repository {repo_id!r} "
                f"({type(error).__name__}: {error}). Check the network (HF_HUB_OFFLINE must be unset), that the "
                "token may write there and --hub_model_id; or drop --push_to_hub and upload the folder later."
            ) from None
    return HubTarget(repo_id, token, args.hub_private or None)


def push_run(hub: HubTarget, output_dir: str, commit_message: str) -> str:
    """Upload ``output_dir`` (model, card, results; no training state) to ``hub``; returns the commit's URL."""
    from ..hub import TRAINING_STATE_PATTERNS, push_folder

    return push_folder(
        output_dir,
        hub.repo_id,
        token=hub.token,
        private=hub.private,
        ignore_patterns=TRAINING_STATE_PATTERNS,
        commit_message=commit_message,
    )


# ------------------------------------------------------------------------------------ logs and outputs
def append_metrics(accelerator: Accelerator, output_dir: str, step: int, values: dict) -> None:
    """One row of ``metrics.jsonl`` (main process only)."""
    if accelerator.is_main_process:
        with open(os.path.join(output_dir, METRICS_FILE), "a") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")


def averaged_copy(model, ema):
    """The weights to save: ``model`` itself, or (with an EMA) a copy holding the average, the trained weights
    left untouched."""
    if ema is None:
        return model
    final = type(model).from_config(model.config)
    final.load_state_dict(model.state_dict())
    ema.copy_to(final.parameters())
    return final


def write_results(output_dir: str, results: dict) -> str:
    """``train_results.json`` (written before any push, so a failed upload never loses it)."""
    path = os.path.join(output_dir, RESULTS_FILE)
    with open(path, "w") as handle:
        json.dump(results, handle, indent=2, default=str)
    return path


# ------------------------------------------------------------------------------------ a run, start to end
class TrainingRun:
    """A training run in ``--output_dir``, from its checks to its results; both training scripts use it so that
    what surrounds their loops is written once.

    Creating it checks, before anything is written: the checkpoint ``--resume_from_checkpoint`` names, that the
    folder holds no other run (:func:`check_output_dir`) and the Hub (:func:`check_hub`). :meth:`begin` then
    clears what may be replaced, resumes, writes the run's record and starts the trackers; :meth:`save_checkpoint`
    saves the state with the record; :meth:`finish` writes the results and pushes after them.

    Args:
        accelerator: the run's (:func:`build_accelerator`).
        args: the parsed options (``output_dir``, ``resume_from_checkpoint``, the Hub flags, …).
        script: the script's name, recorded.
        model_files: what the script saves in ``--output_dir`` besides the run's own files.
        not_defining: the script's options that may change on a resume besides :data:`NOT_DEFINING`.
        facts: recorded with the options (the data and the base model as the script resolved them).
    """

    def __init__(self, accelerator, args, script: str, model_files: tuple[str, ...], not_defining=(), **facts):
        self.accelerator, self.args, self.model_files = accelerator, args, model_files
        self.log = main_process_printer(accelerator)
        self.checkpoints_dir = os.path.join(args.output_dir, CHECKPOINTS_DIR)
        self.record = run_record(args, script, accelerator.num_processes, not_defining, **facts)

        try:
            self.checkpoint = resolve_checkpoint(self.checkpoints_dir, args.resume_from_checkpoint)
        except FileNotFoundError as error:
            raise SystemExit(f"error: {error}") from None
        check_output_dir(args, self.record, model_files, self.checkpoint)
        self.hub = check_hub(args, accelerator.is_main_process)
        self.global_batch = args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
        self.learning_rate = scaled_learning_rate(args, self.global_batch)

    def begin(self, stateful, project: str, pretrained: dict | None = None) -> bool:
        """Clear what this run may replace, register ``stateful`` for checkpoints and resume (True if it did),
        write the run's record, start the trackers. ``pretrained`` (subfolder → unwrapped model, e.g.
        ``{"model": tokenizer}``) are the trained models, which every checkpoint holds as ``from_pretrained``
        folders (and only there)."""

        args = self.args
        self.pretrained = pretrained or {}
        register_pretrained_folders(self.accelerator, self.pretrained)
        cleared = clear_previous_run(self.accelerator, args, self.model_files, self.checkpoint)
        if cleared:
            self.log(f"--overwrite_output_dir: deleted the previous run's {', '.join(cleared)} in {args.output_dir}")
        resumed = register_and_resume(
            self.accelerator, stateful, self.checkpoints_dir, args.resume_from_checkpoint, self.log, self.record
        )
        if self.accelerator.is_main_process:
            write_run_record(args.output_dir, self.record)
        start_trackers(self.accelerator, project, args, args.output_dir)
        return resumed is not None

    def log_metrics(self, step: int, values: dict) -> None:
        """To the trackers and a row of ``metrics.jsonl``."""
        self.accelerator.log(values, step=step)
        append_metrics(self.accelerator, self.args.output_dir, step, values)

    def save_checkpoint(self, step: int) -> str:
        """``checkpoints/checkpoint-<step>``: the training state, the run's record and the models given to
        :meth:`begin` as ``from_pretrained`` folders."""

        return save_checkpoint(
            self.accelerator,
            self.checkpoints_dir,
            step,
            self.args.checkpoints_total_limit,
            self.record,
            self.pretrained,
        )

    def finish(self, results: dict, commit_message: str) -> dict:
        """End the trackers and the process group, write ``train_results.json`` (main process), then push with
        ``--push_to_hub``: a failed upload never loses the results. Returns ``results`` (with ``hub_url`` after a
        push)."""
        # every process waits here while the main one saves: a gloo process group torn down the moment a process
        # leaves its last collective can deadlock at exit (its worker thread still releasing tensors needs the GIL)
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()
        if not self.accelerator.is_main_process:
            return results
        write_results(self.args.output_dir, results)
        if self.hub is not None:
            results["hub_url"] = push_run(self.hub, self.args.output_dir, commit_message)
            write_results(self.args.output_dir, results)
            self.log(f"pushed to {results['hub_url']}")
        return results
