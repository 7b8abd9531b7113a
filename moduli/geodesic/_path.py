"""Walking a network along an approximate functional geodesic (Eq. 7)."""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from ._metric import METRICS, FunctionalMetric
from ._projection import _check_fraction, magnitude_masks, unit_masks
from ._trust import _check_positive, trust_region_step

__all__ = ["GeodesicPath", "sparsify", "transfer", "line_length", "target_weights"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_STRUCTURED = (None, "units", "neurons", "filters")


@dataclass
class GeodesicPath:
    """The result of :func:`sparsify` or :func:`transfer`.

    Attributes
    ----------
    model : nn.Module
        A new model (deep copy of the input) holding the weights at the end of
        the path; for :func:`sparsify` exactly on the sparse hyperplane.  Its
        train/eval flag is that of the input model.
    history : list of dict
        One record per point of the path.  Row 0 is the start; each later row
        is the point after one step; :func:`sparsify` appends a last row with
        ``kind="projection"`` for the final exact projection.  Keys:
        ``step``, ``kind`` (``"start"``, ``"step"``, ``"projection"``),
        ``distance`` (Euclidean distance to the hyperplane / target network),
        ``step_norm`` (``|θ_t|``), ``step_length`` (``sqrt(θ_tᵀ g_t θ_t)`` =
        ``|J_t θ_t| / sqrt(B)`` for the output metric), ``path_length``
        (cumulative sum of ``step_length``), ``energy`` (cumulative sum of
        ``θ_tᵀ g_t θ_t``), ``euclidean_length`` (cumulative ``|θ_t|``),
        ``lam`` (multiplier of the trust-region constraint), ``drift`` (mean
        squared output difference ``|f(w) − f(w_0)|² / B`` to the starting
        network on the step's batch, measured where the step began),
        ``products``
        (cumulative products with ``g``), ``time`` (seconds since the start)
        and, on evaluated rows, every key returned by ``evaluate``.
    names : list of str
        Parameter names of the flat weight vector (walk order).
    masks : dict of str to Tensor or None
        For :func:`sparsify`: keep-masks of the final projection by parameter
        name (element masks, or unit masks of shape ``[out_units]`` for
        structured targets, applied to the weight and its bias).
    points : list of (int, Tensor)
        ``(step, flat weights)`` pairs kept every ``keep_every`` steps.
    reached : bool
        Whether the walk got within ``tol`` of the hyperplane / target before
        the step budget ran out.
    """

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    masks: dict[str, Tensor] | None = None
    points: list[tuple[int, Tensor]] = field(default_factory=list)
    reached: bool = False

    def model_at(self, index: int) -> nn.Module:
        """A copy of :attr:`model` holding the weights of ``points[index]``."""
        _, w = self.points[index]
        m = copy.deepcopy(self.model)
        _load(m, self.names, w)
        return m

    def column(self, key: str) -> list:
        """Values of ``key`` over the history rows that have it."""
        return [row[key] for row in self.history if key in row]


# ----------------------------------------------------------------------------- helpers


def _check_model(name: str, model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")


def _walk_params(model: nn.Module) -> tuple[list[str], list[torch.Size], Tensor]:
    names, shapes, flats = [], [], []
    for n, p in model.named_parameters():
        if p.requires_grad and p.is_floating_point():
            names.append(n)
            shapes.append(p.shape)
            flats.append(p.detach().reshape(-1))
    if not names:
        raise ValueError("the model has no trainable floating-point parameters to move")
    dtypes = {f.dtype for f in flats}
    if len(dtypes) > 1:
        raise TypeError(f"all trainable parameters must share one dtype, got {sorted(map(str, dtypes))}")
    return names, shapes, torch.cat(flats).clone()


def _load(model: nn.Module, names: list[str], w: Tensor) -> None:
    params = dict(model.named_parameters())
    i = 0
    with torch.no_grad():
        for n in names:
            p = params[n]
            p.copy_(w[i : i + p.numel()].view_as(p))
            i += p.numel()


def target_weights(model: nn.Module, targets=None, structured: str | None = None) -> dict[str, nn.Module]:
    """Resolve which layers a sparsification acts on.

    Parameters
    ----------
    model : nn.Module
    targets : None, str or list of str, optional
        Module names (as in ``model.named_modules()``).  ``None`` selects every
        ``Linear`` and ``Conv1d/2d/3d``; for structured targets the last such
        layer (the output layer) is left out, and ``"neurons"`` keeps only
        ``Linear``, ``"filters"`` only ``Conv`` layers.
    structured : {None, "units", "neurons", "filters"}

    Returns
    -------
    dict of str to nn.Module
        Module name to module, in model order.
    """
    _check_model("model", model)
    if structured not in _STRUCTURED:
        raise ValueError(f"structured must be one of {_STRUCTURED}, got {structured!r}")
    mods = dict(model.named_modules())
    if targets is None:
        layers = [(n, m) for n, m in mods.items() if isinstance(m, _LAYERS)]
        if structured is not None and layers:
            layers = layers[:-1]
        if structured == "neurons":
            layers = [(n, m) for n, m in layers if isinstance(m, nn.Linear)]
        elif structured == "filters":
            layers = [(n, m) for n, m in layers if not isinstance(m, nn.Linear)]
        out = dict(layers)
    else:
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise TypeError(f"targets must be None, a module name or a list of module names, got {targets!r}")
        out = {}
        for t in targets:
            if t not in mods:
                raise ValueError(f"targets: no module named {t!r} in the model (have {[n for n in mods if n][:10]} ...)")
            w = getattr(mods[t], "weight", None)
            if not isinstance(w, nn.Parameter):
                raise ValueError(f"targets: module {t!r} has no weight parameter")
            if structured is not None and not isinstance(mods[t], _LAYERS):
                raise ValueError(f"targets: structured removal needs Linear or Conv layers, {t!r} is {type(mods[t]).__name__}")
            out[t] = mods[t]
    if not out:
        raise ValueError(f"no target layers found for targets={targets!r}, structured={structured!r}")
    return out


class _Batches:
    """Endless stream of input batches from a tensor, a pair or a DataLoader."""

    def __init__(self, data, batch_size: int | None, seed: int):
        self.loader = None
        if isinstance(data, Tensor):
            x = data
        elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, Tensor) for d in data):
            x, y = data
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"data: inputs have {x.shape[0]} rows but targets have {y.shape[0]}")
        elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
            self.loader = data
            self._it = iter(())
            x = None
        else:
            raise TypeError(
                "data must be an input tensor, an (inputs, targets) pair of tensors or a DataLoader, "
                f"got {type(data).__name__}"
            )
        if x is not None:
            self._check(x)
            self.x = x
            if batch_size is not None and (
                isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
            ):
                raise ValueError(f"batch_size must be None or a positive int, got {batch_size!r}")
            self.batch_size = batch_size
            self.gen = torch.Generator().manual_seed(seed)

    @staticmethod
    def _check(x) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"data: batch inputs must be tensors, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"data: inputs must have a non-empty leading batch dimension, got shape {tuple(x.shape)}")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"data: inputs of shape {tuple(x.shape)} contain NaN or inf")
        return x

    def next(self) -> Tensor:
        if self.loader is None:
            n = self.x.shape[0]
            if self.batch_size is None or self.batch_size >= n:
                return self.x
            idx = torch.randperm(n, generator=self.gen)[: self.batch_size].to(self.x.device)
            return self.x[idx]
        for _ in range(2):
            try:
                b = next(self._it)
                break
            except StopIteration:
                self._it = iter(self.loader)
        else:
            raise ValueError("data: the DataLoader yielded no batches")
        if isinstance(b, (tuple, list)):
            b = b[0]
        return self._check(b)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _as_metrics(res) -> dict:
    if isinstance(res, dict):
        return {str(k): float(v) for k, v in res.items()}
    if isinstance(res, (int, float)) or (isinstance(res, Tensor) and res.numel() == 1):
        return {"metric": float(res)}
    raise TypeError(f"evaluate must return a dict of floats or a float, got {type(res).__name__}")


