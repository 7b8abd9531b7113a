"""Persistent homology, connectivity-graph statistics and pictures.

``persistence`` (gudhi) computes Rips diagrams of neuron embeddings or hidden
activity on any moduli space; ``connectivity`` (networkx/scipy) summarises the
graph of surviving weights; the ``plot_*`` functions draw headless matplotlib
figures. See ``docs/analysis.md``.
"""

from .graphs import GraphStats, connectivity, effective_weight
from .persistence import (
    EXACT_LIMIT, ManifoldFit, PersistenceResult, bottleneck_distance, maxmin_landmarks,
    pairwise_distances, persistence, rank_manifolds,
)

__all__ = [
    "GraphStats", "connectivity", "effective_weight",
    "EXACT_LIMIT", "ManifoldFit", "PersistenceResult", "bottleneck_distance", "maxmin_landmarks",
    "pairwise_distances", "persistence", "rank_manifolds",
]
