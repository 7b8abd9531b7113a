"""``moduli export``: a finalized model, its prior's embeddings and a summary out of a ``moduli run`` checkpoint.

The checkpoint layout (``DIR/checkpoints/RUN_ID-sparse.pt``, written by
:func:`moduli.experiments.train.run_one` after a run's sparse phase, format
version 2) is a ``torch.save`` dict of tensors, dicts and plain values
(``torch.load(..., weights_only=True)`` reads it):

``format``, ``format_version``
    ``"moduli.experiments sparse-phase checkpoint"``, ``2`` (version 1 files
    have neither key).
``run_id``, ``phase``, ``config``, ``config_sha256``
    The run, ``"sparse"``, its ``TrainConfig.to_dict()`` and the SHA-256 of
    that dict as canonical JSON.
``model``
    The pruned model's ``state_dict``: a pruned weight ``w`` is stored as
    ``w_orig`` and ``w_mask`` (``torch.nn.utils.prune``), the effective
    weight is their product.
``masks``
    ``{weight name: mask}`` of the pruned weights (pruning-free names).
``initial_state``
    The unpruned model's ``state_dict`` before training (lottery rewinding).
``priors``
    The ``state_dict`` of the attached prior set (``None`` without a prior).
``embeddings``
    ``{weight name: (points_out, points_in)}``: the neuron embeddings of the
    moduli prior's terms (empty for ``none`` / ``l1``).

The export file (``--out``) is a ``torch.save`` dict, also readable with
``weights_only=True``: ``format`` (``"moduli export"``), ``format_version``
(1), ``run_id``, ``task``, ``config``, ``config_sha256``, ``model_class``,
``state_dict`` (finalized: plain keys, exact zeros), ``masks``,
``embeddings`` (``{name: {"points_out", "points_in"}}``), ``priors`` and
``summary`` -- the JSON summary written next to it (``--summary``; default
``OUT`` with suffix ``.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .. import targets
from .._commands import command
from .registry import config_from_dict, make_task, task_names
from .results import (CheckpointError, checkpoint_path, config_hash, migrate_config, read_checkpoint,
                      read_results)

__all__ = ["export_run", "read_export", "build_exported", "EXPORT_FORMAT", "EXPORT_VERSION"]

EXPORT_FORMAT = "moduli export"
EXPORT_VERSION = 1


def _task_of(run_dir: Path, run_id: str) -> tuple[Optional[str], Optional[dict]]:
    """The task (and the sparse record) of ``run_id``: from its record, else from the run id's prefix."""
    record = None
    try:
        for rec in read_results(run_dir, require=()):
            if rec.get("run_id") == run_id and rec.get("phase") == "sparse":
                record = rec
    except (ValueError, OSError):
        record = None
    if record is not None and record.get("task"):
        return record["task"], record
    matches = [t for t in task_names() if run_id.startswith(t + "-")]
    return (max(matches, key=len) if matches else None), record


def _summary_of(state: dict, masks: dict) -> dict:
    tensors = {}
    total = nonzero = 0
    for name, value in state.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        n, nz = value.numel(), int(torch.count_nonzero(value))
        total += n
        nonzero += nz
        tensors[name] = {"shape": list(value.shape), "params": n, "nonzero": nz,
                         "sparsity": round(1 - nz / n, 6) if n else 0.0, "pruned": name in masks}
    return {"params": total, "nonzero": nonzero, "sparsity": round(1 - nonzero / total, 6) if total else 0.0,
            "tensors": tensors}


