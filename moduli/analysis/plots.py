"""Headless pictures (matplotlib's object API: no pyplot, no global backend change).

Every function returns a :class:`matplotlib.figure.Figure` and writes a PNG
when ``path`` is given (parent directories are created).
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Optional, Union

import numpy as np
import torch

from .. import manifolds as mf
from ._checks import check_int, to_numpy
from .graphs import GraphStats, weight_tensor
from .homology import PersistenceResult, _as_diagram

__all__ = [
    "plot_diagram", "plot_barcode", "plot_weight_heatmap", "plot_inhibitor_field",
    "plot_degree_histogram", "plot_edge_length_histogram", "chart",
]


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _save(fig, path: Optional[Union[str, os.PathLike]], dpi: int = 120):
    if path is not None:
        path = os.fspath(path)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def _diagrams(obj: Any) -> list:
    if isinstance(obj, PersistenceResult):
        return obj.diagrams
    if isinstance(obj, (list, tuple)):
        return [_as_diagram(d, f"diagrams[{k}]") for k, d in enumerate(obj)]
    raise TypeError(f"diagrams must be a PersistenceResult or a list of (n_pairs, 2) arrays; got "
                    f"{type(obj).__name__}")


_DIM_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]


def plot_diagram(diagrams: Any, *, path=None, title: Optional[str] = None):
    """Persistence diagram: one marker per (birth, death) pair, colour by dimension.

    Infinite deaths are drawn on a dashed line labelled ``inf`` above the finite ones.

    Parameters
    ----------
    diagrams : PersistenceResult or list of ndarray, each shape=[n_pairs, 2]
    path : str or PathLike, optional
        Write a PNG here.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from moduli import analysis
    >>> fig = analysis.plot_diagram([np.array([[0.0, 1.0], [0.0, np.inf]]), np.array([[0.5, 2.0]])])
    >>> type(fig).__name__, len(fig.axes)
    ('Figure', 1)
    """
    dgms = _diagrams(diagrams)
    fig = _figure((4.6, 4.4))
    ax = fig.add_subplot()
    finite = [d[np.isfinite(d)] for d in dgms if d.size]
    top = max((float(f.max()) for f in finite if f.size), default=1.0)
    top = top if top > 0 else 1.0
    inf_y = 1.08 * top
    for k, d in enumerate(dgms):
        if not d.size:
            continue
        death = np.where(np.isfinite(d[:, 1]), d[:, 1], inf_y)
        ax.scatter(d[:, 0], death, s=14, alpha=0.75, color=_DIM_COLORS[k % 5], label=f"H{k} ({len(d)})")
    ax.plot([0, inf_y], [0, inf_y], color="0.5", lw=0.8)
    ax.axhline(inf_y, color="0.4", ls="--", lw=0.8)
    ax.text(0.0, inf_y, " inf", va="bottom", fontsize=8, color="0.3")
    ax.set_xlim(-0.02 * top, inf_y * 1.02)
    ax.set_ylim(-0.02 * top, inf_y * 1.06)
    ax.set_xlabel("birth")
    ax.set_ylabel("death")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "persistence diagram")
    return _save(fig, path)


def plot_barcode(diagrams: Any, *, path=None, max_bars: int = 60, title: Optional[str] = None):
    """Barcode: one panel per dimension, the ``max_bars`` longest bars, longest on top.

    Returns
    -------
    matplotlib.figure.Figure
    """
    dgms = _diagrams(diagrams)
    max_bars = check_int(max_bars, "max_bars", 1)
    cap = diagrams.max_edge_length if isinstance(diagrams, PersistenceResult) else math.inf
    finite = [d[np.isfinite(d)] for d in dgms if d.size]
    top = max((float(f.max()) for f in finite if f.size), default=1.0) or 1.0
    right = min(1.08 * top, cap) if math.isfinite(cap) else 1.08 * top
    fig = _figure((6.0, 1.4 + 1.6 * len(dgms)))
    axes = fig.subplots(len(dgms), 1, sharex=True, squeeze=False)[:, 0]
    for k, (ax, d) in enumerate(zip(axes, dgms)):
        if d.size:
            life = np.minimum(d[:, 1], right) - d[:, 0]
            order = np.argsort(-life)[:max_bars]
            for row, i in enumerate(order):
                end = d[i, 1] if np.isfinite(d[i, 1]) else right
                ax.plot([d[i, 0], end], [row, row], color=_DIM_COLORS[k % 5], lw=2,
                        solid_capstyle="butt")
                if not np.isfinite(d[i, 1]):
                    ax.annotate("", xy=(right, row), xytext=(right * 0.97, row),
                                arrowprops=dict(arrowstyle="->", color=_DIM_COLORS[k % 5]))
            ax.set_ylim(len(order), -1)
            ax.set_title(f"H{k}: {len(order)} longest of {len(d)} bars", fontsize=9, loc="left")
        else:
            ax.set_title(f"H{k}: no bars", fontsize=9, loc="left")
        ax.set_yticks([])
    axes[-1].set_xlabel("filtration (edge length)")
    axes[-1].set_xlim(0, right * 1.01)
    fig.suptitle(title or "barcode")
    return _save(fig, path)


# ----------------------------------------------------------- manifold charts
def chart(manifold, points: torch.Tensor) -> tuple:
    """2-D or 3-D drawing coordinates of points on a space.

    Circle: the plane; 2-sphere: R^3; flat 2-torus and Klein bottle: the
    fundamental square; Euclidean (dim <= 3) and other spaces with at most 3
    coordinates: the coordinates; anything else: classical MDS of the
    geodesic distances (2-D).

    Returns
    -------
    coords : ndarray, shape=[n, 2] or [n, 3]
    labels : tuple of str
        Axis labels.
    square : float or None
        Side of the fundamental square, when the chart is one.
    """
    x = points.detach()
    if isinstance(manifold, mf.FlatTorus) and manifold.dim == 2:
        c = torch.remainder(x, manifold.period)
        return c.cpu().double().numpy(), ("x", "y"), manifold.period
    if isinstance(manifold, mf.KleinBottle):
        return manifold.canonical(x).cpu().double().numpy(), ("x", "y  (glide-glued at x=0~side)"), manifold.side
    if isinstance(manifold, mf.Sphere) and manifold.dim in (1, 2):
        lab = ("x", "y") if manifold.dim == 1 else ("x", "y", "z")
        return x.cpu().double().numpy(), lab, None
    if manifold is None or manifold.coord_dim <= 3:
        c = x.cpu().double().numpy()
        if c.shape[1] == 1:
            c = np.concatenate([c, np.zeros_like(c)], 1)
        return c, tuple(f"x{i + 1}" for i in range(c.shape[1])), None
    with torch.no_grad():
        D = manifold.cdist(x).cpu().double().numpy()
    n = D.shape[0]
    J = np.eye(n) - 1.0 / n
    B = -0.5 * J @ (D ** 2) @ J
    vals, vecs = np.linalg.eigh(B)
    top = np.argsort(vals)[::-1][:2]
    return vecs[:, top] * np.sqrt(np.maximum(vals[top], 0)), ("MDS 1", "MDS 2"), None


def _scatter(fig, spec, coords, values, labels, square, *, cmap, norm, center_idx, title, size=16):
    if coords.shape[1] == 3:
        ax = fig.add_subplot(spec, projection="3d")
        sc = ax.scatter(coords[:, 0], coords[:, 1], coords[:, 2], c=values, cmap=cmap, norm=norm, s=size,
                        depthshade=False)
        ax.scatter(*coords[center_idx], marker="*", s=180, color="k")
        ax.set_box_aspect((1, 1, 1))
        ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    else:
        ax = fig.add_subplot(spec)
        sc = ax.scatter(coords[:, 0], coords[:, 1], c=values, cmap=cmap, norm=norm, s=size)
        ax.scatter(*coords[center_idx], marker="*", s=180, color="k", zorder=3)
        ax.set_aspect("equal")
        if square is not None:
            ax.plot([0, square, square, 0, 0], [0, 0, square, square, 0], color="0.3", lw=0.8)
        ax.set_xlabel(labels[0], fontsize=8)
        ax.set_ylabel(labels[1], fontsize=8)
        ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    return ax, sc


def plot_weight_heatmap(weight: Any, points: Any, manifold=None, *, neuron: int = 0, direction: str = "in",
                        path=None, title: Optional[str] = None):
    """One neuron's weights drawn over the moduli space (the paper's Fig. 7).

    Parameters
    ----------
    weight : Tensor, shape=[n, n] (or module / prior term, see ``graphs.weight_tensor``)
    points : Tensor, shape=[n, coord_dim]
        Neuron positions on ``manifold``.
    manifold : Manifold, optional
        Chooses the chart (see :func:`chart`); Euclidean coordinates otherwise.
    neuron : int
        The neuron whose connections are drawn (black star).
    direction : {"in", "out"}
        ``"in"``: row ``W[neuron, :]`` (weights onto the neuron);
        ``"out"``: column ``W[:, neuron]`` (weights from it).
        Exact zeros (pruned weights) are drawn as small dots.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import TwoSlopeNorm

    W = to_numpy(weight_tensor(weight), "weight")
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"weight must be a square (n, n) matrix over one embedding; got shape {W.shape}")
    n = W.shape[0]
    if direction not in ("in", "out"):
        raise ValueError(f"direction must be 'in' or 'out'; got {direction!r}")
    neuron = check_int(neuron, "neuron", 0, n - 1)
    x = points if isinstance(points, torch.Tensor) else torch.as_tensor(to_numpy(points, "points"))
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"points must have shape ({n}, coord_dim) to match weight; got shape {tuple(x.shape)}")
    if manifold is not None:
        manifold.check_points(x, "points", ndim=2)
    values = W[neuron, :] if direction == "in" else W[:, neuron]
    if not np.isfinite(values).all():
        raise ValueError("weight contains NaN or infinite entries in the drawn row/column")
    coords, labels, square = chart(manifold, x)
    lim = float(np.abs(values).max()) or 1.0
    pruned = values == 0
    fig = _figure((5.2, 4.4))
    default = f"weights {'onto' if direction == 'in' else 'from'} neuron {neuron}"
    if pruned.any():
        default += f" ({int(pruned.sum())} of {n} zero: small dots)"
    ax, sc = _scatter(fig, 111, coords, values, labels, square, cmap="RdBu_r",
                      norm=TwoSlopeNorm(0.0, -lim, lim), center_idx=neuron,
                      title=title or default, size=np.where(pruned, 6.0, 30.0))
    fig.colorbar(sc, ax=ax, shrink=0.8, label="weight")
    return _save(fig, path)


