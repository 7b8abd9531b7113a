"""The walk itself: repeated trust-region steps of Eq. 7 towards a moving target.

:func:`walk` knows nothing about sparsity or a second network: it is handed
``project(w) -> (target, pruned)``, the point the current weights ``w`` head
for (and, for a sparse hyperplane, the boolean mask of the coordinates being
zeroed), and a :class:`~moduli.geodesic.GeodesicOptions`.  The public
functions in ``_api.py`` build ``project`` and finish the path with
:func:`end_with_projection` (sparsify) or :func:`end_at_last_point`
(transfer).
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ._batches import Batches
from ._metric import FunctionalMetric
from ._options import GeodesicOptions
from ._params import load_flat, walk_parameters
from ._result import GeodesicPath
from ._trust import trust_region_step

__all__ = ["walk", "end_with_projection", "end_at_last_point", "WalkState"]

#: ``project(w) -> (target, pruned)``; ``pruned`` is None when there is no hyperplane.
Projection = Callable[[Tensor], "tuple[Tensor, Optional[Tensor]]"]


@dataclass
class WalkState:
    """Where a :func:`walk` ended, for the function that finishes the path."""

    work: nn.Module
    names: list[str]
    arg_names: tuple[str, str]
    shapes: list[torch.Size]
    buffers: dict[str, Tensor]
    w: Tensor
    path: GeodesicPath
    batches: Batches
    totals: dict
    t0: float
    step: int


def as_metrics(res) -> dict:
    """``evaluate``'s result as a dict of floats (numpy scalars included)."""
    if isinstance(res, dict):
        return {str(k): float(v) for k, v in res.items()}
    if isinstance(res, numbers.Real) or (isinstance(res, Tensor) and res.numel() == 1):
        return {"metric": float(res)}
    raise TypeError(f"evaluate must return a dict of floats or a float, got {type(res).__name__}")


def walk(model: nn.Module, data, project: Projection, opts: GeodesicOptions, *,
         compensate: bool = False, desc: str = "geodesic",
         arg_names: tuple[str, str] = ("model", "data")) -> WalkState:
    """Walk a deep copy of ``model`` (in eval mode) towards ``project(w)``.

    Parameters
    ----------
    model : nn.Module
        The starting network (not modified).
    data : Tensor or (Tensor, Tensor) or DataLoader
        Inputs of the metric, see :class:`Batches`.
    project : callable
        ``project(w) -> (target, pruned)``, recomputed after every step.
    opts : GeodesicOptions
    compensate : bool
        The ``mode="compensate"`` step of :func:`~moduli.geodesic.sparsify`
        (needs ``pruned``) instead of the free Eq. 7 step.
    desc : str
        Label of the progress bar.
    arg_names : (str, str)
        The public argument names of ``model`` and ``data``, for error messages.

    Returns
    -------
    WalkState
        The copy holding the last weights, the path so far and the running totals.
    """
    batches = Batches(data, opts.batch_size, opts.seed, arg_names[1])
    evaluate, eval_every, keep_every = opts.evaluate, opts.eval_every, opts.keep_every
    steps, eps, beta = opts.steps, opts.eps, opts.beta
    restore = opts.restore if opts.restore is not None else (1.0 if compensate else 0.0)

    work = copy.deepcopy(model).eval()  # BatchNorm uses running stats, dropout is off
    names, shapes, w = walk_parameters(work, arg_names[0])
    w0 = {n: t.view(sh).clone() for n, t, sh in zip(names, w.split([math.prod(sh) for sh in shapes]), shapes)}
    buffers = dict(work.named_buffers())
    path = GeodesicPath(model=work, names=names)

    def record(row: dict) -> None:
        if evaluate is not None and row["step"] % eval_every == 0:
            load_flat(work, names, w)
            with torch.no_grad():
                row.update(as_metrics(evaluate(work)))
        if keep_every is not None and row["step"] % keep_every == 0:
            path.points.append((row["step"], w.clone()))
        path.history.append(row)

    t0 = time.perf_counter()
    target, pruned = project(w)
    dist0 = float((target - w).norm())
    # the trust radius: absolute (the paper's eps) or a fraction of the average step to the target
    r0 = math.sqrt(eps) if eps is not None else (opts.trust * dist0 / steps if steps else 0.0)
    totals = {"path_length": 0.0, "energy": 0.0, "euclidean_length": 0.0, "products": 0}
    record({"step": 0, "kind": "start", "distance": dist0, "step_norm": 0.0, "step_length": 0.0,
            "lam": 0.0, **totals, "time": 0.0})
    bar = None
    if opts.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, leave=False)
    dist = dist0
    step = 0
    out0 = None  # f(w_0) on the last batch, reused while the batch is the same tensor
    last_x = None
    for step in range(1, steps + 1):
        if dist == 0.0 or r0 == 0.0 or (not compensate and dist <= opts.tol * dist0):
            step -= 1
            break
        v = target - w
        x = batches.next()
        g = FunctionalMetric(work, names, shapes, buffers, x, w, opts.metric, names_for_errors=arg_names)
        if x is not last_x:
            with torch.no_grad():
                out0 = torch.func.functional_call(work, (w0, buffers), (x,)).reshape(g.batch, -1)
            last_x = x
        resid = out0 - g.out.detach()
        drift = float((resid * resid).sum()) / g.batch
        u = None
        if restore > 0:
            # Gauss-Newton pull back towards the starting network's outputs:
            # with beta -> 0 the step is restore * g^{-1} Jᵀ H (f(w_0) - f(w)) / B
            u = g.vjp(g._hess(resid)) / g.batch
            if pruned is not None:
                u = u * (~pruned).to(u.dtype)  # compensate with the surviving weights only
        b_abs = 0.0
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
                lambda z: keep * g.matvec(keep * z), lin, eps=r0 * r0, beta=1.0, max_iter=opts.lanczos_iters,
                rtol=opts.lanczos_tol,
            )
            theta = t_p + keep * th_k
            quad_override = g.sq_norm(theta)
        else:
            radius = min(r0, dist)
            if opts.beta_absolute is not None:
                b_abs = opts.beta_absolute
            else:
                # beta in units of the metric along v: 2 ρ_v r / |v| is the weight whose
                # unconstrained step along v, on a metric equal to ρ_v, has length r
                rho = g.sq_norm(v) / (dist * dist)
                b_abs = beta * 2.0 * (rho if rho > 0 else 1.0) * radius / dist
            if u is not None:
                v = v + (2.0 * restore / b_abs) * u
            theta, info = trust_region_step(g.matvec, v, eps=radius * radius, beta=b_abs,
                                            max_iter=opts.lanczos_iters, rtol=opts.lanczos_tol)
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
                "step_length": math.sqrt(quad), "lam": info.lam, "beta": b_abs, "iterations": info.iterations,
                "residual": info.residual, "drift": drift, **totals, "time": time.perf_counter() - t0})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(distance=f"{dist:.3g}")
    if bar is not None:
        bar.close()
    path.reached = dist <= opts.tol * dist0 or dist == 0.0
    load_flat(work, names, w)
    return WalkState(work, names, arg_names, shapes, buffers, w, path, batches, totals, t0, step)


