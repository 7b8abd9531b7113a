"""Functional-geodesic sparsification and paths between networks.

Implements ``papers/geodesic-sparsification.md``: a trained network is walked
through weight space along an approximate geodesic of the pull-back metric
``g = JᵀJ`` (or its Fisher variant), each step solving the trust-region
problem of Eq. 7 matrix-free, until it reaches a sparse hyperplane
(:func:`sparsify`) or another network (:func:`transfer`).  The walk's
settings are one :class:`GeodesicOptions`; its fields are also accepted as
keyword arguments.

Layout: ``_api.py`` (the public functions), ``_options.py`` (the settings),
``_walk.py`` (the walk), ``_hyperplane.py`` (target weights through
:mod:`moduli.targets` and the projection), ``_projection.py`` (masks),
``_params.py`` (the flat weight vector), ``_batches.py`` (the batch stream),
``_result.py`` (:class:`GeodesicPath`), ``_metric.py`` and ``_trust.py``
(the metric and the step of Eq. 7), ``data.py`` (IDX / MNIST files).

Examples
--------
>>> import torch
>>> from moduli import geodesic, targets
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
>>> path = geodesic.sparsify(net, torch.randn(64, 4), 0.75, steps=10, lanczos_iters=8, progress=False)
>>> round(targets.sparsity(path.model), 4)
0.75
"""

from ._api import line_length, sparsify, transfer
from ._hyperplane import target_parameters, target_weights
from ._metric import METRICS, FunctionalMetric
from ._options import GeodesicOptions
from ._projection import apply_masks, magnitude_masks, unit_masks
from ._result import GeodesicPath
from ._trust import StepInfo, solve_small_trust_region, trust_region_step
from .data import load_idx, load_mnist

__all__ = [
    "sparsify", "transfer", "GeodesicPath", "GeodesicOptions", "line_length", "target_weights",
    "target_parameters",
    "FunctionalMetric", "METRICS", "trust_region_step", "solve_small_trust_region", "StepInfo",
    "magnitude_masks", "unit_masks", "apply_masks", "load_idx", "load_mnist",
]
