"""The experiment runner: train every (regime, lambda, sparsity, seed) and append results.

One *run* trains a model with gradual magnitude pruning to its sparsity (the
``sparse`` phase) and, for a sparsity above zero, retrains fresh weights on the
learned mask with the same prior and frozen embeddings (the ``lottery``
phase). Each finished phase appends one JSON line to ``DIR/results.jsonl``;
re-running the same sweep skips every phase already recorded there. After a
sparse phase the model, its masks and the prior are checkpointed atomically to
``DIR/checkpoints/RUN_ID-sparse.pt`` so an interrupted sweep resumes with the
lottery phase and loses at most the phase in progress.
"""

from __future__ import annotations

import copy
import datetime as _dt
import io
import json
import math
import os
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch
from torch import nn

from .config import TrainConfig
from .regimes import Regime, build_prior
from .tasks import Task, make_task

__all__ = ["RunSpec", "plan_runs", "run_sweep", "run_one", "initial_embeddings", "read_results", "append_result",
           "RESULTS_FILE"]

RESULTS_FILE = "results.jsonl"
# Offsets that keep the random streams of one seed apart.
_TRAIN_STREAM, _LOTTERY_STREAM, _INIT_STREAM, _EMBED_STREAM = 11, 13, 17, 19


def _version() -> str:
    from .. import __version__

    return __version__


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep (both of its phases)."""

    task: str
    preset: str
    regime: Regime
    lam: float
    sparsity: float
    seed: int

    @property
    def run_id(self) -> str:
        label = self.regime.label.replace(":", "-")
        return f"{self.task}-{self.preset}-{label}-lam{self.lam:g}-s{self.sparsity:g}-seed{self.seed}"

    def phases(self) -> tuple[str, ...]:
        return ("sparse", "lottery") if self.sparsity > 0 else ("sparse",)


def _check_sparsity(s) -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float)):
        raise TypeError(f"sparsity must be a number in [0, 1), got {s!r}")
    if not (0 <= s < 1):
        raise ValueError(f"sparsity must be in [0, 1) (a fraction, e.g. 0.9), got {s!r}")
    return float(s)


def plan_runs(task: str, preset: str, regimes: Sequence[Regime], lams: Sequence[float],
              sparsities: Sequence[float], seeds: Sequence[int]) -> list[RunSpec]:
    """Every combination, seeds outermost so a cut-short sweep has whole seeds."""
    if not regimes or not lams or not sparsities or not seeds:
        raise ValueError("regimes, lams, sparsities and seeds must each be non-empty")
    runs = []
    for seed in seeds:
        for sparsity in sparsities:
            for regime in regimes:
                for lam in lams:
                    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0 or math.isinf(lam):
                        raise ValueError(f"lam must be a non-negative finite number, got {lam!r}")
                    lam_eff = 0.0 if regime.kind == "none" else float(lam)
                    spec = RunSpec(task, preset, regime, lam_eff, _check_sparsity(sparsity), int(seed))
                    if spec not in runs:
                        runs.append(spec)
    return runs


# ----------------------------------------------------------------------------- results file

def read_results(out) -> list[dict]:
    """The records of ``out/results.jsonl`` (or of that file given directly).

    A line cut short by a crash (and left in place: nothing is ever rewritten)
    is skipped with a warning on stderr.
    """
    path = Path(out)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.exists():
        return []
    records = []
    for i, line in enumerate(path.read_text().split("\n")):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"moduli: skipping the incomplete line {i + 1} of {path}", file=sys.stderr)
    return records


def append_result(out, record: dict) -> None:
    """Append one JSON line, flushed and fsynced; an incomplete last line is left alone."""
    path = Path(out) / RESULTS_FILE
    line = json.dumps(record, sort_keys=True, allow_nan=False)
    prefix = ""
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                prefix = "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (prefix + line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write(buf.getvalue(), path)


def _atomic_write(data: bytes, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextmanager
def _locked(out: Path):
    """Hold an exclusive lock on ``out`` so two sweeps never write the same results."""
    import fcntl

    fh = open(out / ".lock", "a")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another moduli run is writing to {out}; wait for it or use another --out") from None
        yield
    finally:
        fh.close()


# ----------------------------------------------------------------------------- model pieces

def _module_and_name(model: nn.Module, qualified: str):
    module_path, _, name = qualified.rpartition(".")
    return model.get_submodule(module_path) if module_path else model, name


def _weight_names(model: nn.Module) -> list[str]:
    """Qualified names of every weight matrix (biases and 1-D parameters excluded)."""
    names = []
    for name, p in model.named_parameters():
        base = name[: -len("_orig")] if name.endswith("_orig") else name
        if p.ndim >= 2:
            names.append(base)
    return names


def _effective(model: nn.Module, qualified: str) -> torch.Tensor:
    """The weight as used in the forward pass (``orig * mask`` under pruning)."""
    module, name = _module_and_name(model, qualified)
    mask = getattr(module, name + "_mask", None)
    if mask is not None:
        return getattr(module, name + "_orig").detach() * mask
    return getattr(module, name).detach()


def _zero_fraction(tensors: Iterable[torch.Tensor]) -> float:
    zeros = total = 0
    for t in tensors:
        zeros += int((t == 0).sum())
        total += t.numel()
    return zeros / total if total else 0.0


def _targets(task: Task, model: nn.Module, which: str) -> list[str]:
    return list(task.recurrent) if which == "recurrent" else _weight_names(model)


def _attach(model, prior, names, seed):
    from .. import regularizers as rg

    return rg.attach(model, prior, targets=list(names), generator=torch.Generator().manual_seed(seed))


def _pruner(model, names, cfg, sparsity):
    from .. import pruning

    params = [_module_and_name(model, n) for n in names]
    return pruning.GradualMagnitudePruning(params, target_sparsity=sparsity, epochs=cfg.epochs, scope=cfg.prune_scope)


def _masks(model, names) -> dict[str, torch.Tensor]:
    out = {}
    for n in names:
        module, name = _module_and_name(model, n)
        mask = getattr(module, name + "_mask", None)
        if mask is not None:
            out[n] = mask.detach().clone()
    return out


def _restore_masks(model, masks: dict[str, torch.Tensor]) -> None:
    from torch.nn.utils import prune

    for n, mask in masks.items():
        module, name = _module_and_name(model, n)
        prune.custom_from_mask(module, name, mask)


# ----------------------------------------------------------------------------- training

def _train_phase(task: Task, model, cfg: TrainConfig, *, lam, priors, pruner, generator, desc, progress):
    params = [p for p in model.parameters() if p.requires_grad]
    embedding = [p for p in priors.parameters() if p.requires_grad] if priors is not None else []
    if embedding and cfg.embed_lr > 0:  # trained embeddings at their own learning rate
        opt = task.optimizer([{"params": params}, {"params": embedding, "lr": cfg.embed_lr}])
    else:
        opt = task.optimizer(params + embedding)
    params += embedding
    epoch_starts = {round(k * cfg.steps / cfg.epochs): k for k in range(cfg.epochs)}
    losses = []
    diverged = False
    bar = _tqdm(range(cfg.steps), desc, progress)
    for step in bar:
        if step in epoch_starts:
            task.begin_epoch(model, opt, epoch_starts[step])
            if pruner is not None:
                pruner.step()
        loss = task.loss(model, task.sample(generator))
        if not torch.isfinite(loss):
            diverged = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if priors is not None and lam > 0:
            # the fused gradient of lam * penalty (same update as adding it to the loss)
            priors.add_penalty_grad_(lam)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0 and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses, diverged


def _tqdm(iterable, desc, progress, total=None):
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, mininterval=1.0)


def _train_and_record(phase, spec, task, model, cfg, priors, pruner, stream, prune_names, progress,
                      started, t0) -> dict:
    """Train one phase (seeded from ``stream``), evaluate unless it diverged, and
    build its record; ``started``/``t0`` mark when the phase's preparation began."""
    gen = torch.Generator().manual_seed(stream * 1_000_000 + spec.seed)
    losses, diverged = _train_phase(task, model, cfg, lam=spec.lam, priors=priors, pruner=pruner,
                                    generator=gen, desc=f"{spec.run_id} {phase}", progress=progress)
    train_s, t1 = time.perf_counter() - t0, time.perf_counter()
    value = task.evaluate(model) if not diverged else None
    return _record(spec, phase, task, model, cfg, value, diverged=diverged, losses=losses,
                   prune_names=prune_names, train_s=train_s, eval_s=time.perf_counter() - t1, started=started)


