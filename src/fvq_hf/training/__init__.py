"""Training helpers used by the scripts in training/: options (YAML + flags), learning-rate schedules, the
tokenizer's optimizer groups, the data position for exact resume, checkpoints, the run record and early checks
(runs), a fixed-decay EMA, the hardware summary, and the outputs of a tokenizer run."""

from .checkpoints import list_checkpoints, register_and_resume, resolve_checkpoint, save_checkpoint
from .config import (
    add_config_argument,
    load_yaml_config,
    parse_args_with_config,
    start_trackers,
    tracker_config,
)
from .ema import FixedDecayEMA
from .hardware import default_mixed_precision, hardware_summary, use_cpu
from .param_groups import applied_quantizer_lr_scale, tokenizer_param_groups
from .progress import TrainingProgress, resumable_batches
from .runs import (
    HubTarget,
    TrainingRun,
    add_run_arguments,
    append_metrics,
    averaged_copy,
    build_accelerator,
    check_hub,
    check_output_dir,
    clear_previous_run,
    main_process_printer,
    push_run,
    run_record,
    scaled_learning_rate,
    write_results,
    write_run_record,
)
from .schedules import GENERATOR_SCHEDULES, SCHEDULES, annealing_multiplier, get_scheduler

__all__ = [
    "GENERATOR_SCHEDULES",
    "SCHEDULES",
    "FixedDecayEMA",
    "HubTarget",
    "TrainingProgress",
    "TrainingRun",
    "add_config_argument",
    "add_run_arguments",
    "annealing_multiplier",
    "append_metrics",
    "applied_quantizer_lr_scale",
    "averaged_copy",
    "build_accelerator",
    "check_hub",
    "check_output_dir",
    "clear_previous_run",
    "default_mixed_precision",
    "get_scheduler",
    "hardware_summary",
    "list_checkpoints",
    "load_yaml_config",
    "main_process_printer",
    "parse_args_with_config",
    "push_run",
    "register_and_resume",
    "resolve_checkpoint",
    "resumable_batches",
    "run_record",
    "save_checkpoint",
    "scaled_learning_rate",
    "start_trackers",
    "tokenizer_param_groups",
    "tracker_config",
    "use_cpu",
    "write_results",
    "write_run_record",
]