def end_with_projection(st: WalkState, project: Projection, opts: GeodesicOptions) -> GeodesicPath:
    """Project the last point exactly and append the ``kind="projection"`` row.

    The straight segment of the projection is charged to the lengths with the
    metric at the last point of the walk.
    """
    work, path, totals = st.work, st.path, st.totals
    w_final, _ = project(st.w)
    delta = w_final - st.w
    quad = 0.0
    if float(delta.norm()) > 0:
        g = FunctionalMetric(work, st.names, st.shapes, st.buffers, st.batches.next(), st.w, opts.metric,
                             names_for_errors=st.arg_names)
        quad = max(g.sq_norm(delta), 0.0)
    totals["path_length"] += math.sqrt(quad)
    totals["energy"] += quad
    totals["euclidean_length"] += float(delta.norm())
    load_flat(work, st.names, w_final)
    row = {"step": st.step + 1, "kind": "projection", "distance": 0.0, "step_norm": float(delta.norm()),
           "step_length": math.sqrt(quad), "lam": 0.0, **totals, "time": time.perf_counter() - st.t0}
    if opts.evaluate is not None:
        with torch.no_grad():
            row.update(as_metrics(opts.evaluate(work)))
    if opts.keep_every is not None:
        path.points.append((row["step"], w_final.clone()))
    path.history.append(row)
    return path


def end_at_last_point(st: WalkState, opts: GeodesicOptions) -> GeodesicPath:
    """Evaluate and keep the last point of the walk if the walk did not already."""
    work, path = st.work, st.path
    last = path.history[-1]
    if opts.evaluate is not None and last["step"] % opts.eval_every != 0:
        with torch.no_grad():
            last.update(as_metrics(opts.evaluate(work)))
    if opts.keep_every is not None and (not path.points or path.points[-1][0] != last["step"]):
        path.points.append((last["step"], st.w.clone()))
    return path