@dataclass
class _WalkState:
    work: nn.Module
    names: list[str]
    shapes: list[torch.Size]
    buffers: dict[str, Tensor]
    w: Tensor
    path: GeodesicPath
    batches: _Batches
    totals: dict
    t0: float
    step: int


def _walk(
    model: nn.Module,
    data,
    project: Callable[[Tensor], tuple[Tensor, Tensor | None]],
    *,
    steps: int,
    eps: float,
    beta: float,
    metric: str,
    evaluate,
    eval_every: int,
    batch_size,
    lanczos_iters: int,
    tol: float,
    keep_every,
    seed: int,
    progress: bool,
    desc: str,
    restore: float = 0.0,
    compensate: bool = False,
) -> "_WalkState":
    _check_positive("eps", eps)
    _check_positive("beta", beta)
    _check_positive("tol", tol)
    if isinstance(restore, bool) or not isinstance(restore, (int, float)) or not (0.0 <= restore < math.inf):
        raise ValueError(f"restore must be a finite float >= 0, got {restore!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    _check_int("steps", steps, 0)
    _check_int("eval_every", eval_every, 1)
    _check_int("lanczos_iters", lanczos_iters, 1)
    if keep_every is not None:
        _check_int("keep_every", keep_every, 1)
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate must be callable or None, got {type(evaluate).__name__}")
    batches = _Batches(data, batch_size, seed)

    work = copy.deepcopy(model).eval()  # BatchNorm uses running stats, dropout is off
    names, shapes, w = _walk_params(work)
    w0 = {n: t.view(sh).clone() for n, t, sh in zip(names, w.split([math.prod(sh) for sh in shapes]), shapes)}
    buffers = dict(work.named_buffers())
    path = GeodesicPath(model=work, names=names)

    def record(row: dict) -> None:
        if evaluate is not None and row["step"] % eval_every == 0:
            _load(work, names, w)
            with torch.no_grad():
                row.update(_as_metrics(evaluate(work)))
        if keep_every is not None and row["step"] % keep_every == 0:
            path.points.append((row["step"], w.clone()))
        path.history.append(row)

    t0 = time.perf_counter()
    target, pruned = project(w)
    dist0 = float((target - w).norm())
    totals = {"path_length": 0.0, "energy": 0.0, "euclidean_length": 0.0, "products": 0}
    record({"step": 0, "kind": "start", "distance": dist0, "step_norm": 0.0, "step_length": 0.0,
            "lam": 0.0, **totals, "time": 0.0})
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, leave=False)
    dist = dist0
    step = 0
    for step in range(1, steps + 1):
        if dist == 0.0 or (not compensate and dist <= tol * dist0):
            step -= 1
            break
        v = target - w
        x = batches.next()
        g = FunctionalMetric(work, names, shapes, buffers, x, w, metric)
        with torch.no_grad():
            resid = torch.func.functional_call(work, (w0, buffers), (x,)).reshape(g.batch, -1) - g.out.detach()
        drift = float((resid * resid).sum()) / g.batch
        u = None
        if restore > 0:
            # Gauss-Newton pull back towards the starting network's outputs:
            # with beta -> 0 the step is restore * g^{-1} Jᵀ H (f(w_0) - f(w)) / B
            u = g.vjp(g._hess(resid)) / g.batch
            if pruned is not None:
                u = u * (~pruned).to(u.dtype)  # compensate with the surviving weights only
        if compensate:
            # prescribed progress on the pruned coordinates (linear schedule that
            # lands on the hyperplane at the last step); the other coordinates
            # take the minimum-metric trust-region step given that progress
            t_p = v / (steps - step + 1)
            keep = (~pruned).to(w.dtype)
            lin = -2.0 * keep * g.matvec(t_p)
            if u is not None:
                lin = lin + 2.0 * restore * u
            th_k, info = trust_region_step(
                lambda z: keep * g.matvec(keep * z), lin, eps=eps, beta=1.0, max_iter=lanczos_iters
            )
            theta = t_p + keep * th_k
            quad_override = g.sq_norm(theta)
        else:
            if u is not None:
                v = v + (2.0 * restore / beta) * u
            radius = min(math.sqrt(eps), dist)
            theta, info = trust_region_step(g.matvec, v, eps=eps, beta=beta, max_iter=lanczos_iters, radius=radius)
            quad_override = None
        w = w + theta
        if not bool(torch.isfinite(w).all()):
            raise FloatingPointError(f"the walk produced non-finite weights at step {step}")
        target, pruned = project(w)
        dist = float((target - w).norm())
        quad = max(info.quad if quad_override is None else quad_override, 0.0)
        totals["path_length"] += math.sqrt(quad)
        totals["energy"] += quad
        totals["euclidean_length"] += float(theta.norm())
        totals["products"] += g.products
        record({"step": step, "kind": "step", "distance": dist, "step_norm": float(theta.norm()),
                "step_length": math.sqrt(quad), "lam": info.lam, "drift": drift, **totals,
                "time": time.perf_counter() - t0})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(distance=f"{dist:.3g}")
    if bar is not None:
        bar.close()
    path.reached = dist <= tol * dist0 or dist == 0.0
    _load(work, names, w)
    return _WalkState(work, names, shapes, buffers, w, path, batches, totals, t0, step)


