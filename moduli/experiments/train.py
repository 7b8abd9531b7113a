"""One run's training: build the seeded model and prior, train the sparse and lottery phases, record them.

One *run* trains a model with gradual magnitude pruning to its sparsity (the
``sparse`` phase) and, for a sparsity above zero, retrains fresh weights on the
learned mask with the same prior and frozen embeddings (the ``lottery``
phase). After a sparse phase the model, its masks and the prior are
checkpointed, so the lottery phase can run later from the checkpoint.
Models are read only through :mod:`moduli.targets`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import datetime as _dt
import math
import platform
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .. import __version__, pruning, targets
from .. import regularizers as rg
from .config import TrainConfig
from .devices import device_record, move_to, resolve_device
from .plan import RunSpec
from .regimes import build_prior
from .registry import make_task
from .results import CheckpointError, atomic_save, checkpoint_contents, checkpoint_path, load_checkpoint, record_phase
from .tasks import Task

__all__ = ["run_one", "initial_embeddings", "progress_bar", "check_options", "check_lottery_prior",
           "check_sparsifier", "check_swaps"]

_CPU = torch.device("cpu")

# Offsets that keep the random streams of one seed apart.
_TRAIN_STREAM, _LOTTERY_STREAM, _INIT_STREAM, _EMBED_STREAM, _LOTTERY_EMBED_STREAM = 11, 13, 17, 19, 23


@functools.lru_cache(maxsize=1)
def git_commit() -> Optional[str]:
    """The commit of the ``moduli`` checkout this process imported (None outside a git checkout, or without git)."""
    import subprocess

    try:
        done = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    text = done.stdout.strip()
    return text if done.returncode == 0 and len(text) == 40 else None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class _BarStream:
    """stderr for progress bars: if its reader went away (``2>&1 | head``), the bars go quiet and training goes on."""

    def __init__(self, stream):
        self._stream, self._closed = stream, False

    def write(self, text):
        if not self._closed:
            try:
                return self._stream.write(text)
            except (BrokenPipeError, ValueError):  # a closed pipe, or a closed file
                self._closed = True
        return len(text)

    def flush(self):
        if not self._closed:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._closed = True

    def __getattr__(self, name):
        return getattr(self._stream, name)


def progress_bar(iterable, desc: str, progress: bool, total=None):
    """``iterable`` wrapped in a tqdm bar on stderr when ``progress``, else unchanged.

    A closed stderr silences the bar instead of stopping the loop.
    """
    if not progress:
        return iterable
    import sys

    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, mininterval=1.0,
                file=_BarStream(sys.stderr))


def _targets(task: Task, model: nn.Module, which: str) -> list[str]:
    """The task's recurrent weights (``"recurrent"``) or every weight matrix of the model (``"all"``)."""
    return list(task.recurrent) if which == "recurrent" else targets.weight_names(model)


def _sparsity(model: nn.Module, names) -> float:
    """Zero fraction of the effective weights ``names`` (0 when there are none)."""
    names = list(names)
    return targets.sparsity(model, names=names) if names else 0.0


def _counts(model: nn.Module, prune_names) -> dict:
    """``params`` and ``nonzero_params`` of the model (effective weights, biases included, each shared
    parameter once) and ``tensor_nonzeros``, the nonzero entries of each pruned weight."""
    total = nonzero = 0
    for entry in targets.weight_entries(model):
        w = targets.effective_weight(entry.module, entry.attr)
        total += w.numel()
        nonzero += int(torch.count_nonzero(w))
    per = {n: int(torch.count_nonzero(targets.effective_weight(*targets.resolve(model, n)))) for n in prune_names}
    return {"params": total, "nonzero_params": nonzero, "tensor_nonzeros": per}


def _pruner(model, names, cfg, sparsity, priors=None, lam=None):
    """The sparse phase's sparsifier: gradual magnitude pruning, or the proximal sparsifier (``cfg.sparsifier``)."""
    if getattr(cfg, "sparsifier", "magnitude") == "prox":
        return pruning.ProximalSparsifier(model, priors, sparsity, epochs=cfg.epochs, steps=cfg.steps, lam=lam,
                                          scope=cfg.prune_scope)
    return pruning.GradualMagnitudePruning(model, target_sparsity=sparsity, epochs=cfg.epochs, scope=cfg.prune_scope,
                                           targets=list(names))


#: Steps between the training loop's reads of the device (the finiteness check and the progress bar).
CHECK_EVERY = 50


def _check_every(device: torch.device) -> int:
    """Steps between the loop's finiteness checks: every step on the CPU (a read costs nothing there)."""
    return 1 if device.type == "cpu" else CHECK_EVERY


