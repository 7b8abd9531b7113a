"""Experiments of the moduli-regularization paper: tasks, configs, runner, tables.

Tasks are registered in :mod:`moduli.experiments.registry` (the built-in ones
explicitly, a user's with :func:`register_task`). ``import
moduli.experiments.cli`` registers the ``moduli run``, ``moduli table`` and
``moduli plot`` subcommands; ``import moduli.experiments.sweep`` registers
``moduli sweep``.
"""

from .adding import AddingRNN, adding_batch
from .config import AddingConfig, NavigationConfig, TrainConfig
from .navigation import (
    NavigationRNN, PlaceCells, Trajectories, TrajectoryGenerator, decode_position, navigation_loss,
    position_error_cm,
)
from .regimes import Regime, parse_inhibitor_args, parse_regime
from .registry import TASKS, get_preset, make_task, register_task
from .runner import RunSpec, plan_runs, read_results, run_sweep
from .table import markdown_table, summarize, write_csv
from .tasks import AddingTask, NavigationTask, Task

__all__ = [
    "AddingRNN", "adding_batch", "AddingConfig", "NavigationConfig", "TrainConfig", "get_preset",
    "NavigationRNN", "PlaceCells", "Trajectories", "TrajectoryGenerator", "decode_position", "navigation_loss",
    "position_error_cm", "Regime", "parse_regime", "parse_inhibitor_args", "RunSpec", "plan_runs", "read_results",
    "run_sweep", "markdown_table", "summarize", "write_csv", "AddingTask", "NavigationTask", "Task", "make_task",
    "register_task", "TASKS",
]
