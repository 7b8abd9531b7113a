"""The results store of a sweep directory: ``results.jsonl``, checkpoints, the lock, old records.

``DIR/results.jsonl`` holds one JSON line per finished phase, appended with one
``write`` and ``fsync`` and never rewritten; ``DIR/checkpoints/RUN_ID-sparse.pt``
holds a sparse phase's model, written atomically. Records written by older
versions are brought to the current form when read (:func:`migrate_record`),
so old directories resume and tabulate unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from .plan import RunSpec
from .regimes import Regime

__all__ = ["RESULTS_FILE", "read_results", "append_result", "record_phase", "read_curve", "curve_path", "CURVES_DIR", "migrate_record", "migrate_config", "checkpoint_path", "atomic_save",
           "atomic_write", "locked", "LEGACY_INHIBITOR_FIELDS", "CHECKPOINT_VERSION", "CheckpointError", "config_hash",
           "checkpoint_contents", "load_checkpoint", "read_checkpoint", "RecordWriteError", "RECORD_FIELDS",
           "ResultsFileError"]

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


#: The fields every record of ``results.jsonl`` has (and the runner, tables and plots read), with their types.
RECORD_FIELDS: dict[str, tuple] = {
    "run_id": (str,), "task": (str,), "preset": (str,), "regime": (str,), "regime_spec": (dict,),
    "lam": (int, float), "sparsity": (int, float), "seed": (int,), "phase": (str,), "metric": (str,),
    "value": (int, float, type(None)), "recurrent_sparsity": (int, float), "config": (dict,), "timings": (dict,),
}
_KEY_FIELDS = ("run_id", "phase")


class ResultsFileError(ValueError):
    """``results.jsonl`` holds a line that is not a record (the message names the file and the line)."""


def _check_record(record, path: Path, lineno: int, require) -> None:
    if not isinstance(record, dict):
        raise ResultsFileError(f"{path}, line {lineno}: not a moduli record (a JSON {type(record).__name__}, "
                               "not an object); is this a results file?")
    missing = [k for k in require if k not in record]
    if missing:
        raise ResultsFileError(f"{path}, line {lineno}: a record without the fields {missing}; "
                               "fix or delete that line")
    wrong = [k for k in require if k in RECORD_FIELDS and (not isinstance(record[k], RECORD_FIELDS[k])
                                                          or isinstance(record[k], bool))]  # no field is a bool
    if wrong:
        raise ResultsFileError(f"{path}, line {lineno}: a record whose fields {wrong} have the wrong type "
                               f"({', '.join(f'{k}={record[k]!r}' for k in wrong)}); fix or delete that line")


def read_results(out, *, require=_KEY_FIELDS) -> list[dict]:
    """The records of ``out/results.jsonl`` (or of that file given directly), migrated.

    A later record of a (run id, phase) supersedes an earlier one (a phase
    trained again because its checkpoint could not be used): only the last is
    returned, at its own place in the file. A missing file gives ``[]``.

    Parameters
    ----------
    out : path
    require : sequence of str
        Fields every record must have (besides ``run_id`` and ``phase``);
        :data:`RECORD_FIELDS` holds those the runner writes, with their types.

    A line cut short by a crash (a ``{`` and no valid JSON after it, left in
    place: nothing is ever rewritten) is skipped with a warning on stderr.

    Raises
    ------
    ResultsFileError
        If a line is not a record (not JSON, not an object: not a results
        file), or a record lacks a required field: one line naming the file
        and the line.
    OSError
        If the file cannot be read.
    """
    path = Path(out)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.exists():
        return []
    require = list(dict.fromkeys([*_KEY_FIELDS, *require]))
    records: dict[tuple, dict] = {}
    for i, raw in enumerate(path.read_bytes().split(b"\n")):
        if not raw.strip(b" \t\r\x00"):  # blank (a power loss can leave zero bytes)
            continue
        try:
            line = raw.decode("utf-8")
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            if raw.lstrip(b"\x00").startswith(b"{") and raw.isascii():  # a record cut short
                print(f"moduli: skipping the incomplete line {i + 1} of {path}", file=sys.stderr)
                continue
            raise ResultsFileError(f"{path}, line {i + 1}: not a moduli record (not JSON); "
                                   "is this a results file?") from None
        _check_record(record, path, i + 1, require)
        record = migrate_record(record)
        key = (record["run_id"], record["phase"])
        records.pop(key, None)  # the later record takes the place of the earlier
        records[key] = record
    return list(records.values())


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


#: Learning curves of a result directory: ``DIR/curves/RUN_ID-PHASE.jsonl``.
CURVES_DIR = "curves"


def curve_path(out, run_id: str, phase: str) -> Path:
    """``out/curves/RUN_ID-PHASE.jsonl``: the learning curve of one phase (one JSON object per row)."""
    return Path(out) / CURVES_DIR / f"{run_id}-{phase}.jsonl"


def record_phase(out, record: dict) -> dict:
    """Write a finished phase: its learning curve (``record["curve"]``, if any) to :func:`curve_path`, atomically,
    then the record without it to ``results.jsonl``; return the record as written.

    The curve is written first, so a record in ``results.jsonl`` always has
    its whole curve beside it; a phase trained again replaces its curve.
    """
    rec = dict(record)
    rows = rec.pop("curve", None)
    if rows is not None:
        path = curve_path(out, rec["run_id"], rec["phase"])
        path.parent.mkdir(exist_ok=True)
        atomic_write("".join(json.dumps(row) + "\n" for row in rows).encode(), path)
        rec["curve_file"] = str(path.relative_to(out))
    append_result(out, rec)
    return rec


def read_curve(out, run_id: str, phase: str) -> list[dict]:
    """The rows of a phase's learning curve (``[]`` when it has none: a record written before curves).

    Raises
    ------
    ValueError
        If the file holds a line that is not a JSON object (the message names the file and line).
    """
    path = curve_path(out, run_id, phase)
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {i}: not a learning-curve row (a JSON object)")
        rows.append(row)
    return rows


def checkpoint_path(out, run_id: str) -> Path:
    """``out/checkpoints/RUN_ID-sparse.pt``: where a run's sparse phase is checkpointed."""
    return Path(out) / "checkpoints" / f"{run_id}-sparse.pt"


#: The format of the checkpoints :func:`checkpoint_contents` builds. Version 1 (no ``format_version``
#: field) was written before checkpoints carried their provenance; it holds ``run_id`` and ``config``.
CHECKPOINT_VERSION = 2
_CHECKPOINT_FORMAT = "moduli.experiments sparse-phase checkpoint"
_CHECKPOINT_KEYS = ("run_id", "config", "model", "masks", "initial_state", "priors", "embeddings")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, incomplete, or of another run or config (the message names the file)."""


def config_hash(config: dict) -> str:
    """SHA-256 of a run's config dict (``TrainConfig.to_dict()``) as canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def checkpoint_contents(run_id: str, config: dict, *, model, masks, initial_state, priors, embeddings,
                        phase: str = "sparse") -> dict:
    """What a checkpoint holds: the state, and what it belongs to (run id, config and its hash, phase, format)."""
    return {"format": _CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "run_id": run_id, "phase": phase,
            "config": config, "config_sha256": config_hash(config), "model": model, "masks": masks,
            "initial_state": initial_state, "priors": priors, "embeddings": embeddings}


