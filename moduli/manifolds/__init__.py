"""Metric spaces for neuron embeddings.

Every space takes and returns torch tensors of points of shape
``(n, coord_dim)``; distances are batched, differentiable and follow the
device and dtype of their inputs.
"""

from .base import GeomstatsMatch, Manifold
from .euclidean import Euclidean
from .sphere import Circle, Sphere
from .torus import FlatTorus
from .klein import KleinBottle
from .product import Product
from .quotient import QuotientSpace
from .graph import GraphSpace
from .union import DisjointUnion
from . import catalog, testing

__all__ = [
    "Manifold", "GeomstatsMatch", "Euclidean", "Sphere", "Circle", "FlatTorus",
    "KleinBottle", "Product", "QuotientSpace", "GraphSpace", "DisjointUnion",
]
