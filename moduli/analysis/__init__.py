"""Persistent homology, connectivity-graph statistics and pictures.

``persistence`` (gudhi) computes Rips diagrams of neuron embeddings or hidden
activity on any moduli space; ``diagram_distance`` and the vectorisations (``landscape``,
``persistence_image``, ``betti_curve``) compare diagrams; ``connectivity``
(networkx/scipy) summarises the
graph of surviving weights; the ``plot_*`` functions draw headless matplotlib
figures. See ``docs/analysis.md``.
"""

from .activity import ActivityTopology, activity_topology, collect_hidden_states, hidden_state_topology
from .cocycles import CircularCoordinates, CocycleResult, circular_coordinates, cocycles
from .diagrams import (
    DIAGRAM_METRICS, betti_curve, diagram_distance, landscape, persistence_image, wasserstein_distance,
)
from .graphs import (
    GraphStats, RichClub, SmallWorld, adjacency, connectivity, global_efficiency, local_efficiency,
    rich_club, small_world, strength, weighted_clustering,
)
from .homology import (
    EXACT_LIMIT, ManifoldFit, PersistenceResult, bottleneck_distance, maxmin_landmarks,
    pairwise_distances, persistence, rank_manifolds,
)
from .plots import (
    chart, plot_barcode, plot_degree_histogram, plot_diagram, plot_edge_length_histogram,
    plot_inhibitor_field, plot_weight_heatmap,
)

__all__ = [
    "chart", "plot_barcode", "plot_degree_histogram", "plot_diagram", "plot_edge_length_histogram",
    "plot_inhibitor_field", "plot_weight_heatmap",
    "ActivityTopology", "activity_topology", "collect_hidden_states", "hidden_state_topology",
    "CircularCoordinates", "CocycleResult", "circular_coordinates", "cocycles",
    "DIAGRAM_METRICS", "betti_curve", "diagram_distance", "landscape", "persistence_image",
    "wasserstein_distance",
    "GraphStats", "connectivity", "adjacency", "strength", "weighted_clustering", "global_efficiency",
    "local_efficiency", "RichClub", "rich_club", "SmallWorld", "small_world",
    "EXACT_LIMIT", "ManifoldFit", "PersistenceResult", "bottleneck_distance", "maxmin_landmarks",
    "pairwise_distances", "persistence", "rank_manifolds",
]