def export_run(run_dir, run_id: str, out, *, summary_path=None) -> dict:
    """Write the finalized model of run ``run_id`` in ``run_dir`` to ``out`` and its JSON summary.

    Parameters
    ----------
    run_dir : path
        A ``moduli run`` result directory (holding ``checkpoints/``).
    run_id : str
    out : path
        The export file (see the module docstring for its contents).
    summary_path : path, optional
        Where the JSON summary goes (default: ``out`` with suffix ``.json``).

    Returns
    -------
    dict
        The summary: run, task, model class, parameter and nonzero counts per
        tensor and in all, the prior's embeddings' shapes, and whether the
        finalized state loads into a fresh model of the run's task.

    Raises
    ------
    FileNotFoundError
        If the run has no checkpoint.
    CheckpointError
        If the checkpoint cannot be read or its config does not match its hash.
    """
    run_dir, out = Path(run_dir), Path(out)
    path = checkpoint_path(run_dir, run_id)
    if not path.exists():
        have = sorted(p.name[: -len("-sparse.pt")] for p in (run_dir / "checkpoints").glob("*-sparse.pt"))
        raise FileNotFoundError(f"no checkpoint {path} (runs with checkpoints: {', '.join(have) or 'none'})")
    ckpt = read_checkpoint(path)
    if ckpt["run_id"] != run_id:
        raise CheckpointError(f"checkpoint {path} belongs to the run {ckpt['run_id']!r}, not to {run_id!r}")
    if ckpt.get("format_version", 1) != 1 and ckpt.get("config_sha256") != config_hash(ckpt["config"]):
        raise CheckpointError(f"checkpoint {path} is damaged: its config does not match its config_sha256")
    state = targets.plain_state(ckpt["model"])
    masks = {k: v.clone() for k, v in ckpt["masks"].items()}
    task, record = _task_of(run_dir, run_id)
    model_class, loads = None, None
    if task is not None:
        cfg = config_from_dict(task, {k: v for k, v in migrate_config(ckpt["config"]).items()
                                      if k in {f.name for f in dataclasses.fields(_config_type(task))}})
        model = make_task(task, cfg, int(record["seed"]) if record else 0).build_model()
        model.load_state_dict(state)  # strict: the finalized state has exactly the keys of a fresh model
        model_class, loads = f"{type(model).__module__}.{type(model).__qualname__}", True
    embeddings = {name: {"points_out": po.clone(), "points_in": pi.clone()}
                  for name, (po, pi) in (ckpt.get("embeddings") or {}).items()}
    summary = {"run_id": run_id, "task": task, "model_class": model_class, "loads_into_fresh_model": loads,
               "checkpoint": str(path), "checkpoint_format_version": ckpt.get("format_version", 1),
               "config_sha256": config_hash(ckpt["config"]),
               "regime": record.get("regime") if record else None,
               "metric": record.get("metric") if record else None, "value": record.get("value") if record else None,
               "pruned": sorted(masks), **_summary_of(state, masks),
               "embeddings": {n: {k: list(v.shape) for k, v in e.items()} for n, e in embeddings.items()}}
    payload = {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, "run_id": run_id, "task": task,
               "config": ckpt["config"], "config_sha256": summary["config_sha256"], "model_class": model_class,
               "state_dict": state, "masks": masks, "embeddings": embeddings, "priors": ckpt.get("priors"),
               "summary": summary}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, out)
    summary_path = Path(summary_path) if summary_path is not None else out.with_suffix(".json")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _config_type(task: str):
    from .registry import TASKS

    return TASKS[task].config_type


def read_export(path) -> dict:
    """The contents of a file written by :func:`export_run` (``weights_only`` load).

    Raises
    ------
    ValueError
        If the file is no moduli export, or of a newer format.
    """
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path} is not a moduli export file")
    if data.get("format_version", 0) > EXPORT_VERSION:
        raise ValueError(f"{path} has export format {data['format_version']}, newer than {EXPORT_VERSION}")
    return data


def build_exported(path, seed: int = 0) -> nn.Module:
    """A fresh model of the exported run's task with the finalized weights loaded."""
    data = read_export(path)
    if data["task"] is None:
        raise ValueError(f"{path} does not name its task; load its state_dict into your model yourself")
    cfg = config_from_dict(data["task"], {k: v for k, v in migrate_config(data["config"]).items()
                                          if k in {f.name for f in dataclasses.fields(_config_type(data["task"]))}})
    model = make_task(data["task"], cfg, seed).build_model()
    model.load_state_dict(data["state_dict"])
    return model


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="a moduli run result directory (holding checkpoints/)")
    p.add_argument("--run", required=True, metavar="RUN_ID", help="the run id (see DIR/checkpoints/RUN_ID-sparse.pt)")
    p.add_argument("--out", type=Path, required=True, help="the export file to write (e.g. model.pt)")
    p.add_argument("--summary", type=Path, default=None, help="the JSON summary (default: OUT with suffix .json)")


@command("export")(
    _export_args)
def run(args: argparse.Namespace) -> int:
    try:
        s = export_run(args.dir, args.run, args.out, summary_path=args.summary)
    except (FileNotFoundError, CheckpointError, ValueError, RuntimeError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"moduli export: {first}", file=sys.stderr)
        return 1
    pruned = ", ".join(f"{n} {s['tensors'][n]['nonzero']}/{s['tensors'][n]['params']}" for n in s["pruned"])
    print(f"{args.out}: {s['model_class'] or 'state_dict'}, {s['nonzero']} of {s['params']} parameters nonzero "
          f"(sparsity {s['sparsity']:.4f}); pruned: {pruned or 'none'}")
    print(f"summary: {args.summary or args.out.with_suffix('.json')}")
    return 0
