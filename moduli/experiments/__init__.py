"""Experiments of the moduli-regularization paper: tasks, configs, runner, tables.

``import moduli.experiments.cli`` registers the ``moduli run``, ``moduli table``
and ``moduli plot`` subcommands; ``import moduli.experiments.sweep`` registers
``moduli sweep``.
"""

from .adding import AddingRNN, adding_batch
from .config import PRESETS, AddingConfig, NavigationConfig, TrainConfig, get_preset
from .navigation import (
    NavigationRNN, PlaceCells, Trajectories, TrajectoryGenerator, decode_position, navigation_loss,
    position_error_cm,
)
from .regimes import Regime, parse_regime
from .runner import RunSpec, plan_runs, read_results, run_sweep
from .table import markdown_table, summarize, write_csv
from .tasks import AddingTask, NavigationTask, make_task
from . import digits, lm  # noqa: E402  (register the "digits" and "lm" tasks)

__all__ = [
    "AddingRNN", "adding_batch", "PRESETS", "AddingConfig", "NavigationConfig", "TrainConfig", "get_preset",
    "NavigationRNN", "PlaceCells", "Trajectories", "TrajectoryGenerator", "decode_position", "navigation_loss",
    "position_error_cm", "Regime", "parse_regime", "RunSpec", "plan_runs", "read_results", "run_sweep",
    "markdown_table", "summarize", "write_csv", "AddingTask", "NavigationTask", "make_task",
]
