"""Where runs train when a sweep trains several at once: local worker processes or Ray tasks.

Each run trains in a scratch directory of its worker (:func:`train_detached`)
and sends back its records and its sparse-phase checkpoint; only the calling
process writes the result directory.

Local workers die with the calling process: each watches its parent
(:func:`_watch_parent`) and exits when it is gone (killed, even by SIGKILL),
and on an interrupt (SIGINT, SIGTERM) or an error the calling process cancels
the runs not started and terminates the workers before it exits.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Optional

import torch

from .config import TrainConfig
from .plan import RunSpec, run_config
from .results import CheckpointError, append_result, atomic_write, checkpoint_path, load_checkpoint
from .train import progress_bar, run_one

__all__ = ["train_detached", "RayPool", "run_detached"]

#: Seconds between a worker's checks that its parent is alive.
PARENT_POLL_S = 0.25


def _watch_parent(parent_pid: int, poll_s: float = PARENT_POLL_S) -> None:
    """Worker initializer: leave SIGINT to the parent, and exit when the parent is gone.

    A daemon thread compares ``os.getppid()`` with ``parent_pid`` every
    ``poll_s`` seconds: when the parent dies the worker is re-parented (to
    init or a subreaper), on Linux and macOS alike, and the thread ends the
    worker with ``os._exit`` (the run in progress is lost, as it is in the parent).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="moduli-watch-parent", daemon=True).start()


def _terminate(pool) -> None:
    """Cancel the runs not started and end the workers of ``pool`` now (not after their runs)."""
    if isinstance(pool, RayPool):
        pool.cancel()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.join(5)
        if proc.is_alive():
            proc.kill()


@contextmanager
def _sigterm_raises():
    """SIGTERM raises ``SystemExit(143)`` in this (main) thread while inside, so the workers can be ended."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def train_detached(spec: RunSpec, cfg: TrainConfig, todo: tuple, checkpoint: Optional[bytes],
                   threads: Optional[int]) -> tuple[list[dict], Optional[bytes]]:
    """Worker side: train the phases ``todo`` of ``spec`` in a scratch directory.

    Returns the records and the bytes of the sparse-phase checkpoint (``None``
    when the run has none, i.e. at sparsity 0).
    """
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="moduli-run-") as tmp:
        ckpt = checkpoint_path(tmp, spec.run_id)
        if checkpoint is not None:
            ckpt.parent.mkdir()
            ckpt.write_bytes(checkpoint)
        done = {(spec.run_id, p) for p in spec.phases() if p not in todo}
        records = run_one(spec, cfg, Path(tmp), done=done, progress=False, log=lambda *a: None)
        return records, ckpt.read_bytes() if ckpt.exists() else None


class RayPool:
    """The two methods of an executor the runner uses (``submit``, context manager), on Ray tasks.

    Parameters
    ----------
    address : str
        ``"local"`` starts Ray on this machine; anything else goes to ``ray.init(address=...)``.
    threads : int, optional
        CPUs requested per run.
    """

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
        self._remote = ray.remote(num_cpus=threads or 1)(train_detached)
        self._refs = []

    def submit(self, fn, *args):
        ref = self._remote.remote(*args)
        self._refs.append(ref)
        return ref.future()

    def cancel(self) -> None:
        """Cancel every task submitted (running ones are killed)."""
        for ref in self._refs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._started:
            self._ray.shutdown()


def run_detached(todo: list, cfg: TrainConfig, out: Path, done: set, *, workers: int, ray: Optional[str],
                 threads: Optional[int], progress: bool, log) -> list[dict]:
    """Train the runs ``todo`` in ``workers`` processes (or on Ray) and record their results in ``out``.

    Raises
    ------
    FileNotFoundError
        If a run's lottery phase is left and its sparse checkpoint is missing.
    RuntimeError
        After the last run, if any run failed (the others' results are recorded).

    On KeyboardInterrupt (SIGINT), SIGTERM (raised as ``SystemExit(143)``) or
    any error, the runs not started are cancelled and the workers terminated
    before the exception goes on; the results recorded so far stay.
    """
    if ray is not None:
        pool = RayPool(ray, threads)
    else:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_watch_parent, initargs=(os.getpid(),))
    new = []
    with _sigterm_raises(), pool:
        try:
            futures = {}
            for spec in todo:
                phases = tuple(p for p in spec.phases() if (spec.run_id, p) not in done)
                ckpt = checkpoint_path(out, spec.run_id)
                if "sparse" not in phases and not ckpt.exists():
                    raise FileNotFoundError(
                        f"{spec.run_id}: the sparse result is recorded but its checkpoint {ckpt} is missing; "
                        "the lottery phase needs the learned mask"
                    )
                data = None
                if "sparse" not in phases:
                    data = ckpt.read_bytes()
                    try:  # the check run_one makes, here, so that the message names this file
                        load_checkpoint(data, run_id=spec.run_id, config=run_config(cfg, spec), name=ckpt)
                    except CheckpointError as exc:
                        log(f"{exc}: training {spec.run_id} again from its sparse phase (the new sparse record "
                            "supersedes the old one, the new checkpoint replaces the file)")
                        phases, data = spec.phases(), None
                futures[pool.submit(train_detached, spec, run_config(cfg, spec), phases, data, threads)] = (spec, phases)
            failed = []
            for fut in progress_bar(as_completed(futures), "runs", progress, total=len(futures)):
                spec, phases = futures[fut]
                try:
                    records, data = fut.result()
                except Exception as exc:  # keep the other runs' results; report after the last one
                    log(f"{spec.run_id} failed: {exc!r}")
                    failed.append((spec, exc))
                    continue
                if "sparse" not in phases and any(r["phase"] == "sparse" for r in records):
                    log(f"checkpoint {checkpoint_path(out, spec.run_id)} did not fit the model of {spec.run_id} in its "
                        "worker: it was trained again from its sparse phase")
                if data is not None and any(r["phase"] == "sparse" for r in records):
                    ckpt = checkpoint_path(out, spec.run_id)
                    ckpt.parent.mkdir(exist_ok=True)
                    atomic_write(data, ckpt)
                for rec in records:
                    append_result(out, rec)
                    log(f"{spec.run_id} {rec['phase']}: {rec['metric']} = {rec['value']} "
                        f"(recurrent sparsity {rec['recurrent_sparsity']:.3f})")
                new += records
        except BaseException:  # an interrupt, SIGTERM or an error: do not wait for the runs in progress
            _terminate(pool)
            raise
    if failed:
        spec, exc = failed[0]
        raise RuntimeError(f"{len(failed)} of {len(futures)} runs failed (their results are not recorded; the "
                           f"others are): first {spec.run_id}: {exc!r}") from exc
    return new
