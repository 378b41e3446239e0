"""Options of a training script: argparse flags that a YAML file can also set (``--config``; the command line wins).

Every script in training/ builds an ``argparse.ArgumentParser`` whose option names are the YAML keys, then
calls :func:`parse_args_with_config`. A key that is not an option is an error naming it, so a typo in a recipe
stops the run instead of silently training with a default.
"""

from __future__ import annotations

import argparse
import os


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` (a YAML file whose keys are any of the parser's options)."""
    parser.add_argument(
        "--config", default=None, help="YAML file whose keys are any of these options (flags override it)"
    )


def load_yaml_config(path: str | os.PathLike) -> dict:
    """The mapping in a YAML file (an empty file is an empty mapping)."""
    import yaml

    with open(path) as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise TypeError(f"{path}: expected a mapping of option names to values, got {type(values).__name__}")
    return values


def parse_args_with_config(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with the values of ``--config`` (if given) as defaults, so flags on the command line win.

    The YAML keys are checked against the parser's options; unknown keys end the program with a usage error.
    The parser needs a ``--config`` option (:func:`add_config_argument`).
    """
    known, _ = parser.parse_known_args(argv)
    if getattr(known, "config", None):
        try:
            values = load_yaml_config(known.config)
        except (OSError, TypeError) as error:
            parser.error(str(error))
        options = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - options)
        if unknown:
            parser.error(f"{known.config}: unknown option(s) {', '.join(unknown)}")
        parser.set_defaults(**values)
    return parser.parse_args(argv)


def tracker_config(args: argparse.Namespace) -> dict:
    """The options trackers (TensorBoard hparams, W&B config) can record: scalars and strings only."""
    return {key: value for key, value in vars(args).items() if isinstance(value, (int, float, str, bool))}


def start_trackers(accelerator, project: str, args: argparse.Namespace, output_dir: str) -> None:
    """Create ``output_dir`` and start the trackers (TensorBoard, …) with the run's options as hyperparameters."""
    if accelerator.is_main_process:
        os.makedirs(output_dir, exist_ok=True)
        accelerator.init_trackers(project, config=tracker_config(args))
    elif accelerator.log_with:
        accelerator.init_trackers(project)
