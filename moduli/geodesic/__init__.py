"""Functional-geodesic sparsification and paths between networks.

Implements ``papers/geodesic-sparsification.md``: a trained network is walked
through weight space along an approximate geodesic of the pull-back metric
``g = JᵀJ`` (or its Fisher variant), each step solving the trust-region
problem of Eq. 7 matrix-free, until it reaches a sparse hyperplane
(:func:`sparsify`) or another network (:func:`transfer`).

Examples
--------
>>> import torch
>>> from moduli import geodesic
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
>>> path = geodesic.sparsify(net, torch.randn(64, 4), 0.75, steps=100, progress=False)
>>> round(geodesic.sparsity([path.model[0].weight, path.model[2].weight]), 4)
0.75
"""

from ._metric import METRICS, FunctionalMetric
from ._path import GeodesicPath, line_length, sparsify, target_weights, transfer
from ._projection import apply_masks, magnitude_masks, sparsity, unit_masks
from ._trust import StepInfo, solve_small_trust_region, trust_region_step
from .data import load_idx, load_mnist

__all__ = [
    "sparsify", "transfer", "GeodesicPath", "line_length", "target_weights",
    "FunctionalMetric", "METRICS", "trust_region_step", "solve_small_trust_region", "StepInfo",
    "magnitude_masks", "unit_masks", "apply_masks", "sparsity", "load_idx", "load_mnist",
]