def _record(spec: RunSpec, phase: str, task: Task, model, cfg, value, *, diverged, losses, prune_names,
            train_s, eval_s, started) -> dict:
    rec_names = list(task.recurrent)
    value_ok = value is not None and math.isfinite(value)
    return {
        "run_id": spec.run_id,
        "task": spec.task,
        "preset": spec.preset,
        "regime": spec.regime.label,
        "regime_spec": spec.regime.to_dict(),
        "lam": spec.lam,
        "sparsity": spec.sparsity,
        "seed": spec.seed,
        "phase": phase,
        "metric": task.metric,
        "value": float(value) if value_ok else None,
        "diverged": bool(diverged or not value_ok),
        "final_train_loss": float(sum(losses[-20:]) / len(losses[-20:])) if losses else None,
        "recurrent_sparsity": _zero_fraction(_effective(model, n) for n in rec_names),
        "pruned_sparsity": _zero_fraction(_effective(model, n) for n in prune_names),
        "model_sparsity": _zero_fraction(_effective(model, n) for n in _weight_names(model)),
        "pruned_weights": list(prune_names),
        "config": cfg.to_dict(),
        "version": _version(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "timings": {"train_s": round(train_s, 3), "eval_s": round(eval_s, 3)},
        "started_utc": started,
        "finished_utc": _now(),
    }


def _build(spec: RunSpec, cfg: TrainConfig):
    """A run's task, seeded fresh model, its initial state and the attached priors (or None)."""
    task = make_task(spec.task, cfg, spec.seed)
    torch.manual_seed(_INIT_STREAM * 1_000_000 + spec.seed)
    model = task.build_model()
    initial_state = copy.deepcopy(model.state_dict())
    prior = build_prior(spec.regime, cfg)
    priors = None
    if prior is not None:
        priors = _attach(model, prior, _targets(task, model, cfg.prior_targets), _EMBED_STREAM * 1_000_000 + spec.seed)
    return task, model, initial_state, priors


def initial_embeddings(spec: RunSpec, cfg: TrainConfig) -> dict:
    """``{weight name: (points_out, points_in)}``: the embeddings run ``spec`` starts from.

    Built exactly as :func:`run_one` builds them, so a checkpoint's trained
    embeddings can be compared with their seeded starting points.
    """
    return _embeddings(_build(spec, cfg)[3])


def run_one(spec: RunSpec, cfg: TrainConfig, out: Path, *, done: set, progress: bool = True, log=print) -> list[dict]:
    """Train the phases of ``spec`` that are not in ``done``; append and return their records."""
    out = Path(out)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    ckpt_path = ckpt_dir / f"{spec.run_id}-sparse.pt"
    todo = [p for p in spec.phases() if (spec.run_id, p) not in done]
    if not todo:
        return []
    task, model, initial_state, priors = _build(spec, cfg)
    prune_names = _targets(task, model, cfg.prune_targets)
    records = []

    if "sparse" in todo:
        started, t0 = _now(), time.perf_counter()
        pruner = _pruner(model, prune_names, cfg, spec.sparsity) if spec.sparsity > 0 else None
        rec = _train_and_record("sparse", spec, task, model, cfg, priors, pruner, _TRAIN_STREAM, prune_names,
                                progress, started, t0)
        if spec.sparsity > 0:
            _atomic_save({
                "run_id": spec.run_id, "config": cfg.to_dict(), "model": model.state_dict(),
                "masks": _masks(model, prune_names), "initial_state": initial_state,
                "priors": priors.state_dict() if priors is not None and hasattr(priors, "state_dict") else None,
                "embeddings": _embeddings(priors),
            }, ckpt_path)
        append_result(out, rec)
        records.append(rec)
        log(f"{spec.run_id} sparse: {task.metric} = {rec['value']} (recurrent sparsity {rec['recurrent_sparsity']:.3f})")
    elif "lottery" in todo:
        if not ckpt_path.exists():
            raise FileNotFoundError(
                f"{spec.run_id}: the sparse result is recorded but its checkpoint {ckpt_path} is missing; "
                "the lottery phase needs the learned mask"
            )
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        _restore_masks(model, state["masks"])
        model.load_state_dict(state["model"])
        initial_state = state["initial_state"]
        if priors is not None and state["priors"] is not None:
            priors.load_state_dict(state["priors"])

    if "lottery" in todo:
        from .. import pruning

        started, t0 = _now(), time.perf_counter()
        pruning.lottery_reset(model, mode=cfg.lottery_mode,
                              initial_state=initial_state if cfg.lottery_mode == "rewind" else None,
                              priors=priors, seed=_LOTTERY_STREAM * 1_000_000 + spec.seed)
        rec = _train_and_record("lottery", spec, task, model, cfg, priors, None, _LOTTERY_STREAM, prune_names,
                                progress, started, t0)
        append_result(out, rec)
        records.append(rec)
        log(f"{spec.run_id} lottery: {task.metric} = {rec['value']} (recurrent sparsity {rec['recurrent_sparsity']:.3f})")
    return records


def run_sweep(task: str, cfg: TrainConfig, regimes: Sequence[Regime], sparsities: Sequence[float],
              seeds: Sequence[int], out, *, preset: str, lams: Optional[Sequence[float]] = None,
              progress: bool = True, log=print, workers: int = 1, ray: Optional[str] = None,
              threads: Optional[int] = None) -> list[dict]:
    """Train every combination not yet in ``out/results.jsonl``; return the new records.

    Parameters
    ----------
    task : {"navigation", "adding"}
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

    With workers or Ray, each run trains in a scratch directory of its worker
    and sends back its records and checkpoint; only this process writes
    ``out``, so an interrupted sweep loses at most the runs in progress.

    Raises
    ------
    ValueError
        If ``out`` already holds a result of the same run id with a different
        configuration (nothing is overwritten: use another directory).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if ray is not None and (not isinstance(ray, str) or not ray):
        raise ValueError(f"ray must be 'local' or a Ray address string, got {ray!r}")
    if progress and log is print:  # keep the messages off the progress bars' lines
        from tqdm.auto import tqdm

        log = tqdm.write
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lams = [cfg.lam] if lams is None else list(lams)
    runs = plan_runs(task, preset, regimes, lams, sparsities, seeds)
    with _locked(out):
        existing = read_results(out)
        done = set()
        for r in existing:
            done.add((r["run_id"], r["phase"]))
        defaults = type(cfg)().to_dict()
        for spec in runs:
            run_cfg = _run_config(cfg, spec).to_dict()
            for r in existing:
                # a field added to the config since a record was written had its default then
                old = {**defaults, **r["config"]}
                if r["run_id"] == spec.run_id and old != run_cfg:
                    diff = sorted(k for k in set(old) | set(run_cfg) if old.get(k) != run_cfg.get(k))
                    raise ValueError(
                        f"{out} already holds {spec.run_id} ({r['phase']}) trained with a different config "
                        f"(fields {diff}); use another --out to keep both"
                    )
        todo = [s for s in runs if any((s.run_id, p) not in done for p in s.phases())]
        n_phases = sum(len(s.phases()) for s in runs)
        log(f"{len(runs)} runs ({n_phases} results) planned, {n_phases - sum(1 for s in runs for p in s.phases() if (s.run_id, p) not in done)} already in {out / RESULTS_FILE}")
        if workers == 1 and ray is None:
            new = []
            for spec in _tqdm(todo, "runs", progress):
                new += run_one(spec, _run_config(cfg, spec), out, done=done, progress=progress, log=log)
            return new
        return _run_detached(todo, cfg, out, done, workers=workers, ray=ray, threads=threads,
                             progress=progress, log=log)


# ----------------------------------------------------------------------------- workers and Ray

def _train_detached(spec: RunSpec, cfg: TrainConfig, todo: tuple, checkpoint: Optional[bytes],
                    threads: Optional[int]) -> tuple[list[dict], Optional[bytes]]:
    """Worker side: train the phases ``todo`` of ``spec`` in a scratch directory.

    Returns the records and the bytes of the sparse-phase checkpoint (``None``
    when the run has none, i.e. at sparsity 0).
    """
    import tempfile

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="moduli-run-") as tmp:
        ckpt = Path(tmp) / "checkpoints" / f"{spec.run_id}-sparse.pt"
        if checkpoint is not None:
            ckpt.parent.mkdir()
            ckpt.write_bytes(checkpoint)
        done = {(spec.run_id, p) for p in spec.phases() if p not in todo}
        records = run_one(spec, cfg, Path(tmp), done=done, progress=False, log=lambda *a: None)
        return records, ckpt.read_bytes() if ckpt.exists() else None


class _RayPool:
    """The two methods of an executor the runner uses, on Ray tasks."""

    def __init__(self, address: str, threads: Optional[int]):
        try:
            import ray
        except ImportError:
            raise RuntimeError("--ray needs Ray: pip install 'moduli[ray]'") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            if address == "local":
                ray.init(include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        self._remote = ray.remote(num_cpus=threads or 1)(_train_detached)

    def submit(self, fn, *args):
        return self._remote.remote(*args).future()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._started:
            self._ray.shutdown()


def _run_detached(todo: list, cfg: TrainConfig, out: Path, done: set, *, workers: int, ray: Optional[str],
                  threads: Optional[int], progress: bool, log) -> list[dict]:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import multiprocessing

    if ray is not None:
        pool = _RayPool(ray, threads)
    else:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    new = []
    with pool:
        futures = {}
        for spec in todo:
            phases = tuple(p for p in spec.phases() if (spec.run_id, p) not in done)
            ckpt = out / "checkpoints" / f"{spec.run_id}-sparse.pt"
            if "sparse" not in phases and not ckpt.exists():
                raise FileNotFoundError(
                    f"{spec.run_id}: the sparse result is recorded but its checkpoint {ckpt} is missing; "
                    "the lottery phase needs the learned mask"
                )
            data = ckpt.read_bytes() if "sparse" not in phases else None
            futures[pool.submit(_train_detached, spec, _run_config(cfg, spec), phases, data, threads)] = spec
        failed = []
        for fut in _tqdm(as_completed(futures), "runs", progress, total=len(futures)):
            spec = futures[fut]
            try:
                records, data = fut.result()
            except Exception as exc:  # keep the other runs' results; report after the last one
                log(f"{spec.run_id} failed: {exc!r}")
                failed.append((spec, exc))
                continue
            if data is not None and any(r["phase"] == "sparse" for r in records):
                (out / "checkpoints").mkdir(exist_ok=True)
                _atomic_write(data, out / "checkpoints" / f"{spec.run_id}-sparse.pt")
            for rec in records:
                append_result(out, rec)
                log(f"{spec.run_id} {rec['phase']}: {rec['metric']} = {rec['value']} "
                    f"(recurrent sparsity {rec['recurrent_sparsity']:.3f})")
            new += records
    if failed:
        spec, exc = failed[0]
        raise RuntimeError(f"{len(failed)} of {len(futures)} runs failed (their results are not recorded; the "
                           f"others are): first {spec.run_id}: {exc!r}") from exc
    return new


def _run_config(cfg: TrainConfig, spec: RunSpec) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(cfg, lam=spec.lam)


def _embeddings(priors) -> dict:
    """``{weight name: (points_out, points_in)}`` of the moduli terms (for pictures)."""
    out = {}
    for name, term in (getattr(priors, "terms", None) or {}).items():
        po, pi = getattr(term, "points_out", None), getattr(term, "points_in", None)
        if isinstance(po, torch.Tensor) and isinstance(pi, torch.Tensor):
            out[name] = (po.detach().cpu().clone(), pi.detach().cpu().clone())
    return out
