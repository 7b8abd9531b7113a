"""The public functions: :func:`sparsify`, :func:`transfer` and :func:`line_length`."""

from __future__ import annotations

import copy
import itertools
import math
from typing import Optional

from torch import nn

from .. import _validate
from ._batches import Batches
from ._hyperplane import SparseHyperplane, check_model
from ._metric import METRICS, FunctionalMetric
from ._options import GeodesicOptions, resolve_options
from ._params import walk_parameters
from ._result import GeodesicPath
from ._walk import end_at_last_point, end_with_projection, walk

__all__ = ["sparsify", "transfer", "line_length"]

MODES = ("eq7", "compensate")


def sparsify(
    model: nn.Module,
    data,
    target_sparsity: float,
    *,
    mode: str = "compensate",
    structured: Optional[str] = None,
    targets=None,
    options: Optional[GeodesicOptions] = None,
    **overrides,
) -> GeodesicPath:
    """Walk a trained network to a sparse hyperplane along an approximate geodesic.

    ``v = P(w) − w`` points from the current weights ``w`` to their
    Euclidean projection ``P(w)`` onto the sparse hyperplane (global
    magnitude projection, or whole-unit removal), recomputed after every
    step; ``g_w`` is the pull-back metric of the outputs at ``w`` on one
    batch.  With the defaults (``mode="compensate"``) the walk takes exactly
    ``steps`` steps and lands on the hyperplane with no final jump: at each
    step the coordinates being pruned move by ``v / (steps − t + 1)`` and the
    others take the Gauss-Newton step that best restores the starting
    network's outputs, within a trust radius of ``trust · |v_0| / steps``.
    ``mode="eq7"`` is the paper's free step,
    ``argmin θᵀ g_w θ − β θᵀ v  s.t.  |θ| ≤ r``, until ``|v| < tol · |v_0|``
    or ``steps`` steps, followed by the exact projection.  Every default is
    relative to scales measured on the model and data (see
    :class:`GeodesicOptions`), so it carries over to unseen networks.

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
    mode : {"compensate", "eq7"}, optional
        ``"compensate"`` (default): Eq. 7 restricted to steps that make
        prescribed progress -- the coordinates being pruned move by
        ``v / (steps − t + 1)`` (a linear schedule that lands exactly on the
        hyperplane after ``steps`` steps), and the remaining coordinates take
        the minimum-metric step given that move (with ``restore``, the
        Gauss-Newton step back towards the starting outputs), within the
        trust radius (with ``v`` fixed, the ``β`` term is constant, so
        ``beta`` is unused).  ``tol`` is unused.
        ``"eq7"``: the free trust-region step of Eq. 7 described above; the
        radius is ``min(r, |v|)`` so the walk never overshoots.
    structured : {None, "units", "neurons", "filters"}, optional
        ``None``: global magnitude projection over element weights.
        Otherwise whole output units (Linear rows, Conv output filters, and
        their biases) are removed; see :func:`target_weights` for defaults.
    targets : str or list of str, optional
        Module names (all their weight matrices) or parameter names
        (``"rnn.weight_hh_l0"``) to sparsify.  Default: every weight matrix
        of :func:`moduli.targets.default_weights` -- Linear and Conv weights
        and the input and recurrent weights of RNN/LSTM/GRU layers -- so that
        ``moduli.targets.sparsity(path.model)`` is ``target_sparsity``; see
        :func:`target_parameters`.
    options : GeodesicOptions, optional
        The walk's settings (default ``GeodesicOptions()``): ``steps``,
        ``trust``, ``eps``, ``beta``, ``beta_absolute``, ``metric``,
        ``restore``, ``evaluate``, ``eval_every``, ``batch_size``,
        ``lanczos_iters``, ``lanczos_tol``, ``tol``, ``keep_every``,
        ``seed``, ``progress``.
    **overrides
        Fields of :class:`GeodesicOptions` replacing those of ``options``
        (``sparsify(net, x, 0.9, steps=300, trust=5.0)``).

    Returns
    -------
    GeodesicPath
        ``.model`` is exactly ``target_sparsity`` sparse over the target
        weights; ``.history`` has one row per step.

    Raises
    ------
    TypeError
        For an override that is not a field of :class:`GeodesicOptions`
        (the message lists the valid ones), or a bad argument type.
    ValueError
        For a bad value; the message names the argument.  Also when a target
        weight cannot be moved by the walk (frozen, ``requires_grad=False``):
        the model would miss ``target_sparsity``, and the message names the
        weights left out.

    Examples
    --------
    >>> import torch
    >>> from moduli import geodesic, targets
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> path = geodesic.sparsify(net, torch.randn(32, 4), 0.5, steps=10, lanczos_iters=8, progress=False)
    >>> targets.sparsity(path.model), path.reached, path.history[-1]["step_norm"]  # no final jump
    (0.5, True, 0.0)
    """
    opts = resolve_options("sparsify", options, overrides, GeodesicOptions())
    check_model("model", model)
    p = _validate.fraction(target_sparsity, "target_sparsity")
    _validate.choice(mode, "mode", MODES)
    hyperplane = SparseHyperplane(model, p, targets, structured)
    st = walk(model, data, hyperplane, opts, compensate=(mode == "compensate"), desc=f"geodesic sparsify {p:.0%}")
    path = end_with_projection(st, hyperplane, opts)
    path.masks = {n: m.clone() for n, m in hyperplane.masks.items()}
    st.work.train(model.training)
    return path