def load_checkpoint(source, *, run_id: str, config, name=None) -> dict:
    """The state of a sparse-phase checkpoint, checked to belong to run ``run_id`` trained with ``config``.

    Parameters
    ----------
    source : path or bytes
        The checkpoint file, or its bytes.
    run_id : str
    config : TrainConfig
        The run's configuration; a config field the checkpoint lacks counts as
        having its default (a field added since it was written).
    name : path or str, optional
        How messages name the checkpoint (default: ``source`` when it is a path).

    Checkpoints written before checkpoints carried their provenance (no
    ``format_version``; their config may hold the fields that moved to the
    regime, :func:`migrate_config`) load when their run id and config match.

    Raises
    ------
    CheckpointError
        One line naming the file: it cannot be read, lacks a field, is of a
        newer format, of another phase, of another run or of another config.
    """
    name = name if name is not None else source
    state = read_checkpoint(source, name=name)
    version = state.get("format_version", 1)
    if version != 1:
        if state.get("phase") != "sparse":
            raise CheckpointError(f"checkpoint {name} is of the {state.get('phase')!r} phase, not the sparse phase")
        if state.get("config_sha256") != config_hash(state["config"]):
            raise CheckpointError(f"checkpoint {name} is damaged: its config does not match its config_sha256")
    if state["run_id"] != run_id:
        raise CheckpointError(f"checkpoint {name} belongs to the run {state['run_id']!r}, not to {run_id!r}")
    current = config.to_dict()
    if state.get("config_sha256") != config_hash(current):
        old = {**type(config)().to_dict(), **migrate_config(state["config"])}
        if old != current:
            diff = sorted(k for k in set(old) | set(current) if old.get(k) != current.get(k))
            raise CheckpointError(f"checkpoint {name} of {run_id} was trained with another config (fields {diff})")
    return state


