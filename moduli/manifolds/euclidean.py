"""Euclidean space R^k."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _validate
from .base import GeomstatsMatch, Manifold, safe_sqrt
from ._geomstats import geomstats_import

__all__ = ["Euclidean", "squared_norm_of_difference"]


def squared_norm_of_difference(x: Tensor, y: Tensor) -> Tensor:
    """``sum_k (x_k - y_k)^2`` over the last axis, one coordinate at a time.

    Broadcasting ``x[:, None]`` against ``y[None]`` gives an (n, m) result
    without the (n, m, k) difference tensor, and without the cancellation of
    the ``|x|^2 + |y|^2 - 2 x.y`` trick.
    """
    total = None
    for k in range(x.shape[-1]):
        diff = x[..., k] - y[..., k]
        total = diff * diff if total is None else total + diff * diff
    return total


class Euclidean(Manifold):
    """Euclidean space ``R^dim`` with the straight-line distance.

    ``R^dim`` has no uniform distribution; :meth:`random_uniform` samples the
    cube ``[0, extent)^dim`` (the paper initialises R^3 embeddings in
    ``[0, 10]^3``, Appendix H).

    Parameters
    ----------
    dim : int
        Dimension k >= 1.
    extent : float
        Side of the sampling cube.

    Examples
    --------
    >>> import torch
    >>> from moduli import manifolds as mf
    >>> E = mf.Euclidean(2)
    >>> E.dist(torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0]))
    tensor(5.)
    """

    def __init__(self, dim: int, *, extent: float = 10.0):
        self.dim = self.coord_dim = _validate.integer(dim, "dim", minimum=1)
        self.extent = _validate.positive(extent, "extent")
        self.diameter = math.inf

    def _dist(self, x: Tensor, y: Tensor) -> Tensor:
        return safe_sqrt(squared_norm_of_difference(x, y))

    def _random_uniform(self, n, generator, dtype, device) -> Tensor:
        u = torch.rand(n, self.dim, generator=generator, dtype=dtype, device=device)
        return self.extent * u

    def geomstats_equivalent(self) -> GeomstatsMatch:
        with geomstats_import():
            from geomstats.geometry.euclidean import Euclidean as GsEuclidean

            space = GsEuclidean(self.dim)
        return GeomstatsMatch(space, lambda x: x.detach().cpu().double().numpy(), 1.0)

    def __repr__(self) -> str:
        return f"Euclidean(dim={self.dim})"