def plot_inhibitor_field(inhibitors: Any, manifolds: Any, *, n: int = 600, neuron: int = 0, seed: int = 0,
                         path=None, title: Optional[str] = None):
    """Coefficients ``f(d(y, z))`` around one neuron ``y`` on each space (the paper's Fig. 6).

    Red: low coefficient (large weights allowed); blue: high.

    Parameters
    ----------
    inhibitors : callable f(d) -> Tensor, or dict name -> callable, or list of callables
        Any function of a distance tensor (an inhibitor of ``moduli.regularizers`` is one).
    manifolds : Manifold, or dict name -> Manifold, or list
        One row per space.
    n : int
        Uniform sample size per space.
    neuron : int
        Index of the fixed neuron in each sample.
    seed : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    def named(obj, what, check):
        if isinstance(obj, Mapping):
            items = list(obj.items())
        elif isinstance(obj, (list, tuple)):
            items = [(getattr(o, "__name__", None) or repr(o), o) for o in obj]
        else:
            items = [(getattr(obj, "__name__", None) or repr(obj), obj)]
        if not items:
            raise ValueError(f"{what} is empty")
        for name, o in items:
            check(name, o)
        return items

    def check_f(name, f):
        if not callable(f):
            raise TypeError(f"inhibitor {name!r} must be callable f(d) -> Tensor; got {type(f).__name__}")

    def check_m(name, m):
        if not (hasattr(m, "random_uniform") and hasattr(m, "cdist")):
            raise TypeError(f"manifold {name!r} must be a moduli.manifolds.Manifold; got {type(m).__name__}")

    fs = named(inhibitors, "inhibitors", check_f)
    ms = named(manifolds, "manifolds", check_m)
    n = check_int(n, "n", 2)
    neuron = check_int(neuron, "neuron", 0, n - 1)
    fig = _figure((3.3 * len(fs) + 0.6, 3.0 * len(ms)))
    grid = fig.add_gridspec(len(ms), len(fs))
    for r, (mname, M) in enumerate(ms):
        g = torch.Generator().manual_seed(seed + r)
        x = M.random_uniform(n, generator=g, dtype=torch.float64)
        with torch.no_grad():
            d = M.cdist(x[neuron:neuron + 1], x)[0]
        coords, labels, square = chart(M, x)
        for c, (fname, f) in enumerate(fs):
            with torch.no_grad():
                v = f(d)
            v = to_numpy(v, f"inhibitor {fname!r} output")
            if v.shape != (n,):
                v = np.broadcast_to(v, (n,)) if v.size == 1 else v
            if v.shape != (n,):
                raise ValueError(f"inhibitor {fname!r} must map distances of shape ({n},) to the same shape; "
                                 f"got {v.shape}")
            if not np.isfinite(v).all():
                raise ValueError(f"inhibitor {fname!r} returned NaN or infinite values on {mname!r}")
            ax, sc = _scatter(fig, grid[r, c], coords, v, labels, square, cmap="coolwarm_r", norm=None,
                              center_idx=neuron, title=f"{mname}: {fname}", size=10)
            fig.colorbar(sc, ax=ax, shrink=0.7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _stats(obj: Any) -> GraphStats:
    if not isinstance(obj, GraphStats):
        raise TypeError(f"stats must be the GraphStats returned by connectivity(); got {type(obj).__name__}")
    return obj


def plot_degree_histogram(stats: GraphStats, *, path=None, title: Optional[str] = None):
    """Histogram of node degrees, with the density-matched Erdős–Rényi expectation marked.

    Returns
    -------
    matplotlib.figure.Figure
    """
    s = _stats(stats)
    fig = _figure((5.0, 3.4))
    ax = fig.add_subplot()
    deg = s.degrees
    bins = np.arange(deg.min(), deg.max() + 2) - 0.5 if deg.max() - deg.min() < 60 else 40
    ax.hist(deg, bins=bins, color="tab:blue", alpha=0.8)
    ax.axvline(s.mean_degree, color="k", ls="--", lw=1, label=f"mean {s.mean_degree:.2f}")
    if not s.bipartite and s.n_nodes > 1:
        from scipy.stats import binom

        trials = (2 if s.directed else 1) * (s.n_nodes - 1)
        ks = np.arange(deg.min(), deg.max() + 1)
        width = 1.0 if isinstance(bins, np.ndarray) else (deg.max() - deg.min()) / 40 or 1.0
        ax.plot(ks, s.n_nodes * width * binom.pmf(ks, trials, s.density), color="tab:red", lw=1.2,
                label="Erdős–Rényi, same density")
    ax.set_xlabel("degree" + (" (in + out)" if s.directed else ""))
    ax.set_ylabel("nodes")
    ax.legend(fontsize=8)
    ax.set_title(title or f"degree distribution ({s.n_nodes} nodes, {s.n_edges} edges)", fontsize=10)
    return _save(fig, path)


def plot_edge_length_histogram(stats: GraphStats, *, path=None, title: Optional[str] = None):
    """Histogram of geodesic lengths of kept edges (needs ``points`` in :func:`connectivity`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    s = _stats(stats)
    if s.edge_lengths is None:
        raise ValueError("stats has no edge lengths: call connectivity(weight, points=..., manifold=...)")
    fig = _figure((5.0, 3.4))
    ax = fig.add_subplot()
    ax.hist(s.edge_lengths, bins=40, color="tab:green", alpha=0.8)
    if s.mean_edge_length is not None and math.isfinite(s.mean_edge_length):
        ax.axvline(s.mean_edge_length, color="k", ls="--", lw=1,
                   label=f"mean {s.mean_edge_length:.3g} (ratio to all pairs {s.edge_length_ratio:.3g})")
        ax.legend(fontsize=8)
    ax.set_xlabel("edge length (geodesic)")
    ax.set_ylabel("edges")
    ax.set_title(title or "lengths of kept edges", fontsize=10)
    return _save(fig, path)