def _autocast(device: torch.device, amp: str):
    """The autocast context of ``amp`` on ``device`` (a no-op context for ``"off"``)."""
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _train_phase(task: Task, model, cfg: TrainConfig, *, lam, priors, pruner, generator, desc, progress,
                 curve: Optional[list] = None, swap_every: int = 0, swaps: Optional[dict] = None):
    """Train one phase; return the losses (a float64 CPU tensor, one per step taken) and whether it diverged.

    ``curve``, when given, receives the learning curve's rows: every
    :data:`CHECK_EVERY` steps (and after the last) the mean loss since the
    previous row, ``lam`` times the penalty, the pruned sparsity and the wall
    time since the phase began; at the start of every pruning epoch after the
    first, the task metric too (the caller adds the final evaluation to the
    last row). Those evaluations are part of the phase's ``train_s``. Under
    a proximal sparsifier (``pruner.after_step``) the prior acts through its
    soft threshold after every step instead of a gradient, and each row holds
    the threshold's factor (``prox_lam``). With ``swap_every`` > 0, every
    ``swap_every`` steps neurons' embedding points are exchanged where that
    lowers the prior's cost (:func:`moduli.regularizers.swap_neurons_`);
    ``swaps`` then receives the number applied and the cost they removed, and
    each curve row the swaps so far.

    On the CPU every step's loss is checked before its backward pass, and a
    phase stops at its first non-finite loss. On an accelerator the loop does
    not wait for the device at every step: losses stay on the device and are
    read every :data:`CHECK_EVERY` steps (and before every pruning step, so
    no mask is ranked from diverged weights), so a diverged phase may take up
    to ``CHECK_EVERY - 1`` more steps before it stops; its value is not
    evaluated either way. The prior's finiteness check runs at the same steps.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    embedding = [p for p in priors.parameters() if p.requires_grad] if priors is not None else []
    if embedding and cfg.embed_lr > 0:  # trained embeddings at their own learning rate
        opt = task.optimizer([{"params": params}, {"params": embedding, "lr": cfg.embed_lr}])
    else:
        opt = task.optimizer(params + embedding)
    params += embedding
    device = next(model.parameters()).device
    check_every = _check_every(device)
    amp = getattr(cfg, "amp", "off")
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    epoch_starts = {round(k * cfg.steps / cfg.epochs): k for k in range(cfg.epochs)}
    losses = torch.zeros(cfg.steps, device=device)
    checked = 0  # losses[:checked] are known to be finite

    def finite_so_far(upto: int) -> bool:
        nonlocal checked
        ok = upto == checked or bool(torch.isfinite(losses[checked:upto]).all())
        checked = upto
        return ok

    diverged, taken = False, 0
    started, penalty, last_row = time.perf_counter(), None, 0
    prox = getattr(pruner, "after_step", None)  # the proximal sparsifier: the prior is its threshold

    def add_row(upto: int, evaluate: bool) -> None:
        """The curve's row at step ``upto`` (the metric added to it if the row exists already)."""
        nonlocal last_row
        if curve is None or upto == 0:
            return
        if upto != last_row:
            curve.append({"step": upto, "loss": float(losses[last_row:upto].double().mean()),
                          "penalty": None if penalty is None else lam * float(penalty),
                          "pruned_sparsity": _sparsity(model, pruner.names) if pruner is not None else None,
                          "time_s": round(time.perf_counter() - started, 3)})
            if prox is not None:
                curve[-1]["prox_lam"] = pruner.lam
            if swap_every:
                curve[-1]["swaps"] = swaps["swaps"]
            last_row = upto
        if evaluate and task.metric not in curve[-1]:
            curve[-1][task.metric] = float(task.evaluate(model))

    bar = progress_bar(range(cfg.steps), desc, progress)
    try:
        for step in bar:
            if step in epoch_starts:
                if not finite_so_far(step):
                    diverged = True
                    break
                add_row(step, evaluate=True)
                task.begin_epoch(model, opt, epoch_starts[step])
                if pruner is not None:
                    pruner.step()
            with _autocast(device, amp):
                loss = task.loss(model, task.sample(generator))
            losses[step] = loss.detach()
            taken = step + 1
            check = taken % check_every == 0
            if check and not finite_so_far(taken):
                diverged = True
                break
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)  # the fused prior gradient is added in true units
            else:
                loss.backward()
            if priors is not None and lam > 0 and prox is None:
                # the fused gradient of lam * penalty (same update as adding it to the loss); its value
                # comes back (and is checked) at the check steps
                priors.check_finite = check or (curve is not None and taken % CHECK_EVERY == 0)
                value = priors.add_penalty_grad_(lam)
                penalty = value if value is not None else penalty
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            if swap_every and taken % swap_every == 0:
                done = rg.swap_neurons_(priors, optimizer=opt)
                swaps["swaps"] += done.swaps
                swaps["swap_gain"] += lam * done.gain
            if prox is not None:
                prox(opt)
                if check or taken % CHECK_EVERY == 0:
                    with torch.no_grad():
                        penalty = priors.penalty()  # raises on a non-finite value, naming the weight
            if taken % CHECK_EVERY == 0:
                add_row(taken, evaluate=False)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{float(losses[step]):.4f}")
        if not diverged and not finite_so_far(taken):
            diverged = True
        if not diverged:
            add_row(taken, evaluate=False)  # its metric is the phase's evaluation (_train_and_record)
    finally:
        if priors is not None:
            priors.check_finite = True
    losses = losses[:taken].double().cpu()
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):  # the losses before the first non-finite one, as recorded when the loop stopped there
        losses = losses[: int(bad[0])]
    return losses, diverged


