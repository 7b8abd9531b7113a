"""Statistics of the connectivity graph of a (pruned) weight matrix.

A weight ``W`` of shape ``(n_out, n_in)`` connects input ``k`` to output ``j``
through ``W[j, k]``. A square matrix (a recurrent layer) is a graph on its
``n`` neurons; a rectangular one is a bipartite graph on ``n_out + n_in``
nodes. An edge is kept where ``|W[j, k]| > threshold``; undirected graphs
join ``j`` and ``k`` when either direction passes, self-loops are dropped
(and counted).

Exact: degrees, density, clustering and transitivity (sparse triangle
counts), components, modularity of the Louvain partition (networkx), edge
lengths and correlations. Estimated on large graphs: the mean shortest-path
length uses breadth-first search from every node of the largest component up
to ``max_sources`` nodes and from a uniform random sample of ``max_sources``
sources above (an unbiased estimate of the mean); the small-world sigma
compares with ``n_random`` sampled Erdős–Rényi graphs of the same size and
density (networkx's ``sigma`` with degree-preserving rewiring does not finish
at 4096 nodes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph
import torch

from .. import targets as tg
from ._checks import as_numpy_2d, check_int, check_nonnegative, to_numpy

__all__ = [
    "GraphStats", "connectivity", "adjacency", "strength", "weighted_clustering", "global_efficiency",
    "local_efficiency", "RichClub", "rich_club", "SmallWorld", "small_world",
]


@dataclass
class GraphStats:
    """Statistics of a connectivity graph (see :func:`connectivity`).

    Attributes
    ----------
    n_nodes, n_edges : int
        Nodes (``n`` or ``n_out + n_in``) and kept edges (undirected pairs or
        directed arcs).
    directed, bipartite : bool
    density : float
        ``n_edges`` over the number of possible edges.
    mean_degree : float
        Mean total degree (in + out for directed graphs).
    degrees : ndarray of int, shape=[n_nodes]
        Total degree of each node (the degree distribution).
    in_degrees, out_degrees : ndarray of int, shape=[n_nodes]
        Equal to ``degrees`` for undirected graphs.
    clustering : float
        Average local clustering coefficient of the undirected skeleton
        (nodes of degree < 2 count as 0, as in networkx).
    transitivity : float
        Global clustering: 3 triangles / connected triples.
    n_components : int
        Connected components (weakly connected when directed).
    largest_component : int
        Nodes in the largest component.
    path_length : float
        Mean shortest-path length (hops) over ordered pairs of the largest
        component that reach each other; estimated when ``path_sources`` is
        smaller than ``largest_component``.
    path_sources : int
        Breadth-first searches used for ``path_length``.
    random_clustering, random_path_length : float
        Means over density-matched Erdős–Rényi graphs (NaN for bipartite).
    small_world_sigma : float
        ``(clustering / random_clustering) / (path_length / random_path_length)``.
    modularity : float
        Newman modularity of the Louvain communities of the undirected skeleton.
    n_communities : int
    mean_edge_length : float or None
        Mean geodesic distance between the endpoints of kept edges.
    edge_length_ratio : float or None
        ``mean_edge_length`` over the mean distance of all candidate pairs
        (well under 1: geometrically local connectivity; about 1: random).
    weight_distance_correlation : float or None
        Spearman correlation of ``|W[j, k]|`` with ``d(j, k)`` over all
        candidate pairs (kept and pruned; ``2**20`` uniformly drawn pairs,
        with replacement, above that many).
    edge_lengths : ndarray or None, shape=[n_edges]
    n_self_loops : int
        Non-zero diagonal entries ignored.
    notes : list of str
        Which statistics were estimated, and how.
    """

    n_nodes: int
    n_edges: int
    directed: bool
    bipartite: bool
    density: float
    mean_degree: float
    degrees: np.ndarray
    in_degrees: np.ndarray
    out_degrees: np.ndarray
    clustering: float
    transitivity: float
    n_components: int
    largest_component: int
    path_length: float
    path_sources: int
    random_clustering: float
    random_path_length: float
    small_world_sigma: float
    modularity: float
    n_communities: int
    mean_edge_length: Optional[float] = None
    edge_length_ratio: Optional[float] = None
    weight_distance_correlation: Optional[float] = None
    edge_lengths: Optional[np.ndarray] = None
    n_self_loops: int = 0
    notes: list = field(default_factory=list)

    def summary(self) -> dict:
        """The scalar statistics as a dict (for tables and JSON)."""
        skip = {"degrees", "in_degrees", "out_degrees", "edge_lengths", "notes"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}


# ------------------------------------------------------------- input handling
def weight_tensor(obj: Any, name: Optional[str] = None) -> torch.Tensor:
    """The weight tensor behind ``obj`` (detached), for the analysis functions.

    Accepts a tensor or array; a prior term of :func:`moduli.regularizers.attach`
    (its ``weight``: the effective weight, masked after pruning); or an
    ``nn.Module`` and a parameter name (default ``weight`` or ``weight_hh_l0``),
    read with :func:`moduli.targets.effective_weight`.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, np.ndarray):
        return torch.as_tensor(to_numpy(obj, "weight"))
    if hasattr(obj, "points_out") and hasattr(obj, "points_in"):
        w = getattr(obj, "weight", None)
        if isinstance(w, torch.Tensor):
            return w.detach()
        raise TypeError(f"weight looks like a prior term ({type(obj).__name__}) but has no 'weight' tensor")
    if isinstance(obj, torch.nn.Module):
        names = [name] if name is not None else ["weight", "weight_hh_l0"]
        for nm in names:
            try:
                return tg.effective_weight(obj, nm).detach()
            except ValueError:
                continue
        raise ValueError(f"weight is a {type(obj).__name__} without a parameter "
                         f"{' or '.join(repr(n) for n in names)}; pass the tensor itself or name=")
    if isinstance(obj, (list, tuple)):
        return torch.as_tensor(to_numpy(obj, "weight"))
    raise TypeError(f"weight must be a Tensor, ndarray, nn.Module or prior term; got {type(obj).__name__}")