def transfer(
    model_a: nn.Module,
    model_b: nn.Module,
    data_a,
    *,
    options: Optional[GeodesicOptions] = None,
    **overrides,
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
    options : GeodesicOptions, optional
        As in :func:`sparsify` (``restore`` pulls towards network A's
        outputs).  Default ``GeodesicOptions(keep_every=10)``, so that
        intermediate networks can be rebuilt with ``path.model_at(i)``.
    **overrides
        Fields of :class:`GeodesicOptions` replacing those of ``options``.

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
    opts = resolve_options("transfer", options, overrides, GeodesicOptions(keep_every=10))
    check_model("model_a", model_a)
    check_model("model_b", model_b)
    names_a, shapes_a, w_a = walk_parameters(model_a, "model_a")
    names_b, shapes_b, w_b = walk_parameters(model_b, "model_b")
    pa, pb = list(zip(names_a, shapes_a)), list(zip(names_b, shapes_b))
    if pa != pb:
        diff = [x for x in itertools.zip_longest(pa, pb) if x[0] != x[1]][:3]
        raise ValueError(f"model_a and model_b must have the same trainable parameters; first differences (a, b): {diff}")
    if w_b.dtype != w_a.dtype or w_b.device != w_a.device:
        raise TypeError(f"model_b's parameters ({w_b.dtype}, {w_b.device}) must match model_a's ({w_a.dtype}, {w_a.device})")
    st = walk(model_a, data_a, lambda w: (w_b, None), opts, desc="geodesic transfer",
              arg_names=("model_a", "data_a"))
    path = end_at_last_point(st, opts)
    st.work.train(model_a.training)
    return path


def line_length(
    model_start: nn.Module,
    model_end: nn.Module,
    data,
    *,
    metric: str = "output",
    segments: int = 20,
    batch_size: Optional[int] = None,
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
        As in :class:`GeodesicOptions`.

    Returns
    -------
    dict
        ``path_length``, ``energy`` (``Σ Δᵀ g Δ``) and ``euclidean_length``.
    """
    check_model("model_start", model_start)
    check_model("model_end", model_end)
    segments = _validate.integer(segments, "segments", minimum=1)
    _validate.choice(metric, "metric", METRICS)
    if batch_size is not None:
        batch_size = _validate.integer(batch_size, "batch_size", minimum=1)
    seed = _validate.integer(seed, "seed")
    work = copy.deepcopy(model_start).eval()
    names, shapes, w0 = walk_parameters(work, "model_start")
    names1, shapes1, w1 = walk_parameters(model_end, "model_end")
    if names1 != names or shapes1 != shapes:
        raise ValueError("model_start and model_end must have the same trainable parameters")
    buffers = dict(work.named_buffers())
    batches = Batches(data, batch_size, seed, "data")
    delta = (w1 - w0) / segments
    length = energy = 0.0
    for s in range(segments):
        mid = w0 + (s + 0.5) * delta
        g = FunctionalMetric(work, names, shapes, buffers, batches.next(), mid, metric,
                             names_for_errors=("model_start", "data"))
        q = max(g.sq_norm(delta), 0.0)
        length += math.sqrt(q)
        energy += q
    return {"path_length": length, "energy": energy, "euclidean_length": float((w1 - w0).norm())}
