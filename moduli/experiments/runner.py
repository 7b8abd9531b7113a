"""The experiment runner: train every (regime, lambda, sparsity, seed) not yet recorded.

The work is split by concern: :mod:`.plan` (what to train), :mod:`.train` (one
run's phases and records), :mod:`.results` (``results.jsonl``, checkpoints,
lock, migration of old records), :mod:`.executors` (worker processes, Ray).
This module orchestrates a sweep and re-exports their public names.

Each finished phase appends one JSON line to ``DIR/results.jsonl``; re-running
the same sweep skips every phase already recorded there. After a sparse phase
the model, its masks and the prior are checkpointed atomically to
``DIR/checkpoints/RUN_ID-sparse.pt`` so an interrupted sweep resumes with the
lottery phase and loses at most the phase in progress.
"""

from __future__ import annotations

import errno
import math
from pathlib import Path
from typing import Optional, Sequence

from .config import TrainConfig
from .devices import parse_device, resolve_device
from .executors import run_detached
from .plan import RunSpec, plan_runs, run_config
from .regimes import Regime
from .results import RECORD_FIELDS, RESULTS_FILE, append_result, locked, read_results
from .train import initial_embeddings, progress_bar, run_one

__all__ = ["RunSpec", "plan_runs", "run_sweep", "run_one", "initial_embeddings", "read_results", "append_result",
           "RESULTS_FILE"]


def _check_configs(out: Path, existing: list[dict], runs: list[RunSpec], cfg: TrainConfig) -> None:
    """Refuse to mix a run id with a different configuration in one directory."""
    defaults = type(cfg)().to_dict()
    for spec in runs:
        run_cfg = run_config(cfg, spec).to_dict()
        for r in existing:
            # a field added to the config since a record was written had its default then
            old = {**defaults, **r["config"]}
            if r["run_id"] == spec.run_id and old != run_cfg:
                diff = sorted(k for k in set(old) | set(run_cfg) if old.get(k) != run_cfg.get(k))
                raise ValueError(
                    f"{out} already holds {spec.run_id} ({r['phase']}) trained with a different config "
                    f"(fields {diff}); use another --out to keep both"
                )


def run_sweep(task: str, cfg: TrainConfig, regimes: Sequence[Regime], sparsities: Sequence[float],
              seeds: Sequence[int], out, *, preset: str, lams: Optional[Sequence[float]] = None,
              progress: bool = True, log=print, workers: int = 1, ray: Optional[str] = None,
              threads: Optional[int] = None, device="cpu", gpus_per_run: float = 1.0) -> list[dict]:
    """Train every combination not yet in ``out/results.jsonl``; return the new records.

    Parameters
    ----------
    task : str
        A task of :data:`moduli.experiments.registry.TASKS`.
    cfg : TrainConfig
        The task's configuration (a preset with overrides).
    regimes : sequence of Regime
    sparsities : sequence of float
        Fractions in ``[0, 1)``.
    seeds : sequence of int
    out : path
        Result directory (created if needed).
    preset : str
        Preset name, recorded and part of every run id.
    lams : sequence of float, optional
        Regularizing factors to sweep (default: ``[cfg.lam]``); ignored by ``none``.
    workers : int
        Runs trained at once in local worker processes (default 1: in this
        process, one after the other).
    ray : str, optional
        Train the runs as Ray tasks instead: ``"local"`` starts Ray on this
        machine, anything else is passed to ``ray.init(address=...)`` (for
        example ``"auto"`` or ``"ray://head:10001"``). Needs the ``ray`` extra,
        and ``moduli`` importable on every node.
    threads : int, optional
        ``torch.set_num_threads`` in each worker process or Ray task (and Ray's
        CPU request per run).
    device : str or torch.device
        Where the runs train: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or
        ``"auto"`` (CUDA when present). With ``workers`` > 1 and ``"cuda"``,
        the workers take the GPUs round-robin (one run per GPU with as many
        workers as GPUs). The device is not part of a run's configuration or
        id (a sweep resumes on another device); each record names it.
    gpus_per_run : float
        With Ray and a CUDA device: the GPUs each Ray task asks for (default 1).

    With workers or Ray, each run trains in a scratch directory of its worker
    and sends back its records and checkpoint; only this process writes
    ``out``, so an interrupted sweep loses at most the runs in progress.

    Raises
    ------
    ValueError
        If ``out`` already holds a result of the same run id with a different
        configuration (nothing is overwritten: use another directory), or its
        ``results.jsonl`` holds a line that is not a record
        (:class:`~moduli.experiments.results.ResultsFileError`).
    OSError
        If ``out`` is a file, cannot be created or written (the message names it).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if ray is not None and (not isinstance(ray, str) or not ray):
        raise ValueError(f"ray must be 'local' or a Ray address string, got {ray!r}")
    if ray is None:
        device = resolve_device(device)  # a missing GPU is an error now, before any run
    else:
        parse_device(device)  # the Ray cluster's GPUs are checked when it is joined
    if isinstance(gpus_per_run, bool) or not isinstance(gpus_per_run, (int, float)) or not 0 < gpus_per_run < math.inf:
        raise ValueError(f"gpus_per_run must be a positive number, got {gpus_per_run!r}")
    if progress and log is print:  # keep the messages off the progress bars' lines
        from tqdm.auto import tqdm

        log = tqdm.write
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"the result directory {out} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create the result directory {out} ({exc.strerror or exc})") from exc
    lams = [cfg.lam] if lams is None else list(lams)
    runs = plan_runs(task, preset, regimes, lams, sparsities, seeds)
    with locked(out):
        existing = read_results(out, require=RECORD_FIELDS)
        done = {(r["run_id"], r["phase"]) for r in existing}
        _check_configs(out, existing, runs, cfg)
        todo = [s for s in runs if any((s.run_id, p) not in done for p in s.phases())]
        n_phases = sum(len(s.phases()) for s in runs)
        n_left = sum(1 for s in runs for p in s.phases() if (s.run_id, p) not in done)
        log(f"{len(runs)} runs ({n_phases} results) planned, {n_phases - n_left} already in {out / RESULTS_FILE}")
        if workers == 1 and ray is None:
            new = []
            for spec in progress_bar(todo, "runs", progress):
                new += run_one(spec, run_config(cfg, spec), out, done=done, progress=progress, log=log,
                               device=device)
            return new
        return run_detached(todo, cfg, out, done, workers=workers, ray=ray, threads=threads,
                            progress=progress, log=log, device=device, gpus_per_run=gpus_per_run)