def _term_defaults(obj: Any, points, manifold):
    """Points and manifold stored on a prior term, when the caller gave none."""
    if hasattr(obj, "points_out") and hasattr(obj, "points_in") and not isinstance(obj, torch.Tensor):
        if points is None:
            po, pi = obj.points_out, obj.points_in
            po = po() if callable(po) and not isinstance(po, torch.Tensor) else po
            pi = pi() if callable(pi) and not isinstance(pi, torch.Tensor) else pi
            points = (po, pi)
        if manifold is None:
            manifold = getattr(obj, "manifold", None) or getattr(getattr(obj, "prior", None), "manifold", None)
    return points, manifold


def _as_points(p: Any, n: int, name: str, manifold) -> torch.Tensor:
    if not isinstance(p, torch.Tensor):
        p = torch.as_tensor(to_numpy(p, name))
    p = p.detach()
    if p.ndim != 2 or p.shape[0] != n:
        cd = manifold.coord_dim if manifold is not None else "d"
        raise ValueError(f"{name} must have shape ({n}, {cd}) to match the weight; got shape {tuple(p.shape)}")
    if manifold is not None:
        p = manifold.check_points(p, name, ndim=2)
    elif not bool(torch.isfinite(p).all()):
        raise ValueError(f"{name} of shape {tuple(p.shape)} contains NaN or infinite coordinates")
    return p


def _distances(points, manifold, n_out: int, n_in: int) -> np.ndarray:
    if isinstance(points, (tuple, list)) and len(points) == 2 and not isinstance(points[0], (int, float)):
        po = _as_points(points[0], n_out, "points[0] (points_out)", manifold)
        pi = _as_points(points[1], n_in, "points[1] (points_in)", manifold)
    else:
        if n_out != n_in:
            raise ValueError(f"the weight has shape ({n_out}, {n_in}); pass points=(points_out, points_in) "
                             "for a rectangular matrix")
        po = pi = _as_points(points, n_out, "points", manifold)
    if po.dtype != pi.dtype:
        pi = pi.to(po.dtype)
    with torch.no_grad():
        if manifold is None:
            D = torch.cdist(po.to(torch.float64), pi.to(torch.float64))
        else:
            D = manifold.cdist(po, pi)
    return D.to("cpu", torch.float64).numpy()


# --------------------------------------------------------------- statistics
def _clustering(A: sp.csr_matrix) -> tuple:
    """Average local clustering and transitivity of a symmetric 0/1 matrix."""
    k = np.asarray(A.sum(1)).ravel()
    tri = np.asarray((A @ A).multiply(A).sum(1)).ravel() / 2.0
    pairs = k * (k - 1) / 2.0
    local = np.divide(tri, pairs, out=np.zeros_like(tri), where=pairs > 0)
    trans = float(tri.sum() / pairs.sum()) if pairs.sum() > 0 else 0.0
    return float(local.mean()) if len(k) else 0.0, trans


def _path_length(A: sp.csr_matrix, nodes: np.ndarray, directed: bool, max_sources: int,
                 rng: np.random.Generator) -> tuple:
    """Mean hop distance between reachable ordered pairs of ``nodes``."""
    sub = A[nodes][:, nodes].tocsr()
    m = len(nodes)
    if m < 2:
        return math.nan, 0
    sources = np.arange(m) if m <= max_sources else np.sort(rng.choice(m, size=max_sources, replace=False))
    total, count = 0.0, 0
    for start in range(0, len(sources), 256):  # bounded memory: 256 rows of distances at a time
        idx = sources[start:start + 256]
        dist = csgraph.shortest_path(sub, method="D", directed=directed, unweighted=True, indices=idx)
        ok = np.isfinite(dist) & (dist > 0)
        total += float(dist[ok].sum())
        count += int(ok.sum())
    return (total / count if count else math.nan), len(sources)


def _er_graph(n: int, p: float, directed: bool, rng: np.random.Generator) -> sp.csr_matrix:
    """Erdős–Rényi G(n, p) as a 0/1 CSR matrix (sampled by rows, no dense n x n)."""
    rows, cols = [], []
    for i in range(n):
        if directed:
            js = np.nonzero(rng.random(n) < p)[0]
            js = js[js != i]
        else:
            js = i + 1 + np.nonzero(rng.random(n - i - 1) < p)[0]
        rows.append(np.full(len(js), i))
        cols.append(js)
    r = np.concatenate(rows) if rows else np.zeros(0, int)
    c = np.concatenate(cols) if cols else np.zeros(0, int)
    A = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    return A if directed else ((A + A.T) > 0).astype(np.float64).tocsr()


