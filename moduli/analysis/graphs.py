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

__all__ = ["GraphStats", "connectivity"]


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
    keep = np.abs(W) > thr
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