# ----------------------------------------------------------------------------- public API


def sparsify(
    model: nn.Module,
    data,
    target_sparsity: float,
    *,
    steps: int = 500,
    eps: float = 0.01,
    beta: float = 1.0,
    metric: str = "output",
    restore: float = 0.0,
    mode: str = "eq7",
    structured: str | None = None,
    targets=None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    eval_every: int = 10,
    batch_size: int | None = None,
    lanczos_iters: int = 20,
    tol: float = 1e-2,
    keep_every: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> GeodesicPath:
    """Walk a trained network to a sparse hyperplane along an approximate geodesic.

    At each step the tangent vector solves Eq. 7,
    ``argmin θᵀ g_w θ − β θᵀ v  s.t.  |θ|² ≤ eps``, where ``g_w`` is the
    pull-back metric of the outputs at the current weights ``w`` on one batch
    and ``v = P(w) − w`` points to the Euclidean projection ``P(w)`` of ``w``
    onto the sparse hyperplane (global magnitude projection, or whole-unit
    removal).  The walk stops when the distance ``|v|`` falls below
    ``tol * |v_0|`` or after ``steps`` steps; the weights are then projected
    exactly onto the hyperplane.  The radius is ``min(sqrt(eps), |v|)`` so the
    walk never overshoots the hyperplane.

    All trainable parameters move (weights, biases, BatchNorm affine
    parameters); only the target weights count towards the sparsity.  The
    walk uses a deep copy of ``model`` in evaluation mode: BatchNorm layers
    use (and keep) their running statistics, dropout is off.  ``model`` itself
    is not modified.  Memory is O(``lanczos_iters`` × number of parameters).

    Parameters
    ----------
    model : nn.Module
        Trained network returning one tensor of shape ``[B, ...]`` (flattened
        to ``[B, m]``; logits for ``metric="fisher"``).
    data : Tensor or (Tensor, Tensor) or DataLoader
        Inputs ``[N, ...]``, an ``(inputs, targets)`` pair (targets are not
        used by the metric) or an iterable of batches (``x`` or ``(x, y)``).
    target_sparsity : float
        In ``[0, 1)``.  Unstructured: fraction of zeros over all target
        weights (exactly ``round(p · N)`` entries).  Structured: fraction of
        output units removed in every target layer
        (``round(p · units)`` per layer).
    steps : int, optional
        Maximum number of steps.
    eps : float, optional
        Squared trust-region radius of Eq. 7 (the paper's 0.01).
    beta : float, optional
        Weight of the direction term ``θᵀv``; larger values walk straighter
        (Euclidean) and faster, smaller ones follow the metric's null space.
        It has the units of the metric: on the digits MLP ``β = 1`` is
        essentially the straight line and the benchmark uses ``0.01``
        (``docs/geodesic.md``).
    metric : {"output", "fisher"}, optional
        ``g = JᵀJ / B`` or ``g = Jᵀ H J / B`` with ``H = diag(p) − ppᵀ``.
    restore : float, optional
        Extension beyond Eq. 7 (0, the default, is the paper's step).  With
        ``restore > 0`` the linear term becomes
        ``β v + 2 · restore · Jᵀ H (f(w_0) − f(w)) / B``: a Gauss-Newton pull
        back towards the outputs of the starting network, which undoes the
        functional drift that the purely local metric lets accumulate.  The
        pull-back gradient is masked to the weights that the current
        projection keeps (plus all non-target parameters), so it compensates
        with surviving weights instead of fighting the walk to the
        hyperplane.
    mode : {"eq7", "compensate"}, optional
        ``"eq7"`` (default): the free trust-region step of Eq. 7 described
        above; the walk ends when the distance drops below ``tol · |v_0|``.
        ``"compensate"``: Eq. 7 restricted to steps that make prescribed
        progress -- the coordinates being pruned move by ``v / (steps − t + 1)``
        (a linear schedule that lands exactly on the hyperplane after
        ``steps`` steps), and the remaining coordinates take the
        minimum-metric step ``argmin θᵀ g θ`` given that move, within
        ``|θ_kept|² ≤ eps`` (with ``v`` fixed, the ``β`` term is constant, so
        ``beta`` is unused).  ``tol`` is unused.
    structured : {None, "units", "neurons", "filters"}, optional
        ``None``: global magnitude projection over element weights.
        Otherwise whole output units (Linear rows, Conv output filters, and
        their biases) are removed; see :func:`target_weights` for defaults.
    targets : str or list of str, optional
        Module names whose ``weight`` is sparsified (default: every Linear
        and Conv layer).
    evaluate : callable, optional
        ``evaluate(model) -> dict`` (or float) called under ``no_grad`` at the
        start, every ``eval_every`` steps and at the end; results go into the
        history rows.
    eval_every : int, optional
    batch_size : int, optional
        For tensor data: size of the random batch drawn at each step
        (default: the whole tensor).
    lanczos_iters : int, optional
        Products with ``g`` per step (Lanczos vectors).
    tol : float, optional
        Relative distance at which the walk stops before projecting.
    keep_every : int, optional
        Keep a copy of the weights every that many steps in ``path.points``.
    seed : int, optional
        Seed of the batch sampler.
    progress : bool, optional
        Show a tqdm progress bar.

    Returns
    -------
    GeodesicPath
        ``.model`` is exactly ``target_sparsity`` sparse over the target
        weights; ``.history`` has one row per step.

    Examples
    --------
    >>> import torch
    >>> from moduli import geodesic
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> path = geodesic.sparsify(net, torch.randn(32, 4), 0.5, steps=50, progress=False)
    >>> geodesic.sparsity([net.weight for net in (path.model[0], path.model[2])])
    0.5
    """
    _check_model("model", model)
    p = _check_fraction("target_sparsity", target_sparsity)
    if mode not in ("eq7", "compensate"):
        raise ValueError(f"mode must be 'eq7' or 'compensate', got {mode!r}")
    layers = target_weights(model, targets, structured)
    names_all = [n for n, q in model.named_parameters() if q.requires_grad and q.is_floating_point()]
    weight_names = [f"{n}.weight" if n else "weight" for n in layers]
    for wn in weight_names:
        if wn not in names_all:
            raise ValueError(f"targets: parameter {wn!r} is not a trainable floating-point parameter")
    bias_of = {}
    if structured is not None:
        for n, m in layers.items():
            bn = f"{n}.bias" if n else "bias"
            if getattr(m, "bias", None) is not None and bn in names_all:
                bias_of[f"{n}.weight" if n else "weight"] = bn
    # slices of the flat vector
    offsets, i = {}, 0
    for n, q in model.named_parameters():
        if q.requires_grad and q.is_floating_point():
            offsets[n] = (i, i + q.numel(), q.shape)
            i += q.numel()
    last_masks: dict[str, Tensor] = {}

    def project(w: Tensor) -> tuple[Tensor, Tensor]:
        ws = {n: w[offsets[n][0] : offsets[n][1]].view(offsets[n][2]) for n in weight_names}
        out = w.clone()
        if structured is None:
            masks = magnitude_masks(ws, p)
            for n in weight_names:
                a, b, _ = offsets[n]
                out[a:b] = w[a:b] * masks[n].reshape(-1).to(w.dtype)
        else:
            masks = unit_masks(ws, p)
            for n in weight_names:
                a, b, shape = offsets[n]
                m = masks[n].to(w.dtype)
                out[a:b] = (w[a:b].view(shape) * m.view(-1, *([1] * (len(shape) - 1)))).reshape(-1)
                if n in bias_of:
                    a2, b2, _ = offsets[bias_of[n]]
                    out[a2:b2] = w[a2:b2] * m
        last_masks.clear()
        last_masks.update(masks)
        pruned = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
        for n in weight_names:
            a, b, shape = offsets[n]
            m = masks[n]
            if m.shape != shape:
                m = m.view(-1, *([1] * (len(shape) - 1))).expand(shape)
                if n in bias_of:
                    a2, b2, _ = offsets[bias_of[n]]
                    pruned[a2:b2] = ~masks[n]
            pruned[a:b] = ~m.reshape(-1)
        return out, pruned

    st = _walk(
        model, data, project, steps=steps, eps=eps, beta=beta, metric=metric, evaluate=evaluate,
        eval_every=eval_every, batch_size=batch_size, lanczos_iters=lanczos_iters, tol=tol,
        keep_every=keep_every, seed=seed, progress=progress, desc=f"geodesic sparsify {p:.0%}", restore=restore,
        compensate=(mode == "compensate"),
    )
    # exact projection; its straight segment is charged with the metric at w
    work, path, totals = st.work, st.path, st.totals
    w_final, _ = project(st.w)
    delta = w_final - st.w
    quad = 0.0
    if float(delta.norm()) > 0:
        g = FunctionalMetric(work, st.names, st.shapes, st.buffers, st.batches.next(), st.w, metric)
        quad = max(g.sq_norm(delta), 0.0)
    totals["path_length"] += math.sqrt(quad)
    totals["energy"] += quad
    totals["euclidean_length"] += float(delta.norm())
    _load(work, st.names, w_final)
    row = {"step": st.step + 1, "kind": "projection", "distance": 0.0, "step_norm": float(delta.norm()),
           "step_length": math.sqrt(quad), "lam": 0.0, **totals, "time": time.perf_counter() - st.t0}
    if evaluate is not None:
        with torch.no_grad():
            row.update(_as_metrics(evaluate(work)))
    if keep_every is not None:
        path.points.append((row["step"], w_final.clone()))
    path.history.append(row)
    path.masks = {n: m.clone() for n, m in last_masks.items()}
    work.train(model.training)
    return path


def transfer(
    model_a: nn.Module,
    model_b: nn.Module,
    data_a,
    *,
    steps: int = 500,
    eps: float = 0.01,
    beta: float = 1.0,
    metric: str = "output",
    restore: float = 0.0,
    evaluate: Callable[[nn.Module], dict] | None = None,
    eval_every: int = 10,
    batch_size: int | None = None,
    lanczos_iters: int = 20,
    tol: float = 1e-2,
    keep_every: int | None = 10,
    seed: int = 0,
    progress: bool = True,
) -> GeodesicPath:
    """Walk from network A towards network B along A's functional manifold.

    Each step solves Eq. 7 with the metric of ``model_a``'s architecture on
    task-A inputs ``data_a`` at the current weights and ``v = w_B − w``; the
    walk stops within ``tol · |w_B − w_A|`` of ``w_B`` or after ``steps``
    steps.  Networks along the path trade task-A function (kept by the
    metric) against movement towards B; evaluate both tasks with
    ``evaluate`` and pick points from ``path.points`` / ``path.model_at``.
    This is the catastrophic-forgetting experiment of the paper.

    Parameters
    ----------
    model_a, model_b : nn.Module
        Same architecture (identical trainable parameter names and shapes).
    data_a : Tensor or (Tensor, Tensor) or DataLoader
        Task-A inputs defining the metric.
    steps, eps, beta, metric, restore, evaluate, eval_every, batch_size, lanczos_iters, tol, seed, progress
        As in :func:`sparsify` (``restore`` pulls towards network A's outputs).
    keep_every : int, optional
        Keep weights every that many steps (default 10) so that intermediate
        networks can be rebuilt with ``path.model_at(i)``.

    Returns
    -------
    GeodesicPath
        ``.model`` holds the last point of the path (not snapped to B);
        ``history[i]["distance"]`` is the distance to ``w_B``.

    Examples
    --------
    >>> import torch
    >>> from moduli import geodesic
    >>> a = torch.nn.Linear(3, 2); b = torch.nn.Linear(3, 2)
    >>> path = geodesic.transfer(a, b, torch.randn(16, 3), steps=400, eps=0.04, progress=False)
    >>> path.reached
    True
    """
    _check_model("model_a", model_a)
    _check_model("model_b", model_b)
    pa = [(n, q.shape) for n, q in model_a.named_parameters() if q.requires_grad and q.is_floating_point()]
    pb = [(n, q.shape) for n, q in model_b.named_parameters() if q.requires_grad and q.is_floating_point()]
    if pa != pb:
        diff = [x for x in itertools.zip_longest(pa, pb) if x[0] != x[1]][:3]
        raise ValueError(f"model_a and model_b must have the same trainable parameters; first differences (a, b): {diff}")
    _, _, w_b = _walk_params(model_b)
    _, _, w_a = _walk_params(model_a)
    if w_b.dtype != w_a.dtype or w_b.device != w_a.device:
        raise TypeError(f"model_b's parameters ({w_b.dtype}, {w_b.device}) must match model_a's ({w_a.dtype}, {w_a.device})")

    st = _walk(
        model_a, data_a, lambda w: (w_b, None), steps=steps, eps=eps, beta=beta, metric=metric, evaluate=evaluate,
        eval_every=eval_every, batch_size=batch_size, lanczos_iters=lanczos_iters, tol=tol,
        keep_every=keep_every, seed=seed, progress=progress, desc="geodesic transfer", restore=restore,
    )
    work, path = st.work, st.path
    last = path.history[-1]
    if evaluate is not None and last["step"] % eval_every != 0:
        with torch.no_grad():
            last.update(_as_metrics(evaluate(work)))
    if keep_every is not None and (not path.points or path.points[-1][0] != last["step"]):
        path.points.append((last["step"], st.w.clone()))
    work.train(model_a.training)
    return path


def line_length(
    model_start: nn.Module,
    model_end: nn.Module,
    data,
    *,
    metric: str = "output",
    segments: int = 20,
    batch_size: int | None = None,
    seed: int = 0,
) -> dict:
    """Functional length of the straight line between two networks.

    The segment ``w(s) = (1 − s) w_0 + s w_1`` is cut into ``segments``
    pieces; each piece ``Δ = (w_1 − w_0)/segments`` contributes
    ``sqrt(Δᵀ g Δ)`` with ``g`` at its midpoint (midpoint rule), so the sum
    converges to the metric length of the line.

    Parameters
    ----------
    model_start, model_end : nn.Module
        Same architecture.
    data : Tensor or (Tensor, Tensor) or DataLoader
    metric : {"output", "fisher"}, optional
    segments : int, optional
    batch_size, seed : optional
        As in :func:`sparsify`.

    Returns
    -------
    dict
        ``path_length``, ``energy`` (``Σ Δᵀ g Δ``) and ``euclidean_length``.
    """
    _check_model("model_start", model_start)
    _check_model("model_end", model_end)
    _check_int("segments", segments, 1)
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    work = copy.deepcopy(model_start).eval()
    names, shapes, w0 = _walk_params(work)
    names1, shapes1, w1 = _walk_params(model_end)
    if names1 != names or shapes1 != shapes:
        raise ValueError("model_start and model_end must have the same trainable parameters")
    buffers = dict(work.named_buffers())
    batches = _Batches(data, batch_size, seed)
    delta = (w1 - w0) / segments
    length = energy = 0.0
    for s in range(segments):
        mid = w0 + (s + 0.5) * delta
        q = max(FunctionalMetric(work, names, shapes, buffers, batches.next(), mid, metric).sq_norm(delta), 0.0)
        length += math.sqrt(q)
        energy += q
    return {"path_length": length, "energy": energy, "euclidean_length": float((w1 - w0).norm())}