def _train_and_record(phase, spec, task, model, cfg, priors, pruner, stream, prune_names, progress,
                      started, t0) -> dict:
    """Train one phase (seeded from ``stream``), evaluate unless it diverged, and
    build its record; ``started``/``t0`` mark when the phase's preparation began."""
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(stream * 1_000_000 + spec.seed)
    curve: list = []
    swap_every = getattr(cfg, "swap_every", 0) if phase == "sparse" and priors is not None else 0
    swaps = {"swaps": 0, "swap_gain": 0.0}
    losses, diverged = _train_phase(task, model, cfg, lam=spec.lam, priors=priors, pruner=pruner,
                                    generator=gen, desc=f"{spec.run_id} {phase}", progress=progress, curve=curve,
                                    swap_every=swap_every, swaps=swaps)
    train_s, t1 = time.perf_counter() - t0, time.perf_counter()
    value = task.evaluate(model) if not diverged else None
    if value is not None and curve:
        curve[-1][task.metric] = float(value)
    rec = _record(spec, phase, task, model, cfg, value, diverged=diverged, losses=losses,
                  prune_names=prune_names, train_s=train_s, eval_s=time.perf_counter() - t1, started=started)
    rec["curve"] = curve
    if getattr(pruner, "after_step", None) is not None:
        rec["prox_sparsity"] = pruner.reached  # the exact zeros the thresholds made before the mask was fixed
        rec["prox_lam"] = pruner.lam
    if swap_every:
        rec.update(swaps)  # swaps applied, and lam times the prior's cost they removed when applied
        with torch.no_grad():
            rec["lam_penalty"] = spec.lam * float(priors.penalty())
    return rec


def _record(spec: RunSpec, phase: str, task: Task, model, cfg, value, *, diverged, losses, prune_names,
            train_s, eval_s, started) -> dict:
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
        "final_train_loss": float(losses[-20:].sum() / len(losses[-20:])) if len(losses) else None,
        "recurrent_sparsity": _sparsity(model, task.recurrent),
        "pruned_sparsity": _sparsity(model, prune_names),
        "model_sparsity": _sparsity(model, targets.weight_names(model)),
        "pruned_weights": list(prune_names),
        "tensor_sparsity": {n: _sparsity(model, [n]) for n in prune_names},
        **_counts(model, prune_names),
        "config": cfg.to_dict(),
        "version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        **device_record(next(model.parameters()).device),
        "timings": {"train_s": round(train_s, 3), "eval_s": round(eval_s, 3)},
        "started_utc": started,
        "finished_utc": _now(),
    }


def check_lottery_prior(regime, cfg: TrainConfig) -> None:
    """Refuse ``lottery_prior="redraw"`` with a trained embedding (the lottery phase freezes what was learned).

    Raises
    ------
    ValueError
        Naming the regime and the option.
    """
    if cfg.lottery_prior == "redraw" and regime.trained:
        raise ValueError(f"lottery_prior='redraw' (--lottery-prior redraw) needs fixed embeddings; regime "
                         f"{regime.label!r} trains its embedding, whose learned points the lottery phase keeps")


def check_options(regime, cfg: TrainConfig) -> None:
    """Refuse a regime with options that have no meaning for it (:func:`check_lottery_prior`,
    :func:`check_sparsifier`, :func:`check_swaps`); called before any run is trained.

    Raises
    ------
    ValueError
        Naming the regime and the option.
    """
    check_lottery_prior(regime, cfg)
    check_sparsifier(regime, cfg)
    check_swaps(regime, cfg)


