"""The tasks of the runner: one table of name -> (task class, config class, presets).

The built-in tasks (``navigation``, ``adding``, ``lm``, ``digits``) are entered
here explicitly; :func:`register_task` adds a user's task the same way. The
command line (``--task`` choices, ``--preset`` choices and one ``--option`` per
config field) is generated from this table, so a registered task is runnable
from ``moduli run`` with no other change.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, fields
from typing import Any, Mapping, Union

from .config import ADDING_PRESETS, NAVIGATION_PRESETS, AddingConfig, NavigationConfig, TrainConfig
from .digits import DIGITS_PRESETS, DigitsConfig, DigitsTask
from .lm import LM_PRESETS, LMConfig, LMTask
from .tasks import AddingTask, NavigationTask, Task

__all__ = ["TaskEntry", "TASKS", "PRESET_NAMES", "register_task", "make_task", "get_preset", "task_names",
           "preset_names", "add_config_arguments", "config_from_args", "config_from_dict"]

#: Every task has these presets; a task may add its own (navigation: ``authors``, ``authors-paper``).
PRESET_NAMES = ("paper", "cpu", "smoke")
_PRESET_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class TaskEntry:
    """One task of the registry.

    Attributes
    ----------
    task_type : type
        A :class:`~moduli.experiments.tasks.Task` subclass, built as ``task_type(cfg, seed)``.
    config_type : type
        Its :class:`~moduli.experiments.config.TrainConfig` subclass.
    presets : mapping
        ``{"paper": cfg, "cpu": cfg, "smoke": cfg, ...}``, instances of
        ``config_type``: every name of :data:`PRESET_NAMES`, and any presets
        of the task's own.
    """

    task_type: type
    config_type: type
    presets: Mapping[str, TrainConfig]


#: name -> :class:`TaskEntry`; change it only through :func:`register_task`.
TASKS: dict[str, TaskEntry] = {}


def register_task(name: str, task_type: type, config_type: type, presets: Mapping[str, TrainConfig], *,
                  replace: bool = False) -> None:
    """Make ``name`` a task of the runner and of ``moduli run`` / ``moduli sweep``.

    Parameters
    ----------
    name : str
    task_type : type
        A :class:`~moduli.experiments.tasks.Task` subclass, constructed as ``task_type(cfg, seed)``.
    config_type : type
        Its :class:`~moduli.experiments.config.TrainConfig` subclass (a frozen dataclass).
    presets : mapping
        One ``config_type`` instance for each of :data:`PRESET_NAMES`, plus any
        presets of the task's own, named in lower case with digits and inner
        dashes (``authors-paper``).
    replace : bool
        Allow replacing a task of the same name (default: an error).

    Raises
    ------
    TypeError
        If a type or a preset is of the wrong kind.
    ValueError
        If the name is empty or taken, or a preset is missing.
    """
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise ValueError(f"task name must be a non-empty identifier-like string, got {name!r}")
    if name in TASKS and not replace:
        raise ValueError(f"task {name!r} is already registered (pass replace=True to replace it)")
    if not (isinstance(task_type, type) and issubclass(task_type, Task)):
        raise TypeError(f"task_type must be a Task subclass, got {task_type!r}")
    if not (isinstance(config_type, type) and issubclass(config_type, TrainConfig)):
        raise TypeError(f"config_type must be a TrainConfig subclass, got {config_type!r}")
    missing = sorted(set(PRESET_NAMES) - set(presets))
    if missing:
        raise ValueError(f"task {name!r} needs presets {list(PRESET_NAMES)}, missing {missing}")
    for preset, cfg in presets.items():
        if not isinstance(preset, str) or not _PRESET_NAME.match(preset):
            raise ValueError(f"preset names of task {name!r} must be lower-case words joined by dashes "
                             f"(e.g. 'authors-paper'), got {preset!r}")
        if not isinstance(cfg, config_type):
            raise TypeError(f"preset {preset!r} of task {name!r} must be a {config_type.__name__}, "
                            f"got {type(cfg).__name__}")
    TASKS[name] = TaskEntry(task_type, config_type, dict(presets))


for _name, _task, _config, _presets in (
    ("navigation", NavigationTask, NavigationConfig, NAVIGATION_PRESETS),
    ("adding", AddingTask, AddingConfig, ADDING_PRESETS),
    ("lm", LMTask, LMConfig, LM_PRESETS),
    ("digits", DigitsTask, DigitsConfig, DIGITS_PRESETS),
):
    register_task(_name, _task, _config, _presets)


def task_names() -> list[str]:
    """The registered task names, sorted."""
    return sorted(TASKS)


def preset_names(task: str = None) -> list[str]:
    """The presets of ``task`` (default: of every task): :data:`PRESET_NAMES` first, then the others sorted."""
    names = set(_entry(task).presets) if task is not None else {p for e in TASKS.values() for p in e.presets}
    return [p for p in PRESET_NAMES if p in names] + sorted(names - set(PRESET_NAMES))


def _entry(task: str) -> TaskEntry:
    if task not in TASKS:
        raise ValueError(f"task must be one of {task_names()}, got {task!r}")
    return TASKS[task]


def make_task(name: str, cfg: TrainConfig, seed: int) -> Task:
    """The registered task ``name`` with config ``cfg`` and seed ``seed``."""
    return _entry(name).task_type(cfg, seed)


def get_preset(task: str, preset: str) -> TrainConfig:
    """The preset configuration of a task."""
    entry = _entry(task)
    if preset not in entry.presets:
        raise ValueError(f"preset of the {task} task must be one of {preset_names(task)}, got {preset!r}")
    return entry.presets[preset]


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_owners() -> dict[str, dict[str, dataclasses.Field]]:
    owners: dict[str, dict[str, dataclasses.Field]] = {}
    for task, entry in TASKS.items():
        for f in fields(entry.config_type):
            owners.setdefault(f.name, {})[task] = f
    return owners


_TYPES = {"int": int, "float": float, "str": str, "bool": bool, int: int, float: float, str: str, bool: bool}


def add_config_arguments(parser: argparse.ArgumentParser, *, exclude: tuple[str, ...] = ()) -> None:
    """Add one ``--option`` per config field of every registered task.

    Defaults are ``None`` (meaning: the preset's value); the help text names
    the tasks a field belongs to and its ``cpu`` preset value.
    """
    group = parser.add_argument_group("hyperparameters (override the preset)")
    for name, per_task in _field_owners().items():
        if name in exclude:
            continue
        f = next(iter(per_task.values()))
        typ = _TYPES[f.type]
        tasks = "/".join(per_task)
        cpu = ", ".join(f"{t}: {getattr(get_preset(t, 'cpu'), name)}" for t in per_task)
        help = f"{f.metadata.get('help', '')} [{tasks}; cpu preset {cpu}]"
        if typ is bool:
            group.add_argument(_option(name), dest=name, action=argparse.BooleanOptionalAction, default=None, help=help)
        else:
            group.add_argument(
                _option(name), dest=name, type=typ, default=None, metavar=typ.__name__.upper(),
                choices=f.metadata.get("choices"), help=help,
            )


def config_from_args(task: str, preset: str, args: Union[argparse.Namespace, dict], *,
                     exclude: tuple[str, ...] = (), base: TrainConfig = None) -> TrainConfig:
    """The preset of ``task`` (or ``base``) with the options given in ``args`` applied.

    Raises
    ------
    ValueError
        If an option that does not belong to ``task`` was given.
    """
    base = get_preset(task, preset) if base is None else base
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    own = {f.name for f in fields(base)}
    changes = {}
    for name in _field_owners():
        if name in exclude or values.get(name) is None:
            continue
        if name not in own:
            raise ValueError(f"option {_option(name)} does not apply to the {task} task")
        changes[name] = values[name]
    return dataclasses.replace(base, **changes)


def config_from_dict(task: str, data: dict[str, Any]) -> TrainConfig:
    """Rebuild a config from :meth:`TrainConfig.to_dict` output (unknown keys are an error).

    ``data`` from a record written by an older version is read through
    :func:`moduli.experiments.results.migrate_record` first.
    """
    cls = _entry(task).config_type
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {task} config fields {unknown}")
    return cls(**data)
