"""Training helpers used by the scripts in training/: learning-rate schedules, EMA, checkpoint management."""

from .schedules import SCHEDULES, annealing_multiplier, get_scheduler

__all__ = ["SCHEDULES", "annealing_multiplier", "get_scheduler"]
