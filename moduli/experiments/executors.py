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
from .devices import parse_device, worker_devices
from .plan import RunSpec, run_config
from .results import CheckpointError, atomic_write, checkpoint_path, load_checkpoint, read_curve, record_phase
from .train import progress_bar, run_one

__all__ = ["train_detached", "RayPool", "run_detached"]

#: Seconds between a worker's checks that its parent is alive.
PARENT_POLL_S = 0.25

#: The device of this worker process (set by :func:`_init_worker`; None outside a worker).
_WORKER_DEVICE: Optional[str] = None


def _init_worker(parent_pid: int, devices) -> None:
    """Worker initializer: watch the parent (:func:`_watch_parent`) and take this worker's device from ``devices``.

    ``devices`` is a queue holding one device per worker
    (:func:`~moduli.experiments.devices.worker_devices`): with ``cuda`` and
    several GPUs each worker takes a different one.
    """
    global _WORKER_DEVICE
    _watch_parent(parent_pid)
    _WORKER_DEVICE = devices.get()


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
                   threads: Optional[int], device: Optional[str] = None) -> tuple[list[dict], Optional[bytes]]:
    """Worker side: train the phases ``todo`` of ``spec`` in a scratch directory, on ``device``.

    ``device`` None means this worker's device (local workers), else the CPU.
    Returns the records and the bytes of the sparse-phase checkpoint (``None``
    when the run has none, i.e. at sparsity 0).
    """
    device = device or _WORKER_DEVICE or "cpu"
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="moduli-run-") as tmp:
        ckpt = checkpoint_path(tmp, spec.run_id)
        if checkpoint is not None:
            ckpt.parent.mkdir()
            ckpt.write_bytes(checkpoint)
        done = {(spec.run_id, p) for p in spec.phases() if p not in todo}
        records = run_one(spec, cfg, Path(tmp), done=done, progress=False, log=lambda *a: None, device=device)
        for rec in records:  # the curve goes back with its record; the caller writes both (record_phase)
            rec.pop("curve_file", None)
            rec["curve"] = read_curve(tmp, rec["run_id"], rec["phase"])
        return records, ckpt.read_bytes() if ckpt.exists() else None


class RayPool:
    """The two methods of an executor the runner uses (``submit``, context manager), on Ray tasks.

    Parameters
    ----------
    address : str
        ``"local"`` starts Ray on this machine; anything else goes to ``ray.init(address=...)``.
    threads : int, optional
        CPUs requested per run.
    device : str
        ``cpu``, ``cuda`` (or ``cuda:N``, which means a GPU of the cluster
        too) or ``auto`` (``cuda`` when the cluster has GPUs).
    gpus_per_run : float
        GPUs requested per run on ``cuda`` (a fraction such as 0.5 lets two
        runs share a GPU). Ray sets each task's ``CUDA_VISIBLE_DEVICES`` to
        its GPU, so the run trains on ``cuda:0`` of the task, the GPU it was given.

    Attributes
    ----------
    device : str
        The device every task trains on (``cpu`` or ``cuda``).
    """

    def __init__(self, address: str, threads: Optional[int], device: str = "cpu", gpus_per_run: float = 1.0):
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
        device = parse_device(device)
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if device == "auto":
            device = "cuda" if gpus > 0 else "cpu"
        if device.startswith("cuda"):
            if gpus <= 0:
                self.__exit__()
                raise ValueError(f"device {device!r} with Ray: the Ray cluster has no GPU (its resources: "
                                 f"{ray.cluster_resources()})")
            if not 0 < gpus_per_run <= gpus:
                self.__exit__()
                raise ValueError(f"gpus_per_run must be in (0, {gpus:g}] (the cluster's GPUs), got {gpus_per_run!r}")
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        self._remote = ray.remote(num_cpus=threads or 1,
                                  num_gpus=gpus_per_run if self.device == "cuda" else 0)(train_detached)
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
                 threads: Optional[int], progress: bool, log, device="cpu", gpus_per_run: float = 1.0) -> list[dict]:
    """Train the runs ``todo`` in ``workers`` processes (or on Ray) and record their results in ``out``.

    Local workers take their devices round-robin from
    :func:`~moduli.experiments.devices.worker_devices`; a Ray task on a CUDA
    device asks Ray for ``gpus_per_run`` GPUs and trains on the one it is given.

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
        pool = RayPool(ray, threads, device, gpus_per_run)
        run_device = pool.device  # inside a task, its GPU is cuda:0
    else:
        context = multiprocessing.get_context("spawn")
        devices = context.Queue()
        for d in worker_devices(device, workers):
            devices.put(d)
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                   initargs=(os.getpid(), devices))
        run_device = None  # each worker's own
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
                futures[pool.submit(train_detached, spec, run_config(cfg, spec), phases, data, threads,
                                    run_device)] = (spec, phases)
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
                    rec = record_phase(out, rec)
                    new.append(rec)
                    log(f"{spec.run_id} {rec['phase']}: {rec['metric']} = {rec['value']} "
                        f"(recurrent sparsity {rec['recurrent_sparsity']:.3f})")
        except BaseException:  # an interrupt, SIGTERM or an error: do not wait for the runs in progress
            _terminate(pool)
            raise
    if failed:
        spec, exc = failed[0]
        raise RuntimeError(f"{len(failed)} of {len(futures)} runs failed (their results are not recorded; the "
                           f"others are): first {spec.run_id}: {exc!r}") from exc
    return new