def read_checkpoint(source, *, name=None) -> dict:
    """A checkpoint's contents, checked to be whole and of a format this moduli reads (not its provenance).

    Raises
    ------
    CheckpointError
        One line naming the file (``name``, default ``source``): it cannot be
        read, is no moduli checkpoint, lacks a field or is of a newer format.
    FileNotFoundError
        If ``source`` is a path that does not exist.
    """
    name = name if name is not None else source
    try:
        # weights_only: tensors, dicts, lists and numbers only, so a stray file cannot run code
        state = torch.load(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source,
                           map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many kinds (RuntimeError, UnpicklingError, EOFError, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"checkpoint {name} cannot be read ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {name} is not a moduli checkpoint (it holds a {type(state).__name__})")
    missing = [k for k in _CHECKPOINT_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {name} is incomplete: it lacks {missing}")
    for key in ("model", "masks", "initial_state", "config"):
        if not isinstance(state[key], dict):
            raise CheckpointError(f"checkpoint {name} is malformed: its {key!r} is a {type(state[key]).__name__}, "
                                  "not a dict")
    version = state.get("format_version", 1)
    if version != 1:
        if state.get("format") != _CHECKPOINT_FORMAT or not isinstance(version, int):
            raise CheckpointError(f"checkpoint {name} is not a moduli checkpoint (format {state.get('format')!r})")
        if version > CHECKPOINT_VERSION:
            raise CheckpointError(f"checkpoint {name} has format version {version}, newer than this moduli's "
                                  f"{CHECKPOINT_VERSION}")
    return state


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file (fsynced, then renamed)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(buf.getvalue(), path)


def atomic_write(data: bytes, path: Path) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, and rename it to ``path``.

    If anything fails, the temporary file is removed, ``path`` is left as it
    was, and an :class:`OSError` names ``path``.
    """
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"could not write {path} ({exc.strerror or exc}); it is unchanged") from exc
        raise


@contextmanager
def locked(out: Path):
    """Hold an exclusive lock on ``out`` so two sweeps never write the same results.

    ``filelock`` (a dependency of torch too) locks ``out/.lock`` with the
    operating system's lock (``fcntl`` on Linux and macOS, ``msvcrt`` on
    Windows), released when the process ends, however it ends.
    """
    import filelock

    path = Path(out) / ".lock"
    try:  # a directory we cannot write is named here (filelock would report it as a lock held elsewhere)
        open(path, "a").close()
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write to the result directory {out} ({exc.strerror or exc})") from exc
    lock = filelock.FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise RuntimeError(f"another moduli run is writing to {out}; wait for it or use another --out") from None
    try:
        yield
    finally:
        lock.release()