def _modularity(A: sp.csr_matrix, communities) -> float:
    """Newman modularity ``sum_c [L_c / m - (d_c / 2m)^2]`` of a symmetric 0/1 matrix."""
    labels = np.empty(A.shape[0], dtype=np.int64)
    for c, members in enumerate(communities):
        labels[list(members)] = c
    coo = A.tocoo()
    two_m = float(coo.nnz)
    if two_m == 0:
        return math.nan
    inside = float((labels[coo.row] == labels[coo.col]).sum())  # 2 * edges inside communities
    deg = np.asarray(A.sum(1)).ravel()
    d_c = np.bincount(labels, weights=deg)
    return inside / two_m - float(((d_c / two_m) ** 2).sum())


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; NaN (without scipy's warning) when either side is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def connectivity(
    weight: Any,
    *,
    points: Any = None,
    manifold=None,
    threshold: float = 0.0,
    density: Optional[float] = None,
    directed: bool = False,
    name: Optional[str] = None,
    max_sources: int = 256,
    n_random: int = 2,
    seed: int = 0,
) -> GraphStats:
    """Graph statistics of the connections a weight matrix keeps.

    Parameters
    ----------
    weight : Tensor or ndarray, shape=[n_out, n_in]; nn.Module; or prior term
        The (pruned) weight. A module gives its effective ``weight`` (or
        ``weight_hh_l0``, or ``name``); a prior term (anything with
        ``points_out`` and ``points_in``) also supplies default points.
    points : Tensor, shape=[n, coord_dim], or pair (points_out, points_in), optional
        Neuron positions; enables edge-length statistics.
    manifold : moduli.manifolds.Manifold, optional
        Metric for ``points`` (Euclidean when omitted).
    threshold : float
        Keep the edge ``j -- k`` where ``|W[j, k]| > threshold``.
    density : float in [0, 1], optional
        Quantile threshold instead of ``threshold``: keep the
        ``round(density * n_possible)`` largest ``|W|`` (see :func:`adjacency`;
        undirected square weights rank ``max(|W[j, k]|, |W[k, j]|)``).
    directed : bool
        Keep directions (arc ``k -> j`` for ``W[j, k]``).
    name : str, optional
        Parameter name when ``weight`` is a module.
    max_sources : int
        Breadth-first searches for the mean path length (exact up to this many
        nodes in the largest component).
    n_random : int
        Erdős–Rényi graphs averaged for the small-world null (0: skip, NaN sigma).
    seed : int
        Seeds the source sample, the random graphs and Louvain.

    Returns
    -------
    GraphStats

    Examples
    --------
    >>> import torch
    >>> from moduli import analysis
    >>> ring = torch.zeros(6, 6)
    >>> for i in range(6):
    ...     ring[i, (i + 1) % 6] = ring[(i + 1) % 6, i] = 1.0
    >>> s = analysis.connectivity(ring)
    >>> (s.n_edges, s.mean_degree, s.clustering, s.path_length)
    (6, 2.0, 0.0, 1.8)
    """
    import networkx as nx

    thr = check_nonnegative(threshold, "threshold")
    dens = _check_density(density, thr)
    max_sources = check_int(max_sources, "max_sources", 1)
    n_random = check_int(n_random, "n_random", 0)
    seed = check_int(seed, "seed", 0)
    if not isinstance(directed, bool):
        raise TypeError(f"directed must be a bool; got {type(directed).__name__}")
    points, manifold = _term_defaults(weight, points, manifold)
    W = as_numpy_2d(weight_tensor(weight, name), "weight")
    if manifold is not None and points is None:
        raise ValueError("manifold was given without points; pass points= (the neuron embedding)")
    n_out, n_in = W.shape
    bipartite = n_out != n_in
    if dens is None:
        keep = np.abs(W) > thr
    elif bipartite or directed:
        keep = _density_mask(np.abs(W), dens, False, not bipartite)
    else:
        M = np.abs(W)
        np.fill_diagonal(M, 0.0)
        keep = _density_mask(np.maximum(M, M.T), dens, True, True)
    rng = np.random.default_rng(seed)
    notes = []
    n_self = 0
    if bipartite:
        n = n_out + n_in
        B = sp.csr_matrix(keep.astype(np.float64))
        # arcs input (n_out + k) -> output j
        arcs = sp.bmat([[None, B], [sp.csr_matrix((n_in, n_out)), None]]).tocsr()
        arcs = arcs.T.tocsr()  # row = source (input), column = target (output)
        possible = n_out * n_in
    else:
        n = n_out
        n_self = int(np.diag(keep).sum())
        keep = keep.copy()
        np.fill_diagonal(keep, False)
        arcs = sp.csr_matrix(keep.T.astype(np.float64))  # row k -> column j
        possible = n * (n - 1) if directed else n * (n - 1) // 2
        if n_self:
            notes.append(f"{n_self} self-loops (diagonal entries) ignored")
    und = ((arcs + arcs.T) > 0).astype(np.float64).tocsr()
    if directed:
        n_edges = int(arcs.nnz)
        out_deg = np.asarray(arcs.sum(1)).ravel().astype(int)
        in_deg = np.asarray(arcs.sum(0)).ravel().astype(int)
        degrees = in_deg + out_deg
    else:
        n_edges = int(und.nnz // 2)
        degrees = np.asarray(und.sum(1)).ravel().astype(int)
        in_deg = out_deg = degrees
    density = n_edges / possible if possible else 0.0
    clustering, transitivity = _clustering(und)
    n_comp, labels = csgraph.connected_components(und, directed=False)
    sizes = np.bincount(labels)
    big = np.nonzero(labels == int(np.argmax(sizes)))[0]
    path_graph = arcs if directed else und
    L, used = _path_length(path_graph, big, directed, max_sources, rng)
    if used < len(big):
        notes.append(f"path_length estimated from {used} random BFS sources of {len(big)} nodes")
    # density-matched Erdős–Rényi null
    if bipartite or n_random == 0 or n < 3:
        C_r = L_r = sigma = math.nan
        if bipartite:
            notes.append("small-world sigma undefined for a bipartite (rectangular) weight")
    else:
        p = density
        Cs, Ls = [], []
        for _ in range(n_random):
            R = _er_graph(n, p, directed, rng)
            Ru = ((R + R.T) > 0).astype(np.float64).tocsr() if directed else R
            Cs.append(_clustering(Ru)[0])
            nc, lab = csgraph.connected_components(Ru, directed=False)
            rbig = np.nonzero(lab == int(np.argmax(np.bincount(lab))))[0]
            Ls.append(_path_length(R, rbig, directed, max_sources, rng)[0])
        C_r, L_r = float(np.mean(Cs)), float(np.mean(Ls))
        sigma = (clustering / C_r) / (L / L_r) if C_r > 0 and L > 0 and L_r > 0 else math.nan
        notes.append(f"small-world null: mean of {n_random} sampled G(n={n}, p={p:.4g}) graphs")
    # Louvain modularity on the undirected skeleton
    if n_edges > 0:
        upper = sp.triu(und, k=1).tocoo()
        G = nx.Graph()
        G.add_nodes_from(range(n))
        G.add_edges_from(zip(upper.row.tolist(), upper.col.tolist()))
        comms = nx.community.louvain_communities(G, seed=seed)
        Q = _modularity(und, comms)
        n_comm = len(comms)
    else:
        Q, n_comm = math.nan, n
    stats = GraphStats(
        n_nodes=n, n_edges=n_edges, directed=directed, bipartite=bipartite, density=float(density),
        mean_degree=float(degrees.mean()) if n else 0.0, degrees=degrees, in_degrees=in_deg,
        out_degrees=out_deg, clustering=clustering, transitivity=transitivity,
        n_components=int(n_comp), largest_component=int(len(big)), path_length=float(L),
        path_sources=int(used), random_clustering=C_r, random_path_length=L_r,
        small_world_sigma=float(sigma), modularity=Q, n_communities=int(n_comm),
        n_self_loops=n_self, notes=notes,
    )
    if points is not None:
        D = _distances(points, manifold, n_out, n_in)
        if directed or bipartite:
            kept_d = D[keep]
        else:
            kept_d = D[np.triu(keep | keep.T, 1)]
        # candidate pairs: all (j, k) for a rectangular weight, j != k for a square one
        n_cand = n_out * n_in - (0 if bipartite else n_out)
        total = float(D.sum()) - (0.0 if bipartite else float(np.trace(D)))
        all_mean = total / n_cand if n_cand > 0 else math.nan
        stats.edge_lengths = kept_d
        stats.mean_edge_length = float(kept_d.mean()) if kept_d.size else math.nan
        stats.edge_length_ratio = stats.mean_edge_length / all_mean if all_mean > 0 else math.nan
        if n_cand > 2**20:  # sample pairs by index: no copies of the n x n matrices
            j = rng.integers(0, n_out, size=2**20)
            k = rng.integers(0, n_in, size=2**20)
            if not bipartite:
                off = j != k
                j, k = j[off], k[off]
            notes.append(f"weight-distance correlation from {len(j)} random pairs")
            a, d = np.abs(W[j, k]), D[j, k]
        else:
            cand = np.ones_like(keep) if bipartite else ~np.eye(n, dtype=bool)
            a, d = np.abs(W[cand]), D[cand]
        stats.weight_distance_correlation = _spearman(a, d)
    return stats


# ======================================================= bctpy-level statistics
# The functions below work on the graph of a *square* weight (a recurrent layer) on its n
# neurons. The edge j -- k has weight max(|W[j, k]|, |W[k, j]|) (undirected, the same rule as
# ``connectivity``: an edge when either direction passes) or |W[j, k]| on the arc k -> j
# (directed); the diagonal is ignored. Weighted statistics divide the weights by their largest
# value first, as the Brain Connectivity Toolbox (BCT) expects weights in [0, 1].

def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _density_mask(M: np.ndarray, density: float, symmetric: bool, square: bool) -> np.ndarray:
    """Boolean mask of the ``round(density * n_candidates)`` largest positive entries of ``M``.

    Candidates are the upper triangle (``symmetric``), the off-diagonal entries (square) or
    all entries; ties are broken by position (row-major), so the count is exact.
    """
    n_out, n_in = M.shape
    if symmetric:
        r, c = np.triu_indices(n_out, 1)
    else:
        cand = ~np.eye(n_out, n_in, dtype=bool) if square else np.ones(M.shape, dtype=bool)
        r, c = np.nonzero(cand)
    vals = M[r, c]
    m = min(_half_up(density * len(vals)), int((vals > 0).sum()))
    order = np.argsort(-vals, kind="stable")[:m]
    mask = np.zeros(M.shape, dtype=bool)
    mask[r[order], c[order]] = True
    if symmetric:
        mask |= mask.T
    return mask


def _check_density(density: Any, threshold: float) -> Optional[float]:
    if density is None:
        return None
    from .. import _validate

    dens = _validate.fraction(density, "density", closed=True)
    if threshold > 0:
        raise ValueError(f"pass threshold= or density=, not both (got threshold={threshold}, density={dens})")
    return dens


def adjacency(weight: Any, *, threshold: float = 0.0, density: Optional[float] = None,
              directed: bool = False, weighted: bool = True, name: Optional[str] = None) -> sp.csr_matrix:
    """The graph of a square weight matrix as a sparse adjacency matrix.

    Parameters
    ----------
    weight : Tensor, ndarray, nn.Module or prior term, shape=[n, n]
        A recurrent weight (see :func:`connectivity` for the accepted objects).
    threshold : float
        Keep edges whose weight is ``> threshold``.
    density : float in [0, 1], optional
        Quantile threshold instead: keep the ``round(density * n_possible)``
        strongest edges (``n_possible = n (n - 1) / 2`` undirected,
        ``n (n - 1)`` directed; ties broken by position; fewer when fewer
        weights are non-zero). BCT's ``threshold_proportional``.
    directed : bool
        ``A[k, j] = |W[j, k]|`` for the arc ``k -> j`` (row = source).
        Undirected (default): ``A[j, k] = A[k, j] = max(|W[j, k]|, |W[k, j]|)``.
    weighted : bool
        Keep the weights ``|W|`` (True) or set kept edges to 1.
    name : str, optional
        Parameter name when ``weight`` is a module.

    Returns
    -------
    scipy.sparse.csr_matrix, shape=[n, n]
        Zero diagonal.

    Examples
    --------
    >>> import numpy as np
    >>> from moduli import analysis
    >>> W = np.array([[0, 3, 1], [0, 0, 2], [0, 0, 0]])
    >>> analysis.adjacency(W, density=2 / 3).toarray()
    array([[0., 3., 0.],
           [3., 0., 2.],
           [0., 2., 0.]])
    """
    thr = check_nonnegative(threshold, "threshold")
    dens = _check_density(density, thr)
    if not isinstance(directed, bool):
        raise TypeError(f"directed must be a bool; got {type(directed).__name__}")
    if not isinstance(weighted, bool):
        raise TypeError(f"weighted must be a bool; got {type(weighted).__name__}")
    W = as_numpy_2d(weight_tensor(weight, name), "weight")
    if W.shape[0] != W.shape[1]:
        raise ValueError(f"weight must be square (a recurrent layer: a graph on its neurons); got shape "
                         f"{W.shape}; connectivity() handles rectangular (bipartite) weights")
    M = np.abs(W)
    np.fill_diagonal(M, 0.0)
    M = M.T if directed else np.maximum(M, M.T)  # directed: row = source k, column = target j
    keep = _density_mask(M, dens, not directed, True) if dens is not None else M > thr
    A = np.where(keep, M if weighted else 1.0, 0.0)
    return sp.csr_matrix(A)


def _graph(weight, threshold, density, name, directed=False, weighted=True) -> sp.csr_matrix:
    return adjacency(weight, threshold=threshold, density=density, directed=directed, weighted=weighted,
                     name=name)


def _normalized_weights(A: sp.csr_matrix) -> sp.csr_matrix:
    A = A.tocsr(copy=True)
    if A.nnz:
        A.data = A.data / A.data.max()
    return A


def strength(weight: Any, *, threshold: float = 0.0, density: Optional[float] = None,
             directed: bool = False, name: Optional[str] = None) -> np.ndarray:
    """Node strength: the sum of the weights ``|w|`` of a node's kept edges.

    Undirected: ``s_j = sum_k max(|W[j, k]|, |W[k, j]|)`` over kept edges (BCT
    ``strengths_und``); directed: in-strength plus out-strength,
    ``sum_k |W[j, k]| + |W[k, j]|`` (BCT ``strengths_dir``). Weights are not normalised.

    Parameters
    ----------
    weight, threshold, density, directed, name :
        As in :func:`adjacency`.

    Returns
    -------
    ndarray, shape=[n]

    Examples
    --------
    >>> from moduli import analysis
    >>> analysis.strength([[0, 2.0, 0], [0.5, 0, 0], [1.0, 0, 0]]).tolist()
    [3.0, 2.0, 1.0]
    """
    A = _graph(weight, threshold, density, name, directed=directed)
    s = np.asarray(A.sum(1)).ravel()
    if directed:
        s = s + np.asarray(A.sum(0)).ravel()
    return s


def weighted_clustering(weight: Any, *, threshold: float = 0.0, density: Optional[float] = None,
                        name: Optional[str] = None) -> np.ndarray:
    """Weighted local clustering coefficient (Onnela et al. 2005), undirected.

    ``c_i = sum_{j,h} (w_ij w_jh w_hi)^(1/3) / (k_i (k_i - 1))`` with weights
    divided by the largest weight and ``k_i`` the degree; 0 for ``k_i < 2``.
    The definition of networkx's ``clustering(G, weight=...)`` and BCT's
    ``clustering_coef_wu``; with all weights equal it is the binary
    clustering coefficient.

    Parameters
    ----------
    weight, threshold, density, name :
        As in :func:`adjacency`.

    Returns
    -------
    ndarray, shape=[n]

    Examples
    --------
    >>> from moduli import analysis
    >>> W = [[0, 1.0, 1.0], [1.0, 0, 0.125], [1.0, 0.125, 0]]
    >>> analysis.weighted_clustering(W).round(12).tolist()   # (1 * 1 * 0.125)^(1/3) = 0.5
    [0.5, 0.5, 0.5]
    """
    A = _normalized_weights(_graph(weight, threshold, density, name))
    C = A.copy()
    C.data = np.cbrt(C.data)
    cycles = np.asarray((C @ C).multiply(C).sum(1)).ravel()  # diag(C^3), C symmetric
    k = np.diff(A.indptr).astype(np.float64)
    pairs = k * (k - 1)
    return np.divide(cycles, pairs, out=np.zeros_like(cycles), where=pairs > 0)


def _inverse_distance_sum(L: sp.csr_matrix, weighted: bool, sources: np.ndarray, directed: bool) -> float:
    """Sum over ``sources`` x all targets (target != source) of 1 / shortest-path length."""
    total = 0.0
    for start in range(0, len(sources), 256):
        idx = sources[start:start + 256]
        dist = csgraph.shortest_path(L, method="D", directed=directed, unweighted=not weighted, indices=idx)
        ok = np.isfinite(dist) & (dist > 0)
        total += float((1.0 / dist[ok]).sum())
    return total


def _lengths(A: sp.csr_matrix, weighted: bool, power: float = 1.0) -> sp.csr_matrix:
    L = _normalized_weights(A) if weighted else A.copy()
    if weighted:
        L.data = (1.0 / L.data) ** power
    return L


def global_efficiency(weight: Any, *, weighted: bool = False, threshold: float = 0.0,
                      density: Optional[float] = None, directed: bool = False, name: Optional[str] = None,
                      max_sources: Optional[int] = None, seed: int = 0) -> float:
    """Global efficiency (Latora & Marchiori 2001): the mean inverse shortest-path length.

    ``E = sum_{i != j} 1 / d_ij / (n (n - 1))``, with ``1 / d_ij = 0`` for
    pairs that do not reach each other, so it is defined on disconnected
    graphs. Binary: ``d_ij`` in hops (networkx's ``global_efficiency``, BCT's
    ``efficiency_bin``). Weighted: edge lengths ``1 / w`` with weights divided
    by the largest weight (BCT's ``efficiency_wei``).

    Parameters
    ----------
    weight, threshold, density, directed, name :
        As in :func:`adjacency` (directed: paths follow arcs).
    weighted : bool
        Weighted path lengths instead of hops.
    max_sources : int, optional
        Estimate from this many uniformly drawn source nodes (unbiased)
        instead of all ``n``.
    seed : int
        Seeds the source sample.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from moduli import analysis
    >>> path = np.diag([1.0, 1.0, 1.0], 1)              # 0 - 1 - 2 - 3
    >>> round(analysis.global_efficiency(path), 6)      # (3 * 1 + 2 / 2 + 1 / 3) * 2 / 12
    0.722222
    """
    if not isinstance(weighted, bool):
        raise TypeError(f"weighted must be a bool; got {type(weighted).__name__}")
    seed = check_int(seed, "seed", 0)
    A = _graph(weight, threshold, density, name, directed=directed)
    n = A.shape[0]
    if n < 2:
        return 0.0
    sources = np.arange(n)
    if max_sources is not None:
        k = check_int(max_sources, "max_sources", 1)
        if k < n:
            sources = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    total = _inverse_distance_sum(_lengths(A, weighted), weighted, sources, directed)
    return total / (len(sources) * (n - 1))


def local_efficiency(weight: Any, *, weighted: bool = False, threshold: float = 0.0,
                     density: Optional[float] = None, name: Optional[str] = None) -> np.ndarray:
    """Local efficiency of each node, undirected.

    Binary (Latora & Marchiori 2001): the global efficiency of the subgraph
    induced by the node's neighbours, ``E_i = sum_{j != h in N_i} 1 / d_jh(N_i)
    / (k_i (k_i - 1))``; its mean is networkx's ``local_efficiency``.
    Weighted (Wang et al. 2016, as in BCT's ``efficiency_wei(local=True)``):
    ``E_i = sum_{j != h in N_i} (w_ij w_ih)^(1/3) / d_jh(N_i) / (k_i (k_i - 1))``
    where ``d_jh(N_i)`` is the shortest path inside ``N_i`` with edge lengths
    ``w^(-1/3)``, weights divided by the largest weight. 0 when ``k_i < 2``.

    Parameters
    ----------
    weight, threshold, density, name :
        As in :func:`adjacency`.
    weighted : bool

    Returns
    -------
    ndarray, shape=[n]

    Examples
    --------
    >>> import numpy as np
    >>> from moduli import analysis
    >>> K4 = np.ones((4, 4))
    >>> analysis.local_efficiency(K4).tolist()          # each neighbourhood is a triangle
    [1.0, 1.0, 1.0, 1.0]
    """
    if not isinstance(weighted, bool):
        raise TypeError(f"weighted must be a bool; got {type(weighted).__name__}")
    A = _graph(weight, threshold, density, name)
    Wn = _normalized_weights(A)
    L = _lengths(A, weighted, power=1.0 / 3.0)
    n = A.shape[0]
    out = np.zeros(n)
    for i in range(n):
        nb = A.indices[A.indptr[i]:A.indptr[i + 1]]
        k = len(nb)
        if k < 2:
            continue
        sub = L[nb][:, nb]
        dist = csgraph.shortest_path(sub, method="D", directed=False, unweighted=not weighted)
        np.fill_diagonal(dist, np.inf)
        inv = np.where(np.isfinite(dist), 1.0 / dist, 0.0)
        if weighted:
            wi = np.cbrt(np.asarray(Wn[i, nb].todense()).ravel())
            inv = inv * np.outer(wi, wi)
        out[i] = inv.sum() / (k * (k - 1))
    return out


@dataclass
class RichClub:
    """Rich-club coefficients of an undirected graph (see :func:`rich_club`).

    Attributes
    ----------
    k : ndarray of int, shape=[k_max + 1]
        Degree levels ``0 .. k_max``.
    phi : ndarray, shape=[k_max + 1]
        ``phi(k) = 2 E_k / (N_k (N_k - 1))``: density among the ``N_k`` nodes of
        degree ``> k`` (NaN where ``N_k < 2``).
    n_nodes : ndarray of int
        ``N_k``.
    phi_null : ndarray
        Mean ``phi(k)`` over the null graphs (NaN where undefined in all).
    normalized : ndarray
        ``phi / phi_null`` (NaN where ``phi_null`` is 0 or NaN); above 1 means
        the high-degree nodes are more interconnected than chance.
    null : str
        ``"er"`` (density-matched Erdős–Rényi) or ``"rewired"`` (degree-preserving).
    n_null : int
    """

    k: np.ndarray
    phi: np.ndarray
    n_nodes: np.ndarray
    phi_null: np.ndarray
    normalized: np.ndarray
    null: str
    n_null: int


def _rich_club_binary(A: sp.spmatrix, k_max: int) -> tuple:
    """phi(k), N_k for k = 0..k_max of a symmetric 0/1 matrix (an edge is in the k-club iff
    both ends have degree > k)."""
    deg = np.asarray((A != 0).sum(1)).ravel().astype(np.int64)
    up = sp.triu(A, k=1).tocoo()
    low = np.minimum(deg[up.row], deg[up.col])  # edge survives while k < low
    ks = np.arange(k_max + 1)
    E = np.array([(low > k).sum() for k in ks], dtype=np.float64)
    N = np.array([(deg > k).sum() for k in ks], dtype=np.int64)
    denom = N * (N - 1) / 2.0
    phi = np.divide(E, denom, out=np.full(len(ks), np.nan), where=denom > 0)
    return phi, N


def rich_club(weight: Any, *, threshold: float = 0.0, density: Optional[float] = None,
              null: str = "er", n_null: int = 10, k_max: Optional[int] = None, seed: int = 0,
              name: Optional[str] = None) -> RichClub:
    """Binary rich-club coefficient (Colizza et al. 2006) with a null model.

    ``phi(k) = 2 E_k / (N_k (N_k - 1))`` over the ``N_k`` nodes of degree
    ``> k`` and the ``E_k`` edges among them: networkx's
    ``rich_club_coefficient(normalized=False)``; BCT's ``rich_club_bu`` returns
    ``phi(1), phi(2), ...`` (its entry ``k - 1`` is ``phi(k)``).

    Parameters
    ----------
    weight, threshold, density, name :
        As in :func:`adjacency` (undirected).
    null : "er" or "rewired"
        ``"er"``: ``n_null`` Erdős–Rényi graphs G(n, p) with the graph's
        density (density-matched; their degrees are binomial, so a high
        ``normalized`` value mixes a broad degree distribution with genuine
        rich-club wiring). ``"rewired"``: ``n_null`` degree-preserving
        rewirings (``10 * n_edges`` double-edge swaps each, networkx), the
        null of Colizza et al. that isolates the wiring.
    n_null : int
        Null graphs averaged (0: skip; ``phi_null`` and ``normalized`` NaN).
    k_max : int, optional
        Highest degree level; default the largest degree minus 1.
    seed : int

    Returns
    -------
    RichClub

    Examples
    --------
    >>> import numpy as np
    >>> from moduli import analysis
    >>> star = np.zeros((4, 4)); star[0, 1:] = 1                 # hub 0 with three leaves
    >>> rc = analysis.rich_club(star, n_null=0)
    >>> rc.k.tolist(), rc.n_nodes.tolist(), float(rc.phi[0])     # phi(0) = 3 / 6; one node of degree > 1
    ([0, 1, 2], [4, 1, 1], 0.5)
    """
    import networkx as nx

    if null not in ("er", "rewired"):
        raise ValueError(f"null must be 'er' or 'rewired'; got {null!r}")
    n_null = check_int(n_null, "n_null", 0)
    seed = check_int(seed, "seed", 0)
    A = _graph(weight, threshold, density, name, weighted=False)
    n = A.shape[0]
    deg = np.asarray(A.sum(1)).ravel().astype(np.int64)
    top = int(deg.max()) - 1 if n else -1
    km = max(top, 0) if k_max is None else check_int(k_max, "k_max", 0)
    phi, N = _rich_club_binary(A, km)
    rng = np.random.default_rng(seed)
    nulls = []
    n_edges = A.nnz // 2
    if n_null and n_edges:
        p = n_edges / (n * (n - 1) / 2)
        for _ in range(n_null):
            if null == "er":
                R = _er_graph(n, p, False, rng)
            else:
                up = sp.triu(A, k=1).tocoo()
                G = nx.Graph()
                G.add_nodes_from(range(n))
                G.add_edges_from(zip(up.row.tolist(), up.col.tolist()))
                if n_edges >= 2:
                    nx.double_edge_swap(G, nswap=10 * n_edges, max_tries=100 * n_edges + 100,
                                        seed=int(rng.integers(2**31)))
                R = nx.to_scipy_sparse_array(G, nodelist=range(n), format="csr")
            nulls.append(_rich_club_binary(sp.csr_matrix(R), km)[0])
    if nulls:
        stack = np.vstack(nulls)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(stack)
            cnt = ok.sum(0)
            phi_null = np.divide(np.where(ok, stack, 0.0).sum(0), cnt, out=np.full(km + 1, np.nan),
                                 where=cnt > 0)
    else:
        phi_null = np.full(km + 1, np.nan)
    normalized = np.divide(phi, phi_null, out=np.full(km + 1, np.nan),
                           where=np.isfinite(phi_null) & (phi_null > 0) & np.isfinite(phi))
    return RichClub(k=np.arange(km + 1), phi=phi, n_nodes=N, phi_null=phi_null, normalized=normalized,
                    null=null, n_null=n_null)


@dataclass
class SmallWorld:
    """Small-world indices of a binary graph against density-matched random graphs.

    Attributes
    ----------
    clustering, random_clustering : float
        Average local clustering ``C`` and its mean over the null graphs ``C_r``.
    path_length, random_path_length : float
        Mean shortest-path length ``L`` (hops) over reachable ordered pairs of
        the largest component, and ``L_r`` (the ``connectivity`` definition).
    efficiency, random_efficiency : float
        Global efficiency ``E`` (:func:`global_efficiency`, binary) and ``E_r``.
    sigma : float
        ``(C / C_r) / (L / L_r)`` (Humphries & Gurney 2008; ``GraphStats.small_world_sigma``).
    sigma_efficiency : float
        ``(C / C_r) / (E_r / E)``: the path length replaced by the inverse global
        efficiency (the harmonic mean of path lengths), defined for disconnected graphs.
    n_random : int
    """

    clustering: float
    random_clustering: float
    path_length: float
    random_path_length: float
    efficiency: float
    random_efficiency: float
    sigma: float
    sigma_efficiency: float
    n_random: int


def _binary_indices(A: sp.csr_matrix, max_sources: int, rng: np.random.Generator) -> tuple:
    C = _clustering(A)[0]
    _, lab = csgraph.connected_components(A, directed=False)
    big = np.nonzero(lab == int(np.argmax(np.bincount(lab))))[0]
    L = _path_length(A, big, False, max_sources, rng)[0]
    n = A.shape[0]
    src = np.arange(n) if n <= max_sources else np.sort(rng.choice(n, size=max_sources, replace=False))
    E = _inverse_distance_sum(A, False, src, False) / (len(src) * (n - 1)) if n > 1 else 0.0
    return C, L, E


def small_world(weight: Any, *, threshold: float = 0.0, density: Optional[float] = None,
                n_random: int = 10, max_sources: int = 256, seed: int = 0,
                name: Optional[str] = None) -> SmallWorld:
    """Small-world sigma in both definitions, against Erdős–Rényi graphs of equal density.

    ``sigma = (C / C_r) / (L / L_r)`` uses the mean shortest-path length of the
    largest component (as :func:`connectivity`); ``sigma_efficiency =
    (C / C_r) / (E_r / E)`` uses global efficiency, which stays defined when
    pruning disconnects the graph. ``C`` is the average local clustering
    (binary, networkx's convention); the null values are means over
    ``n_random`` sampled G(n, p) graphs with ``p`` the graph's density. Both
    are about 1 for a random graph and well above 1 for a small world.

    Parameters
    ----------
    weight, threshold, density, name :
        As in :func:`adjacency` (undirected, binary).
    n_random : int
        Null graphs (at least 1).
    max_sources : int
        Breadth-first searches per graph for ``L`` and ``E`` (exact up to this
        many nodes, an unbiased estimate from random sources above).
    seed : int

    Returns
    -------
    SmallWorld

    Examples
    --------
    >>> import networkx as nx
    >>> from moduli import analysis
    >>> ws = nx.to_numpy_array(nx.watts_strogatz_graph(200, 8, 0.05, seed=1))
    >>> sw = analysis.small_world(ws, n_random=3)
    >>> sw.sigma > 3 and sw.sigma_efficiency > 3
    True
    """
    n_random = check_int(n_random, "n_random", 1)
    max_sources = check_int(max_sources, "max_sources", 1)
    seed = check_int(seed, "seed", 0)
    A = _graph(weight, threshold, density, name, weighted=False)
    n = A.shape[0]
    if n < 3:
        raise ValueError(f"weight must have at least 3 neurons for small-world indices; got {n}")
    rng = np.random.default_rng(seed)
    C, L, E = _binary_indices(A, max_sources, rng)
    p = (A.nnz // 2) / (n * (n - 1) / 2)
    nulls = np.array([_binary_indices(_er_graph(n, p, False, rng), max_sources, rng) for _ in range(n_random)])
    Cr, Lr, Er = (float(v) for v in np.nanmean(nulls, axis=0))
    sigma = (C / Cr) / (L / Lr) if Cr > 0 and L > 0 and Lr > 0 else math.nan
    sigma_e = (C / Cr) / (Er / E) if Cr > 0 and E > 0 and Er > 0 else math.nan
    return SmallWorld(clustering=float(C), random_clustering=Cr, path_length=float(L), random_path_length=Lr,
                      efficiency=float(E), random_efficiency=Er, sigma=float(sigma),
                      sigma_efficiency=float(sigma_e), n_random=n_random)
