"""Vietoris–Rips persistent homology of point clouds on a moduli space (gudhi).

The filtration is by edge length: the complex at scale ``r`` holds every
simplex whose vertices are pairwise at distance ``<= r``. Distances come from
``manifold.cdist`` (geodesic), from the Euclidean metric when no manifold is
given, or from a precomputed matrix.

Three ways to compute, chosen by two orthogonal knobs:

``sparse=None``
    Exact Rips persistence with gudhi's Ripser-based engine
    (``gudhi.sklearn.RipsPersistence``; for ``maxdim >= 2`` it first applies
    one round of edge collapse, which preserves the diagrams exactly).
``sparse=eps``
    gudhi's sparse Rips complex (Sheehy's construction as implemented in
    gudhi): far fewer simplices; its diagram is a multiplicative
    ``(1 + O(eps))`` approximation of the Rips diagram (bottleneck distance on
    a log scale) -- long bars survive, short ones may move or vanish.
``n_landmarks=k``
    Greedy max–min (farthest point) subsampling to ``k`` points first. If the
    landmarks cover every point within ``eps_cov`` (``covering_radius``), the
    bottleneck distance to the full cloud's Rips diagram is at most
    ``2 * eps_cov`` (stability of Rips persistence under Gromov–Hausdorff
    distance); that bound is reported as ``error_bound``.

``sparse="auto"`` (the default) is exact up to :data:`EXACT_LIMIT` points for
the requested ``maxdim`` and ``sparse=0.5`` above it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from ._checks import as_numpy_2d, check_int, check_nonnegative, check_prime, to_numpy

__all__ = [
    "EXACT_LIMIT", "PersistenceResult", "persistence", "pairwise_distances", "maxmin_landmarks",
    "bottleneck_distance", "ManifoldFit", "rank_manifolds",
]

#: Largest point count computed exactly under ``sparse="auto"``, by ``maxdim``
#: (``benchmarks/bench_analysis.py`` on a loaded 2-core machine: 1000 points to H1 in 19-20 s,
#: 400 points to H2 in 7-13 s; sparse Rips is 3-23x faster at these sizes).
EXACT_LIMIT = {0: 20000, 1: 1000, 2: 400}
_EXACT_LIMIT_HIGH = 120  # maxdim >= 3
_AUTO_SPARSE = 0.5


def _exact_limit(maxdim: int) -> int:
    return EXACT_LIMIT.get(maxdim, _EXACT_LIMIT_HIGH)


@dataclass
class PersistenceResult:
    """Persistence diagrams of a Rips filtration.

    Attributes
    ----------
    diagrams : list of ndarray, each shape=[n_pairs, 2]
        ``diagrams[k]`` holds the (birth, death) pairs of dimension ``k`` for
        ``k = 0 .. maxdim``; deaths may be ``inf`` (the essential H0 class, and
        classes still alive at ``max_edge_length``).
    maxdim : int
        Highest homology dimension computed.
    coeff : int
        Prime ``p``: homology with coefficients in the field Z/p.
    max_edge_length : float
        Filtration cut-off (``inf`` when the whole filtration was computed).
    sparse : float or None
        Sparse-Rips approximation parameter used (``None``: exact Rips).
    landmarks : ndarray of int or None, shape=[n_landmarks]
        Indices of the points kept by max–min subsampling (``None``: all points).
    covering_radius : float
        Largest distance from a point to its nearest landmark (0 without subsampling).
    n_points : int
        Number of points in the input.
    """

    diagrams: list
    maxdim: int
    coeff: int
    max_edge_length: float = math.inf
    sparse: Optional[float] = None
    landmarks: Optional[np.ndarray] = None
    covering_radius: float = 0.0
    n_points: int = 0

    @property
    def error_bound(self) -> float:
        """Bottleneck bound from subsampling: ``2 * covering_radius`` (0 when exact).

        It does not include the (multiplicative) sparse-Rips approximation.
        """
        return 2.0 * self.covering_radius

    @property
    def method(self) -> str:
        """Short description of how the diagrams were computed."""
        parts = ["sparse Rips (eps=%g)" % self.sparse if self.sparse is not None else "exact Rips"]
        if self.landmarks is not None:
            parts.append(f"on {len(self.landmarks)} max-min landmarks of {self.n_points} "
                         f"(covering radius {self.covering_radius:.4g})")
        if math.isfinite(self.max_edge_length):
            parts.append(f"up to edge length {self.max_edge_length:.4g}")
        return ", ".join(parts) + f", coefficients Z/{self.coeff}"

    def lifetimes(self, dim: int) -> np.ndarray:
        """Bar lengths ``death - birth`` of dimension ``dim``, deaths capped at ``max_edge_length``.

        Returns
        -------
        ndarray, shape=[n_pairs]
            ``inf`` only for classes that never die in an untruncated filtration.
        """
        dim = check_int(dim, "dim", 0, self.maxdim)
        d = self.diagrams[dim]
        if d.size == 0:
            return np.zeros(0)
        death = np.minimum(d[:, 1], self.max_edge_length)
        return death - d[:, 0]

    def betti(self, min_persistence: float = 0.0) -> list:
        """Betti numbers: bars longer than ``min_persistence``, dimension 0 upward.

        Parameters
        ----------
        min_persistence : float
            A bar counts when ``death - birth > min_persistence``. With a finite
            ``max_edge_length``, deaths are capped at it, so a class born just
            below the cut-off does not count as essential.

        Returns
        -------
        list of int, length maxdim + 1
        """
        m = check_nonnegative(min_persistence, "min_persistence", allow_inf=False)
        return [int((self.lifetimes(k) > m).sum()) for k in range(self.maxdim + 1)]

    def __repr__(self) -> str:
        counts = ", ".join(f"H{k}: {len(d)} bars" for k, d in enumerate(self.diagrams))
        return f"PersistenceResult({counts}; {self.method})"


# --------------------------------------------------------------------- helpers
def pairwise_distances(X: Any, *, manifold=None, distance_matrix: bool = False,
                       name: str = "X") -> np.ndarray:
    """Distance matrix of a point cloud, as float64 numpy.

    Parameters
    ----------
    X : Tensor or array, shape=[n, coord_dim] or [n, n]
        Points, or a distance matrix when ``distance_matrix=True``.
    manifold : moduli.manifolds.Manifold, optional
        Geodesic distances via ``manifold.cdist``; Euclidean when omitted.
    distance_matrix : bool
        ``X`` is already a symmetric, non-negative matrix with zero diagonal.

    Returns
    -------
    ndarray, shape=[n, n]
    """
    if distance_matrix:
        if manifold is not None:
            raise ValueError("pass either distance_matrix=True or a manifold, not both "
                             "(a distance matrix already fixes the metric)")
        D = as_numpy_2d(X, name, square=True)
        if (D < 0).any():
            raise ValueError(f"{name} is a distance matrix of shape {D.shape} but has "
                             f"{int((D < 0).sum())} negative entries")
        scale = max(float(np.abs(D).max()), 1.0)
        if not np.allclose(D, D.T, rtol=1e-6, atol=1e-9 * scale):
            raise ValueError(f"{name} is a distance matrix of shape {D.shape} but is not symmetric "
                             f"(max |D - D.T| = {float(np.abs(D - D.T).max()):.3g})")
        if np.abs(np.diag(D)).max() > 1e-9 * scale:
            raise ValueError(f"{name} is a distance matrix of shape {D.shape} but its diagonal is not zero")
        return _symmetrized(D)
    if manifold is not None:
        if not hasattr(manifold, "cdist"):
            raise TypeError(f"manifold must be a moduli.manifolds.Manifold (with cdist); got "
                            f"{type(manifold).__name__}")
        x = X if isinstance(X, torch.Tensor) else torch.as_tensor(to_numpy(X, name))
        if x.ndim != 2:
            raise ValueError(f"{name} must have shape (n, {manifold.coord_dim}); got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} must contain at least one point; got shape {tuple(x.shape)}")
        with torch.no_grad():
            D = manifold.cdist(x.detach()).to("cpu", torch.float64).numpy()
        return _symmetrized(D)
    from scipy.spatial.distance import cdist

    P = as_numpy_2d(X, name)
    return _symmetrized(cdist(P, P))  # direct differences: no cancellation far from the origin


def _symmetrized(D: np.ndarray) -> np.ndarray:
    # Ripser-type engines assume D[i, j] == D[j, i] bit for bit: rounding-level
    # asymmetry (1e-15, e.g. from a quotient metric's closed form) silently
    # destroyed the Klein bottle's long H1 bars in our tests. Average it away.
    D = 0.5 * (D + D.T)
    np.fill_diagonal(D, 0.0)
    return D


def maxmin_landmarks(D: np.ndarray, k: int, *, start: int = 0) -> tuple:
    """Greedy farthest-point (max–min) subsampling from a distance matrix.

    Parameters
    ----------
    D : ndarray, shape=[n, n]
    k : int
        Number of landmarks (capped at ``n``).
    start : int
        First landmark.

    Returns
    -------
    indices : ndarray of int, shape=[min(k, n)]
    covering_radius : float
        ``max_i min_l D[i, l]``: every point is within this of a landmark.
    """
    n = D.shape[0]
    k = min(check_int(k, "n_landmarks", 1), n)
    start = check_int(start, "start", 0, n - 1)
    idx = np.empty(k, dtype=np.int64)
    idx[0] = start
    mind = D[start].copy()
    for i in range(1, k):
        nxt = int(np.argmax(mind))
        idx[i] = nxt
        np.minimum(mind, D[nxt], out=mind)
    return idx, float(mind.max()) if k < n else 0.0


def _rips_exact(D: np.ndarray, maxdim: int, coeff: int, thresh: float) -> list:
    from gudhi.sklearn.rips_persistence import RipsPersistence

    rp = RipsPersistence(homology_dimensions=list(range(maxdim + 1)), threshold=thresh,
                         input_type="full distance matrix", homology_coeff_field=coeff)
    dgms = rp.fit_transform([D])[0]
    return [np.asarray(d, dtype=np.float64).reshape(-1, 2) for d in dgms]


def _rips_sparse(D: np.ndarray, maxdim: int, coeff: int, thresh: float, eps: float, seed: int) -> list:
    import gudhi
    import gudhi.random

    gudhi.random.set_seed(seed)
    rc = gudhi.RipsComplex(distance_matrix=D, max_edge_length=thresh, sparse=eps)
    st = rc.create_simplex_tree(max_dimension=maxdim + 1)
    st.compute_persistence(homology_coeff_field=coeff, persistence_dim_max=True)
    return [np.asarray(st.persistence_intervals_in_dimension(k), dtype=np.float64).reshape(-1, 2)
            for k in range(maxdim + 1)]


# ------------------------------------------------------------------ the entry
def persistence(
    X: Any,
    *,
    manifold=None,
    maxdim: int = 1,
    coeff: int = 2,
    distance_matrix: bool = False,
    max_edge_length: float = math.inf,
    sparse: Union[str, float, None] = "auto",
    n_landmarks: Optional[int] = None,
    seed: int = 0,
) -> PersistenceResult:
    """Vietoris–Rips persistent homology of a point cloud.

    Parameters
    ----------
    X : Tensor or array, shape=[n, coord_dim] (or [n, n] with ``distance_matrix=True``)
        Points of ``manifold`` (or of R^d), or a precomputed distance matrix.
    manifold : moduli.manifolds.Manifold, optional
        Space whose geodesic ``cdist`` gives the distances; Euclidean if omitted.
    maxdim : int
        Highest homology dimension (0, 1, 2, ...).
    coeff : int
        Prime p of the coefficient field Z/p (the Klein bottle has beta1 = 2 over
        Z/2 and 1 over Z/3).
    distance_matrix : bool
        Treat ``X`` as a symmetric, non-negative distance matrix.
    max_edge_length : float
        Stop the filtration here (classes alive then get death ``inf``).
    sparse : "auto", float in (0, 1) or None
        Sparse-Rips parameter; ``None`` is exact, ``"auto"`` is exact up to
        ``EXACT_LIMIT[maxdim]`` points and 0.5 above.
    n_landmarks : int, optional
        Subsample to this many max–min landmarks first (see ``error_bound``).
    seed : int
        Seed of gudhi's sparse-Rips construction.

    Returns
    -------
    PersistenceResult
        ``.diagrams[k]`` (n_pairs, 2) arrays for k = 0..maxdim; ``.betti(m)``.

    Examples
    --------
    >>> import torch
    >>> from moduli import manifolds as mf, analysis
    >>> C = mf.Circle(5.0)
    >>> x = C.random_uniform(60, generator=torch.Generator().manual_seed(0))
    >>> analysis.persistence(x, manifold=C, maxdim=1).betti(min_persistence=2.0)
    [1, 1]
    """
    maxdim = check_int(maxdim, "maxdim", 0)
    coeff = check_prime(coeff, "coeff")
    thresh = check_nonnegative(max_edge_length, "max_edge_length", allow_inf=True, positive=True)
    seed = check_int(seed, "seed", 0)
    if not isinstance(distance_matrix, bool):
        raise TypeError(f"distance_matrix must be a bool; got {type(distance_matrix).__name__}")
    if isinstance(sparse, str):
        if sparse != "auto":
            raise ValueError(f"sparse must be 'auto', None or a float in (0, 1); got {sparse!r}")
        eps = None
    elif sparse is None:
        eps = None
    else:
        eps = check_nonnegative(sparse, "sparse", positive=True)
        if eps >= 1:
            raise ValueError(f"sparse must be in (0, 1); got {eps}")
    if n_landmarks is not None:
        check_int(n_landmarks, "n_landmarks", 1)
    D = pairwise_distances(X, manifold=manifold, distance_matrix=distance_matrix)
    n = D.shape[0]
    landmarks, cover = None, 0.0
    if n_landmarks is not None:
        k = check_int(n_landmarks, "n_landmarks", 1)
        if k < n:
            landmarks, cover = maxmin_landmarks(D, k)
            D = np.ascontiguousarray(D[np.ix_(landmarks, landmarks)])
    m = D.shape[0]
    if isinstance(sparse, str):  # "auto", validated above
        eps = None if m <= _exact_limit(maxdim) else _AUTO_SPARSE
    if eps is None:
        dgms = _rips_exact(D, maxdim, coeff, thresh)
    else:
        dgms = _rips_sparse(D, maxdim, coeff, thresh, eps, seed)
    while len(dgms) < maxdim + 1:
        dgms.append(np.zeros((0, 2)))
    for k, d in enumerate(dgms):
        order = np.lexsort((d[:, 1], d[:, 0])) if len(d) else np.zeros(0, dtype=int)
        dgms[k] = d[order]
    return PersistenceResult(diagrams=dgms, maxdim=maxdim, coeff=coeff, max_edge_length=thresh,
                             sparse=eps, landmarks=landmarks, covering_radius=cover, n_points=n)


# ------------------------------------------------------------ comparing clouds
def _as_diagram(d: Any, name: str) -> np.ndarray:
    arr = to_numpy(d, name)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be a diagram of shape (n_pairs, 2); got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} of shape {arr.shape} contains NaN")
    if (arr[:, 1] < arr[:, 0]).any():
        raise ValueError(f"{name} has pairs with death < birth")
    return arr


def bottleneck_distance(a: Any, b: Any, *, dim: Optional[int] = None) -> float:
    """Bottleneck distance between two persistence diagrams (gudhi).

    Parameters
    ----------
    a, b : array, shape=[n_pairs, 2], or PersistenceResult
        Diagrams; for results, ``dim`` selects the dimension.
    dim : int, optional
        Required when ``a``/``b`` are :class:`PersistenceResult`.

    Returns
    -------
    float
        ``inf`` when the diagrams have different numbers of infinite bars.

    Examples
    --------
    >>> from moduli import analysis
    >>> analysis.bottleneck_distance([[0.0, 4.0], [1.0, 1.2]], [[0.0, 4.5]])
    0.5
    """
    import gudhi

    def pick(x, name):
        if isinstance(x, PersistenceResult):
            if dim is None:
                raise ValueError(f"{name} is a PersistenceResult: pass dim= to choose the dimension")
            check_int(dim, "dim", 0, x.maxdim)
            return x.diagrams[dim]
        return _as_diagram(x, name)

    return float(gudhi.bottleneck_distance(pick(a, "a"), pick(b, "b")))


@dataclass
class ManifoldFit:
    """How well one candidate space matches a point cloud (lower is better).

    Attributes
    ----------
    name : str
    score : float
        Sum over ``dims`` of the mean diagram distance (``metric``) to the references.
    per_dim : dict
        ``{k: mean diagram distance in dimension k}``.
    betti : list of int
        Betti numbers of the first reference sample, counting bars longer than
        0.25 mean pairwise distances (for reading the table).
    """

    name: str
    score: float
    per_dim: dict = field(default_factory=dict)
    betti: list = field(default_factory=list)
    metric: str = "bottleneck"


def _normalized(D: np.ndarray) -> np.ndarray:
    n = D.shape[0]
    mean = D.sum() / max(n * (n - 1), 1)
    if not mean > 0:
        raise ValueError("the point cloud has all pairwise distances zero; nothing to compare")
    return D / mean


def rank_manifolds(
    X: Any,
    candidates: Union[Mapping[str, Any], Sequence[Any]],
    *,
    manifold=None,
    distance_matrix: bool = False,
    maxdim: int = 1,
    coeff: int = 2,
    dims: Optional[Sequence[int]] = None,
    n_points: int = 300,
    n_reference: int = 2,
    seed: int = 0,
    progress: bool = False,
    metric: Any = "bottleneck",
    metric_options: Optional[Mapping[str, Any]] = None,
) -> list:
    """Rank candidate moduli spaces by how well their topology matches ``X``.

    Both the data and ``n_reference`` uniform samples of each candidate (same
    number of points) are reduced to ``n_points`` max–min landmarks, their
    distance matrices are divided by their mean pairwise distance (so scale
    does not matter), and Rips diagrams are compared by ``metric`` (default
    the bottleneck distance) in each dimension of ``dims``.

    Parameters
    ----------
    X : Tensor or array, shape=[n, d] or [n, n]
        Learned embedding, hidden activity, or a distance matrix.
    candidates : dict name -> Manifold, or list of Manifold
    manifold, distance_matrix :
        How to measure distances in ``X`` (as in :func:`persistence`).
    maxdim, coeff : int
        As in :func:`persistence`.
    dims : sequence of int, optional
        Dimensions compared; default ``1..maxdim`` (H0 mostly reflects density).
    n_points : int
        Landmarks per cloud.
    n_reference : int
        Reference samples per candidate (the score is their mean).
    seed : int
        Seeds the reference samples.
    progress : bool
        Show a tqdm bar over candidates.
    metric : str or callable
        Diagram distance: one of :data:`~moduli.analysis.DIAGRAM_METRICS`
        (``"bottleneck"``, ``"wasserstein"``, ``"landscape"``, ``"image"``,
        ``"betti"``) or ``f(diagram_a, diagram_b) -> float``; see
        :func:`~moduli.analysis.diagram_distance`.
    metric_options : dict, optional
        Keyword options of that distance (e.g. ``{"order": 2}``).

    Returns
    -------
    list of ManifoldFit
        Sorted best first.
    """
    from .diagrams import DIAGRAM_METRICS, diagram_distance

    from tqdm.auto import tqdm

    maxdim = check_int(maxdim, "maxdim", 0)
    dims = list(range(1, maxdim + 1)) if dims is None else [check_int(k, "dims entry", 0, maxdim) for k in dims]
    if not dims:
        dims = [0]
    n_points = check_int(n_points, "n_points", 3)
    n_reference = check_int(n_reference, "n_reference", 1)
    if isinstance(candidates, Mapping):
        items = list(candidates.items())
    elif isinstance(candidates, (list, tuple)):
        items = [(repr(c), c) for c in candidates]
    else:
        raise TypeError(f"candidates must be a dict name -> Manifold or a list of Manifold; got "
                        f"{type(candidates).__name__}")
    if not items:
        raise ValueError("candidates is empty; pass at least one manifold")
    if not callable(metric) and metric not in DIAGRAM_METRICS:
        raise ValueError(f"metric must be one of {list(DIAGRAM_METRICS)} or a callable; got {metric!r}")
    if metric_options is not None and not isinstance(metric_options, Mapping):
        raise TypeError(f"metric_options must be a dict of options; got {type(metric_options).__name__}")
    opts = dict(metric_options or {})
    metric_name = metric if isinstance(metric, str) else getattr(metric, "__name__", repr(metric))
    for name, c in items:
        if not (hasattr(c, "random_uniform") and hasattr(c, "cdist")):
            raise TypeError(f"candidate {name!r} must be a moduli.manifolds.Manifold; got {type(c).__name__}")
    D = pairwise_distances(X, manifold=manifold, distance_matrix=distance_matrix)
    n = D.shape[0]
    data = persistence(_normalized(D), distance_matrix=True, maxdim=maxdim, coeff=coeff,
                       n_landmarks=min(n_points, n))
    fits = []
    gen = torch.Generator().manual_seed(seed)
    for name, c in tqdm(items, desc="rank_manifolds", disable=not progress):
        per = {k: 0.0 for k in dims}
        betti = []
        for r in range(n_reference):
            y = c.random_uniform(n, generator=gen, dtype=torch.float64)
            ref = persistence(_normalized(pairwise_distances(y, manifold=c)), distance_matrix=True,
                              maxdim=maxdim, coeff=coeff, n_landmarks=min(n_points, n))
            for k in dims:
                per[k] += diagram_distance(data.diagrams[k], ref.diagrams[k], metric=metric,
                                           **opts) / n_reference
            if r == 0:
                betti = ref.betti(0.25)
        fits.append(ManifoldFit(name=name, score=float(sum(per.values())), per_dim=per, betti=betti,
                                metric=metric_name))
    fits.sort(key=lambda f: f.score)
    return fits
