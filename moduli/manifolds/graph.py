"""Finite metric spaces: neurons on the nodes of a graph."""

from __future__ import annotations

from typing import TYPE_CHECKING, Hashable, Iterable, Optional

import numpy as np
import torch
from torch import Tensor

from .base import Manifold, resolve_dtype

if TYPE_CHECKING:  # networkx costs ~0.9 s to import; it loads when a GraphSpace is built
    import networkx as nx

__all__ = ["GraphSpace"]


class GraphSpace(Manifold):
    """The nodes of a connected graph with the shortest-path metric.

    A point is a node's index (in ``list(graph.nodes)`` order) stored as a
    float tensor of shape (n, 1); :meth:`points` converts node labels.
    The float dtype must hold every index exactly: float16 (integers up to
    2048) and bfloat16 (up to 256) are refused for larger graphs, where they
    would silently round an index to another node's.
    All-pairs distances are computed once with scipy. The space is discrete:
    distances carry no gradient, so embeddings on it cannot be trained.

    Parameters
    ----------
    graph : networkx.Graph
        Connected, with non-negative edge weights (directed graphs are read
        as undirected so the metric is symmetric).
    weight : str or None
        Edge attribute holding lengths; ``None`` gives every edge length 1.
        Edges without the attribute have length 1.

    Examples
    --------
    >>> import networkx as nx, torch
    >>> from moduli import manifolds as mf
    >>> G = mf.GraphSpace(nx.cycle_graph(6))
    >>> G.cdist(G.points([0, 3])).tolist()
    [[0.0, 3.0], [3.0, 0.0]]
    """

    coord_dim = 1
    dim = 0
    differentiable = False

    def __init__(self, graph: "nx.Graph", *, weight: Optional[str] = "weight"):
        # Imported here, not at module level, so that `import moduli` stays
        # free of networkx and scipy.sparse (only graph spaces need them).
        import networkx as nx
        from scipy.sparse.csgraph import shortest_path

        if not isinstance(graph, nx.Graph):
            raise TypeError(f"graph must be a networkx graph; got {type(graph).__name__}")
        if graph.number_of_nodes() == 0:
            raise ValueError("graph must have at least one node")
        g = graph.to_undirected(as_view=True) if graph.is_directed() else graph
        self.nodes = list(g.nodes)
        self._index = {v: i for i, v in enumerate(self.nodes)}
        if weight is not None:
            for u, v, w in g.edges(data=weight, default=1.0):
                if not np.isfinite(w) or w < 0:
                    raise ValueError(f"edge ({u!r}, {v!r}) has invalid {weight!r} = {w}; lengths must be finite and >= 0")
        adj = nx.to_scipy_sparse_array(g, nodelist=self.nodes, weight=weight, format="csr")
        D = shortest_path(adj, method="D", directed=False)
        if not np.isfinite(D).all():
            raise ValueError("graph must be connected (some nodes are at infinite distance)")
        # Dijkstra sums a path's lengths in a direction-dependent order
        self._D = np.minimum(D, D.T)
        self.diameter = float(D.max())
        self._cache: dict = {}

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def points(self, nodes: Iterable[Hashable], *, dtype=None, device=None) -> Tensor:
        """Points, shape (n, 1), of the given node labels."""
        dtype = resolve_dtype(dtype)
        self._check_dtype(dtype, "dtype")
        try:
            idx = [self._index[v] for v in nodes]
        except KeyError as e:
            raise ValueError(f"node {e.args[0]!r} is not in the graph") from None
        return torch.tensor(idx, dtype=dtype, device=device)[:, None]

    def _check_dtype(self, dtype: torch.dtype, name: str) -> None:
        """Refuse a float dtype that cannot represent every node index exactly.

        A binary float with ``p`` significand bits holds every integer up to
        ``2**p = 2 / eps``; above that, consecutive indices round together.
        """
        exact = round(2 / torch.finfo(dtype).eps)
        if self.num_nodes - 1 > exact:
            raise TypeError(
                f"{name} has dtype {dtype}, which cannot represent every node index of this graph "
                f"({self.num_nodes} nodes, indices up to {self.num_nodes - 1}; {dtype} is exact only for "
                f"integers up to {exact}); use torch.float32 or torch.float64"
            )

    def distance_matrix(self, like: Tensor) -> Tensor:
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = torch.as_tensor(self._D, dtype=like.dtype, device=like.device)
        return self._cache[key]

    def _check(self, x: Tensor, name: str) -> None:
        self._check_dtype(x.dtype, name)
        # compare with the largest index (exact in the checked dtype), not with
        # num_nodes, which a low-precision comparison may round down onto it
        if bool((x != torch.round(x)).any()) or bool(((x < 0) | (x > self.num_nodes - 1)).any()):
            raise ValueError(
                f"{name} must hold node indices: integers in [0, {self.num_nodes}); "
                "use GraphSpace.points(nodes) to build them"
            )

    def _dist(self, x: Tensor, y: Tensor) -> Tensor:
        # also with validate=False: a dtype check costs no device sync
        self._check_dtype(x.dtype, "x")
        self._check_dtype(y.dtype, "y")
        D = self.distance_matrix(x)
        i, j = x[..., 0].long(), y[..., 0].long()
        return D[i, j]

    def _cdist_block(self, x: Tensor, y: Tensor) -> Tensor:
        self._check_dtype(x.dtype, "x")
        self._check_dtype(y.dtype, "y")
        D = self.distance_matrix(x)
        return D[x[:, 0].long()[:, None], y[:, 0].long()[None, :]]

    def _random_uniform(self, n, generator, dtype, device) -> Tensor:
        """Nodes drawn uniformly (with replacement)."""
        self._check_dtype(dtype, "dtype")
        idx = torch.randint(self.num_nodes, (n, 1), generator=generator, device=device)
        return idx.to(dtype)

    def __repr__(self) -> str:
        return f"GraphSpace(nodes={self.num_nodes})"