def check_swaps(regime, cfg: TrainConfig) -> None:
    """Refuse ``swap_every`` for a regime whose coefficients are not a function of the embedding.

    Neuron swaps exchange embedding points where that lowers the prior's cost
    (:func:`moduli.regularizers.swap_neurons_`): they need a moduli prior
    (not ``none``, ``l1`` or ``shuffled``).

    Raises
    ------
    ValueError
        Naming the regime and the option.
    """
    if getattr(cfg, "swap_every", 0) and regime.kind != "moduli":
        raise ValueError(f"swap_every (--swap-every) exchanges neurons' embedding points; regime {regime.label!r} "
                         "has no coefficients that follow an embedding (use a manifold regime such as 'torus')")


def check_sparsifier(regime, cfg: TrainConfig) -> None:
    """Refuse ``sparsifier="prox"`` where it has no meaning.

    The proximal sparsifier is the soft threshold of the regime's prior on the
    pruned weights, so it needs a prior (not ``none``) with fixed embeddings,
    on exactly the weights that are pruned, and a positive ``lam`` to start
    from.

    Raises
    ------
    ValueError
        Naming the regime or the option.
    """
    if getattr(cfg, "sparsifier", "magnitude") != "prox":
        return
    if regime.kind == "none":
        raise ValueError("sparsifier 'prox' (--sparsifier prox) thresholds by the prior's coefficients; regime "
                         "'none' has no prior: use the magnitude sparsifier for it")
    if regime.trained:
        raise ValueError(f"sparsifier 'prox' moves weights only; regime {regime.label!r} trains its embedding, which "
                         "would get no gradient from the prior: use a fixed embedding")
    if cfg.prior_targets != cfg.prune_targets:
        raise ValueError(f"sparsifier 'prox' sparsifies the weights that carry the prior: prior_targets "
                         f"({cfg.prior_targets!r}) and prune_targets ({cfg.prune_targets!r}) must be the same")


def _attach(spec: RunSpec, cfg: TrainConfig, task: Task, model, stream: int):
    """The regime's prior attached to ``model`` with embeddings drawn from ``stream`` (None for ``none``)."""
    prior = build_prior(spec.regime, cfg)
    if prior is None:
        return None
    gen = torch.Generator().manual_seed(stream * 1_000_000 + spec.seed)
    return rg.attach(model, prior, targets=_targets(task, model, cfg.prior_targets), generator=gen)


def _build(spec: RunSpec, cfg: TrainConfig, device: torch.device = torch.device("cpu")):
    """A run's task, seeded fresh model, its initial state and the attached priors (or None), on ``device``.

    The task's fixed data, the model's initial weights and the embeddings are
    drawn on the CPU and moved, so they are the same on every device.
    """
    check_options(spec.regime, cfg)
    task = make_task(spec.task, cfg, spec.seed).to(device)
    torch.manual_seed(_INIT_STREAM * 1_000_000 + spec.seed)
    model = task.build_model().to(device)
    initial_state = copy.deepcopy(model.state_dict())
    return task, model, initial_state, _attach(spec, cfg, task, model, _EMBED_STREAM)


def _embeddings(priors) -> dict:
    """``{weight name: (points_out, points_in)}`` of the moduli terms (for pictures)."""
    out = {}
    for name, term in (getattr(priors, "terms", None) or {}).items():
        po, pi = getattr(term, "points_out", None), getattr(term, "points_in", None)
        if isinstance(po, torch.Tensor) and isinstance(pi, torch.Tensor):
            out[name] = (po.detach().cpu().clone(), pi.detach().cpu().clone())
    return out


def initial_embeddings(spec: RunSpec, cfg: TrainConfig) -> dict:
    """``{weight name: (points_out, points_in)}``: the embeddings run ``spec`` starts from.

    Built exactly as :func:`run_one` builds them, so a checkpoint's trained
    embeddings can be compared with their seeded starting points.
    """
    return _embeddings(_build(spec, cfg)[3])


def _restore(spec: RunSpec, cfg: TrainConfig, model, priors, path: Path) -> dict:
    """Load the sparse checkpoint of ``spec`` into ``model`` and ``priors``; its ``initial_state``.

    Raises
    ------
    CheckpointError
        If the file cannot be read, is of another run or config
        (:func:`~moduli.experiments.results.load_checkpoint`) or does not fit the model.
    """
    state = load_checkpoint(path, run_id=spec.run_id, config=cfg)
    try:
        targets.restore_masks(model, state["masks"])
        model.load_state_dict(state["model"])
        if priors is not None and state["priors"] is not None:
            priors.load_state_dict(state["priors"])
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"checkpoint {path} does not fit the model of {spec.run_id} ({first})") from None
    return state["initial_state"]


