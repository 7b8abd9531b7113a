"""Distances between persistence diagrams, and diagrams as vectors (gudhi).

Every function takes a diagram as an ``(n_pairs, 2)`` array of (birth, death)
pairs or a :class:`~moduli.analysis.PersistenceResult` with ``dim=`` -- the
inputs :func:`~moduli.analysis.bottleneck_distance` accepts.

Distances
    :func:`wasserstein_distance` (gudhi's Hera engine, no extra dependency),
    and :func:`diagram_distance`, one entry point for the bottleneck and
    Wasserstein distances and for distances between the vectorisations below
    computed on a common grid.
Vectorisations
    :func:`landscape` (Bubenik's persistence landscapes), :func:`persistence_image`
    (Adams et al.), :func:`betti_curve`.

Bars that never die (``death = inf``) are matched only with each other by the
bottleneck and Wasserstein distances (a different number of them gives
``inf``). The vectorisations need finite bars: a :class:`PersistenceResult`
computed up to a finite ``max_edge_length`` has its infinite deaths capped
there (as in ``PersistenceResult.lifetimes``); otherwise ``infinity=None``
drops infinite bars and ``infinity=t`` sets their death to ``t``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np

from ._checks import check_int, check_nonnegative
from .homology import PersistenceResult, _as_diagram, bottleneck_distance

__all__ = [
    "DIAGRAM_METRICS", "wasserstein_distance", "landscape", "persistence_image", "betti_curve",
    "diagram_distance",
]

#: Names accepted by :func:`diagram_distance` (and ``rank_manifolds(metric=...)``).
DIAGRAM_METRICS = ("bottleneck", "wasserstein", "landscape", "image", "betti")


def _pick(x: Any, dim: Optional[int], name: str) -> Tuple[np.ndarray, float]:
    """The diagram behind ``x`` and the cap for its infinite deaths (inf: none)."""
    if isinstance(x, PersistenceResult):
        if dim is None:
            raise ValueError(f"{name} is a PersistenceResult: pass dim= to choose the dimension")
        check_int(dim, "dim", 0, x.maxdim)
        return np.asarray(x.diagrams[dim], dtype=np.float64).reshape(-1, 2), x.max_edge_length
    return _as_diagram(x, name).astype(np.float64, copy=False).reshape(-1, 2), math.inf


def _finite(x: Any, dim: Optional[int], name: str, infinity: Optional[float]) -> np.ndarray:
    """A diagram with finite deaths only: capped at max_edge_length / ``infinity``, or dropped."""
    d, cap = _pick(x, dim, name)
    if infinity is not None:
        cap = check_nonnegative(infinity, "infinity")
    if np.isinf(d[:, 0]).any():
        raise ValueError(f"{name} has pairs with infinite birth")
    inf = np.isinf(d[:, 1])
    if not inf.any():
        return d
    if math.isfinite(cap):
        d = d.copy()
        d[inf, 1] = np.maximum(cap, d[inf, 0])
        return d
    return d[~inf]


def _check_order(order: Any, name: str) -> float:
    q = check_nonnegative(order, name, allow_inf=True, positive=True)
    if q < 1:
        raise ValueError(f"{name} must be >= 1 (a Wasserstein/Minkowski exponent); got {q}")
    return q


# ------------------------------------------------------------------ distances
def wasserstein_distance(a: Any, b: Any, *, dim: Optional[int] = None, order: float = 1.0,
                         internal_p: float = math.inf, delta: float = 1e-4) -> float:
    """Wasserstein distance ``W_q`` between two persistence diagrams (gudhi's Hera).

    ``W_q(a, b) = (inf_m sum_{x} ||x - m(x)||_p^q)^(1/q)`` over matchings
    ``m`` that may send points to the diagonal, with the ``L^p`` ground norm
    ``internal_p`` in the (birth, death) plane. ``order=inf`` is the
    bottleneck distance.

    Parameters
    ----------
    a, b : array, shape=[n_pairs, 2], or PersistenceResult
        Diagrams; for results, ``dim`` selects the dimension.
    dim : int, optional
        Required when ``a``/``b`` are :class:`PersistenceResult`.
    order : float
        Exponent ``q >= 1`` (``inf``: bottleneck).
    internal_p : float
        Ground norm ``p >= 1`` (``inf``: the max norm, under which the
        distance of ``(b, d)`` to the diagonal is ``(d - b) / 2``).
    delta : float
        Relative error of Hera's auction algorithm: the result is within a
        factor ``1 + delta`` of the exact distance.

    Returns
    -------
    float
        ``inf`` when the diagrams have different numbers of infinite bars.

    Examples
    --------
    >>> from moduli import analysis
    >>> round(analysis.wasserstein_distance([[0.0, 4.0], [1.0, 1.2]], [[0.0, 4.5]]), 6)
    0.6
    """
    q = _check_order(order, "order")
    p = _check_order(internal_p, "internal_p")
    delta = check_nonnegative(delta, "delta", positive=True)
    if q == math.inf:
        if p != math.inf:
            raise ValueError("order=inf (the bottleneck distance) needs internal_p=inf")
        return bottleneck_distance(a, b, dim=dim)
    import gudhi.hera

    da, _ = _pick(a, dim, "a")
    db, _ = _pick(b, dim, "b")
    if len(da) == 0 and len(db) == 0:
        return 0.0
    return float(gudhi.hera.wasserstein_distance(da, db, order=q, internal_p=p, delta=delta))


# ------------------------------------------------------------- vectorisations
def _range(diagrams: Sequence[np.ndarray], sample_range) -> Tuple[float, float]:
    if sample_range is not None:
        try:
            lo, hi = (float(v) for v in sample_range)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"sample_range must be a pair (min, max) of numbers; got {sample_range!r}") from exc
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"sample_range must be finite with min < max; got {sample_range!r}")
        return lo, hi
    pts = np.concatenate([d.ravel() for d in diagrams]) if diagrams else np.zeros(0)
    pts = pts[np.isfinite(pts)]
    if pts.size == 0:
        return 0.0, 1.0
    lo, hi = float(pts.min()), float(pts.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def landscape(d: Any, *, dim: Optional[int] = None, num_landscapes: int = 5, resolution: int = 100,
              sample_range: Optional[Sequence[float]] = None,
              infinity: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Persistence landscapes (Bubenik 2015) sampled on a regular grid.

    ``lambda_k(t)`` is the ``k``-th largest value of the tent functions
    ``max(0, min(t - birth, death - t))`` over the bars (0 when there are
    fewer than ``k`` bars). Computed with ``gudhi.representations.Landscape``,
    whose values are ``sqrt(2)`` times these (it works in rotated coordinates);
    the factor is divided out.

    Parameters
    ----------
    d : array, shape=[n_pairs, 2], or PersistenceResult
    dim : int, optional
        Dimension, when ``d`` is a :class:`PersistenceResult`.
    num_landscapes : int
        Landscapes ``k = 1 .. num_landscapes``.
    resolution : int
        Grid points (at least 2).
    sample_range : (float, float), optional
        Grid ends; default the smallest birth and largest finite death. Pass
        the same range to compare several diagrams.
    infinity : float, optional
        Death given to bars that never die (default: dropped; see the module docs).

    Returns
    -------
    grid : ndarray, shape=[resolution]
    values : ndarray, shape=[num_landscapes, resolution]

    Examples
    --------
    >>> from moduli import analysis
    >>> t, lam = analysis.landscape([[0.0, 2.0], [1.0, 2.0]], num_landscapes=2, resolution=5,
    ...                             sample_range=(0.0, 2.0))
    >>> t.tolist(), lam.round(6).tolist()
    ([0.0, 0.5, 1.0, 1.5, 2.0], [[0.0, 0.5, 1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.5, 0.0]])
    """
    from gudhi.representations import Landscape

    k = check_int(num_landscapes, "num_landscapes", 1)
    res = check_int(resolution, "resolution", 2)
    dg = _finite(d, dim, "d", infinity)
    lo, hi = _range([dg], sample_range)
    grid = np.linspace(lo, hi, res)
    if len(dg) == 0:
        return grid, np.zeros((k, res))
    vals = Landscape(num_landscapes=k, resolution=res, sample_range=[lo, hi]).fit_transform([dg])[0]
    return grid, vals.reshape(k, res) / math.sqrt(2.0)


def _persistence_weight(weight) -> Callable:
    if callable(weight):
        return weight
    if weight == "persistence":
        return lambda bp: bp[1]
    if weight == "uniform":
        return lambda bp: 1.0
    raise ValueError(f"weight must be 'persistence', 'uniform' or a callable (birth, persistence) -> float; "
                     f"got {weight!r}")


def persistence_image(d: Any, *, dim: Optional[int] = None, resolution: Tuple[int, int] = (20, 20),
                      bandwidth: Optional[float] = None, weight: Union[str, Callable] = "persistence",
                      im_range: Optional[Sequence[float]] = None,
                      infinity: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Persistence image (Adams et al. 2017) on a (birth, persistence) grid.

    Each bar becomes the point ``(birth, death - birth)``; the image is the
    sum over bars of ``weight * N((birth, persistence), bandwidth^2 I)``, the
    Gaussian density evaluated at the pixel centres
    (``gudhi.representations.PersistenceImage``).

    Parameters
    ----------
    d : array, shape=[n_pairs, 2], or PersistenceResult
    dim : int, optional
        Dimension, when ``d`` is a :class:`PersistenceResult`.
    resolution : (int, int)
        Pixels along birth and along persistence.
    bandwidth : float, optional
        Standard deviation of the Gaussians; default a tenth of the largest
        persistence (1 for an empty diagram).
    weight : "persistence", "uniform" or callable
        Weight of a bar: its persistence (the default, which makes the image
        continuous in the diagram: bars near the diagonal fade out), 1, or
        ``weight(np.array([birth, persistence]))``.
    im_range : (b_min, b_max, p_min, p_max), optional
        Pixel-centre ranges; default the diagram's birth range and
        ``[0, max persistence]``. Pass the same range to compare diagrams.
    infinity : float, optional
        Death given to bars that never die (default: dropped).

    Returns
    -------
    births : ndarray, shape=[resolution[0]]
    persistences : ndarray, shape=[resolution[1]]
    image : ndarray, shape=[resolution[1], resolution[0]]
        ``image[i, j]`` at persistence ``persistences[i]`` and birth ``births[j]``.

    Examples
    --------
    >>> from moduli import analysis
    >>> b, p, img = analysis.persistence_image([[0.0, 1.0]], resolution=(3, 3), bandwidth=0.5,
    ...                                        im_range=(-1.0, 1.0, 0.0, 2.0))
    >>> img.shape, int(img.argmax()), round(float(img.max()), 4)   # peak at birth 0, persistence 1
    ((3, 3), 4, 0.6366)
    """
    from gudhi.representations import PersistenceImage

    if not (isinstance(resolution, (tuple, list)) and len(resolution) == 2):
        raise TypeError(f"resolution must be a pair (n_birth, n_persistence); got {resolution!r}")
    rb = check_int(resolution[0], "resolution[0]", 1)
    rp = check_int(resolution[1], "resolution[1]", 1)
    w = _persistence_weight(weight)
    dg = _finite(d, dim, "d", infinity)
    pers = dg[:, 1] - dg[:, 0]
    if im_range is None:
        b_lo, b_hi = _range([dg[:, :1]], None)
        p_hi = float(pers.max()) if len(pers) and pers.max() > 0 else 1.0
        rng = (b_lo, b_hi, 0.0, p_hi)
    else:
        try:
            rng = tuple(float(v) for v in im_range)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"im_range must be four numbers (b_min, b_max, p_min, p_max); got {im_range!r}") from exc
        if len(rng) != 4 or not all(math.isfinite(v) for v in rng) or rng[0] > rng[1] or rng[2] > rng[3]:
            raise ValueError(f"im_range must be four finite numbers with b_min <= b_max, p_min <= p_max; "
                             f"got {im_range!r}")
    if bandwidth is None:
        bw = 0.1 * float(pers.max()) if len(pers) and pers.max() > 0 else 1.0
    else:
        bw = check_nonnegative(bandwidth, "bandwidth", positive=True)
    births = np.linspace(rng[0], rng[1], rb)
    persistences = np.linspace(rng[2], rng[3], rp)
    if len(dg) == 0:
        return births, persistences, np.zeros((rp, rb))
    img = PersistenceImage(bandwidth=bw, weight=w, resolution=[rb, rp], im_range=list(rng)).fit_transform([dg])[0]
    return births, persistences, img.reshape(rp, rb)


def betti_curve(d: Any, *, dim: Optional[int] = None, grid: Optional[Sequence[float]] = None,
                resolution: int = 100, sample_range: Optional[Sequence[float]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Betti curve: the number of bars alive at each scale.

    ``beta(t) = #{bars with birth <= t < death}``
    (``gudhi.representations.BettiCurve`` on a given grid). Bars that never
    die count at every ``t >= birth``.

    Parameters
    ----------
    d : array, shape=[n_pairs, 2], or PersistenceResult
    dim : int, optional
        Dimension, when ``d`` is a :class:`PersistenceResult`.
    grid : sequence of float, optional
        Increasing scales to evaluate at; overrides ``resolution`` and ``sample_range``.
    resolution : int
        Grid points when ``grid`` is not given.
    sample_range : (float, float), optional
        Grid ends; default the smallest birth and the largest finite death.

    Returns
    -------
    grid : ndarray, shape=[n_grid]
    counts : ndarray of int, shape=[n_grid]

    Examples
    --------
    >>> from moduli import analysis
    >>> t, b = analysis.betti_curve([[1.0, 3.0], [2.0, float("inf")]], grid=[0, 1, 2, 3, 4])
    >>> b.tolist()
    [0, 1, 2, 1, 1]
    """
    from gudhi.representations import BettiCurve

    dg, _ = _pick(d, dim, "d")
    if grid is not None:
        g = np.asarray(grid, dtype=np.float64).ravel()
        if g.size == 0 or not np.isfinite(g).all() or (np.diff(g) <= 0).any():
            raise ValueError("grid must be a non-empty, finite, strictly increasing sequence")
    else:
        res = check_int(resolution, "resolution", 2)
        lo, hi = _range([dg], sample_range)
        g = np.linspace(lo, hi, res)
    if len(dg) == 0:
        return g, np.zeros(len(g), dtype=np.int64)
    counts = BettiCurve(predefined_grid=g).fit_transform([dg])[0]
    return g, np.rint(counts).astype(np.int64)


# --------------------------------------------------------- one entry point
def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(0.5 * (y[..., 1:] + y[..., :-1]) * np.diff(x)))


def diagram_distance(a: Any, b: Any, *, metric: Union[str, Callable] = "bottleneck",
                     dim: Optional[int] = None, **options) -> float:
    """Distance between two persistence diagrams, by name.

    ========================  ==================================================================
    ``metric``                distance
    ========================  ==================================================================
    ``"bottleneck"``          :func:`~moduli.analysis.bottleneck_distance`
    ``"wasserstein"``         :func:`wasserstein_distance` (options ``order``, ``internal_p``, ``delta``)
    ``"landscape"``           ``(sum_k int |lambda_k^a - lambda_k^b|^p dt)^(1/p)``, trapezoid rule on
                              a grid over both diagrams' range (options ``p=2``,
                              ``num_landscapes=5``, ``resolution=200``, ``infinity``)
    ``"image"``               Euclidean norm of the difference of the persistence images on a
                              common range (options ``resolution=(20, 20)``, ``bandwidth``
                              (default a tenth of the larger largest persistence), ``weight``,
                              ``infinity``)
    ``"betti"``               ``int |beta^a(t) - beta^b(t)| dt`` from the smallest birth to the
                              largest finite death of both (exact: the curves are step functions)
    callable                  ``metric(diagram_a, diagram_b, **options)`` on the two arrays
    ========================  ==================================================================

    Parameters
    ----------
    a, b : array, shape=[n_pairs, 2], or PersistenceResult
    metric : str or callable
        One of :data:`DIAGRAM_METRICS`, or a function of two ``(n, 2)`` arrays.
    dim : int, optional
        Required when ``a``/``b`` are :class:`PersistenceResult`.
    **options
        Passed to the chosen distance (see the table).

    Returns
    -------
    float

    Examples
    --------
    >>> from moduli import analysis
    >>> a, b = [[0.0, 4.0], [1.0, 1.2]], [[0.0, 4.5]]
    >>> [round(analysis.diagram_distance(a, b, metric=m), 4) for m in ("bottleneck", "wasserstein", "betti")]
    [0.5, 0.6, 0.7]
    """
    if callable(metric):
        da, _ = _pick(a, dim, "a")
        db, _ = _pick(b, dim, "b")
        return float(metric(da, db, **options))
    if metric not in DIAGRAM_METRICS:
        raise ValueError(f"metric must be one of {list(DIAGRAM_METRICS)} or a callable; got {metric!r}")

    def known(allowed):
        bad = sorted(set(options) - set(allowed))
        if bad:
            raise TypeError(f"metric={metric!r} takes options {sorted(allowed)}; got unexpected {bad}")

    if metric == "bottleneck":
        known(())
        return bottleneck_distance(a, b, dim=dim)
    if metric == "wasserstein":
        known(("order", "internal_p", "delta"))
        return wasserstein_distance(a, b, dim=dim, **options)
    if metric == "betti":
        known(())
        da, _ = _pick(a, dim, "a")
        db, _ = _pick(b, dim, "b")
        # Betti curves are step functions, constant between consecutive bar ends: evaluated at
        # every end (left values, births included), the integral is exact.
        ends = np.concatenate([da.ravel(), db.ravel()])
        g = np.unique(ends[np.isfinite(ends)])
        if len(g) < 2:
            return 0.0
        ba = betti_curve(da, grid=g)[1]
        bb = betti_curve(db, grid=g)[1]
        return float(np.sum(np.abs(ba - bb)[:-1] * np.diff(g)))
    if metric == "landscape":
        known(("p", "num_landscapes", "resolution", "infinity"))
        p = _check_order(options.get("p", 2.0), "p")
        k = check_int(options.get("num_landscapes", 5), "num_landscapes", 1)
        res = check_int(options.get("resolution", 200), "resolution", 2)
        inf = options.get("infinity")
        da = _finite(a, dim, "a", inf)
        db = _finite(b, dim, "b", inf)
        rng = _range([da, db], None)
        t, la = landscape(da, num_landscapes=k, resolution=res, sample_range=rng)
        _, lb = landscape(db, num_landscapes=k, resolution=res, sample_range=rng)
        diff = np.abs(la - lb)
        if p == math.inf:
            return float(diff.max())
        return _trapezoid(diff ** p, t) ** (1.0 / p)
    # image
    known(("resolution", "bandwidth", "weight", "infinity"))
    inf = options.get("infinity")
    da = _finite(a, dim, "a", inf)
    db = _finite(b, dim, "b", inf)
    both = np.concatenate([da, db])
    pers = both[:, 1] - both[:, 0]
    p_hi = float(pers.max()) if len(pers) and pers.max() > 0 else 1.0
    b_lo, b_hi = _range([both[:, :1]], None)
    rng = (b_lo, b_hi, 0.0, p_hi)
    kw = dict(resolution=options.get("resolution", (20, 20)), im_range=rng,
              bandwidth=options.get("bandwidth", 0.1 * p_hi), weight=options.get("weight", "persistence"))
    ia = persistence_image(da, **kw)[2]
    ib = persistence_image(db, **kw)[2]
    return float(np.linalg.norm(ia - ib))
