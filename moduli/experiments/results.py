"""The results store of a sweep directory: ``results.jsonl``, checkpoints, the lock, old records.

``DIR/results.jsonl`` holds one JSON line per finished phase, appended with one
``write`` and ``fsync`` and never rewritten; ``DIR/checkpoints/RUN_ID-sparse.pt``
holds a sparse phase's model, written atomically. Records written by older
versions are brought to the current form when read (:func:`migrate_record`),
so old directories resume and tabulate unchanged.
"""

from __future__ import annotations

import io
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from .plan import RunSpec
from .regimes import Regime

__all__ = ["RESULTS_FILE", "read_results", "append_result", "migrate_record", "migrate_config", "checkpoint_path", "atomic_save",
           "atomic_write", "locked", "LEGACY_INHIBITOR_FIELDS"]

RESULTS_FILE = "results.jsonl"

#: Record migration: the training-config fields that held inhibitor constants before they moved
#: to the regime, per inhibitor: ``{inhibitor: {old config field: inhibitor argument}}``.
#: ``inhibitor`` (the default inhibitor of manifold regimes) was a config field too; the
#: regime has always recorded its own.
LEGACY_INHIBITOR_FIELDS: dict[str, dict[str, str]] = {
    "dog": {"inhibitor_c": "c", "sigma1": "sigma1", "sigma2": "sigma2"},
    "diffusion": {"inhibitor_c": "c", "power": "power"},
    "sinusoid": {"inhibitor_c": "c", "mu": "mu"},
}
_LEGACY_CONFIG_FIELDS = ("inhibitor", "inhibitor_c", "sigma1", "sigma2", "power", "mu")


def migrate_config(config: dict) -> dict:
    """A recorded config (a record's or a checkpoint's ``config``) without the fields that moved to the regime."""
    return {k: v for k, v in config.items() if k not in _LEGACY_CONFIG_FIELDS}


def migrate_record(record: dict) -> dict:
    """A record in the current form (a new dict; ``record`` is not changed).

    Records written before inhibitor constants moved from the training config
    to the regime have the config fields ``inhibitor``, ``inhibitor_c``,
    ``sigma1``, ``sigma2``, ``power``, ``mu`` and a ``regime_spec`` without
    ``inhibitor_args``. The fields are dropped from ``config``; those of the
    regime's inhibitor (:data:`LEGACY_INHIBITOR_FIELDS`) become its
    ``inhibitor_args``. At the old defaults (every record in ``docs/results/``)
    the regime, its label and the run id stay as they were; a record of other
    constants gets the label and run id that spell them out (its checkpoint
    keeps the old run id's file name).
    """
    config = record.get("config")
    if not isinstance(config, dict) or not any(k in config for k in _LEGACY_CONFIG_FIELDS):
        return record
    out = dict(record)
    out["config"] = migrate_config(config)
    spec = record.get("regime_spec")
    if isinstance(spec, dict) and "inhibitor_args" not in spec:
        fields = LEGACY_INHIBITOR_FIELDS.get(spec.get("inhibitor"), {})
        args = {arg: config[old] for old, arg in fields.items() if old in config}
        regime = Regime.from_dict({**spec, "inhibitor_args": args})
        out["regime_spec"] = regime.to_dict()
        if regime.label != record.get("regime"):
            out["regime"] = regime.label
            out["run_id"] = RunSpec(record["task"], record["preset"], regime, record["lam"], record["sparsity"],
                                    record["seed"]).run_id
    return out


def read_results(out) -> list[dict]:
    """The records of ``out/results.jsonl`` (or of that file given directly), migrated.

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
            records.append(migrate_record(json.loads(line)))
        except json.JSONDecodeError:
            print(f"moduli: skipping the incomplete line {i + 1} of {path}", file=sys.stderr)
    return records


class RecordWriteError(OSError):
    """A record could not be written whole (the file was truncated back to its previous size)."""


def append_result(out, record: dict) -> None:
    """Append one JSON line, written whole and fsynced, or not at all.

    ``os.write`` may write fewer bytes than asked (a full disk); the rest is
    written in a loop. If writing or syncing fails, the file is truncated back
    to its size before the call and :class:`RecordWriteError` names the path:
    a record is either on disk whole or reported as lost.
    """
    path = Path(out) / RESULTS_FILE
    line = json.dumps(record, sort_keys=True, allow_nan=False)
    prefix = ""
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                prefix = "\n"
    data = memoryview((prefix + line + "\n").encode())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            while data:
                written = os.write(fd, data)
                if written == 0:
                    raise OSError(f"no progress writing {path}")
                data = data[written:]
            os.fsync(fd)
        except OSError as exc:
            os.ftruncate(fd, size)
            raise RecordWriteError(f"could not write the record of {record.get('run_id')} ({record.get('phase')}) "
                                   f"to {path}: {exc}; the file is unchanged") from exc
    finally:
        os.close(fd)


def checkpoint_path(out, run_id: str) -> Path:
    """``out/checkpoints/RUN_ID-sparse.pt``: where a run's sparse phase is checkpointed."""
    return Path(out) / "checkpoints" / f"{run_id}-sparse.pt"


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file (fsynced, then renamed)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(buf.getvalue(), path)


def atomic_write(data: bytes, path: Path) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, and rename it to ``path``."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextmanager
def locked(out: Path):
    """Hold an exclusive lock on ``out`` so two sweeps never write the same results."""
    import fcntl

    fh = open(Path(out) / ".lock", "a")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another moduli run is writing to {out}; wait for it or use another --out") from None
        yield
    finally:
        fh.close()