def run_one(spec: RunSpec, cfg: TrainConfig, out: Path, *, done: set, progress: bool = True, log=print,
            device="cpu") -> list[dict]:
    """Train the phases of ``spec`` that are not in ``done``; append and return their records.

    Parameters
    ----------
    spec : RunSpec
    cfg : TrainConfig
        The run's configuration (:func:`moduli.experiments.plan.run_config`).
    out : path
        Result directory: records are appended to ``out/results.jsonl``, the
        sparse checkpoint goes to ``out/checkpoints``.
    done : set of (run_id, phase)
        Phases already recorded (skipped; the lottery phase then loads the checkpoint).
    device : str or torch.device
        ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``
        (:func:`~moduli.experiments.devices.resolve_device`). Model, data,
        prior, masks and evaluation live there; the checkpoint is written
        with CPU tensors, so it loads anywhere.

    When only the lottery phase is left and the sparse checkpoint cannot be
    used (unreadable, of another run or config, or not fitting the model), one
    line naming the file is logged and both phases are trained again: the new
    sparse record, appended after the old one, supersedes it
    (:func:`~moduli.experiments.results.read_results` keeps the last record
    of each run id and phase), and the new checkpoint replaces the file.

    Raises
    ------
    FileNotFoundError
        If only the lottery phase is left and the sparse checkpoint is missing.
    """
    out = Path(out)
    device = resolve_device(device)
    ckpt_path = checkpoint_path(out, spec.run_id)
    ckpt_path.parent.mkdir(exist_ok=True)
    todo = [p for p in spec.phases() if (spec.run_id, p) not in done]
    if not todo:
        return []
    task, model, initial_state, priors = _build(spec, cfg, device)
    prune_names = _targets(task, model, cfg.prune_targets)
    records = []

    if "sparse" not in todo:
        if not ckpt_path.exists():
            raise FileNotFoundError(
                f"{spec.run_id}: the sparse result is recorded but its checkpoint {ckpt_path} is missing; "
                "the lottery phase needs the learned mask"
            )
        try:
            initial_state = _restore(spec, cfg, model, priors, ckpt_path)
        except CheckpointError as exc:
            log(f"{exc}: training {spec.run_id} again from its sparse phase (the new sparse record supersedes the "
                "old one, the new checkpoint replaces the file)")
            todo = list(spec.phases())
            task, model, initial_state, priors = _build(spec, cfg, device)  # fresh: the failed load may have changed them

    if "sparse" in todo:
        started, t0 = _now(), time.perf_counter()
        pruner = _pruner(model, prune_names, cfg, spec.sparsity, priors, spec.lam) if spec.sparsity > 0 else None
        rec = _train_and_record("sparse", spec, task, model, cfg, priors, pruner, _TRAIN_STREAM, prune_names,
                                progress, started, t0)
        if spec.sparsity > 0:
            atomic_save(checkpoint_contents(
                spec.run_id, cfg.to_dict(), model=move_to(model.state_dict(), _CPU),
                masks=move_to(targets.masks(model, prune_names), _CPU), initial_state=move_to(initial_state, _CPU),
                priors=move_to(priors.state_dict(), _CPU) if priors is not None and hasattr(priors, "state_dict")
                else None, embeddings=_embeddings(priors)), ckpt_path)
        rec = record_phase(out, rec)
        records.append(rec)
        log(f"{spec.run_id} sparse: {task.metric} = {rec['value']} (recurrent sparsity {rec['recurrent_sparsity']:.3f})")

    if "lottery" in todo:
        started, t0 = _now(), time.perf_counter()
        pruning.lottery_reset(model, mode=cfg.lottery_mode,
                              initial_state=initial_state if cfg.lottery_mode == "rewind" else None,
                              priors=priors, seed=_LOTTERY_STREAM * 1_000_000 + spec.seed)
        if cfg.lottery_prior == "redraw" and priors is not None:
            # a fresh model of the authors' code draws a fresh regularizer: new embedding, new permutation
            priors = _attach(spec, cfg, task, model, _LOTTERY_EMBED_STREAM)
            priors.freeze()
        rec = _train_and_record("lottery", spec, task, model, cfg, priors, None, _LOTTERY_STREAM, prune_names,
                                progress, started, t0)
        rec = record_phase(out, rec)
        records.append(rec)
        log(f"{spec.run_id} lottery: {task.metric} = {rec['value']} (recurrent sparsity {rec['recurrent_sparsity']:.3f})")
    return records
