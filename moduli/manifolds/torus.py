"""Flat tori R^dim / period Z^dim."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .. import _validate
from .base import GeomstatsMatch, Manifold, safe_sqrt, wrap
from ._geomstats import geomstats_import

__all__ = ["FlatTorus"]


class FlatTorus(Manifold):
    """The flat torus ``R^dim / (period Z)^dim``.

    Points are coordinate vectors; any real coordinates are accepted and
    stand for their class, so trained embeddings may drift freely. Samples
    lie in ``[0, period)^dim``. The distance is
    ``sqrt(sum_k w(x_k - y_k)^2)`` with ``w(t)`` the distance from ``t`` to
    the nearest multiple of the period.

    Parameters
    ----------
    dim : int
        2 for the paper's torus, 6 for its 6-torus.
    period : float
        The paper uses 10 (Appendix D).

    Examples
    --------
    >>> import torch
    >>> from moduli import manifolds as mf
    >>> T = mf.FlatTorus(2, period=10.0)
    >>> T.dist(torch.tensor([0.5, 0.0]), torch.tensor([9.5, 0.0]))
    tensor(1.)
    """

    def __init__(self, dim: int = 2, period: float = 1.0):
        self.dim = self.coord_dim = _validate.integer(dim, "dim", minimum=1)
        self.period = _validate.positive(period, "period")
        self.diameter = 0.5 * self.period * math.sqrt(self.dim)

    def _dist(self, x: Tensor, y: Tensor) -> Tensor:
        total = None
        for k in range(self.dim):
            w = wrap(x[..., k] - y[..., k], self.period)
            total = w * w if total is None else total + w * w
        return safe_sqrt(total)

    def canonical(self, x: Tensor) -> Tensor:
        """The representative of each point in ``[0, period)^dim``."""
        return torch.remainder(x, self.period)

    def _random_uniform(self, n, generator, dtype, device) -> Tensor:
        return self.period * torch.rand(n, self.dim, generator=generator, dtype=dtype, device=device)

    def geomstats_equivalent(self) -> GeomstatsMatch:
        """geomstats has no flat torus: a product of unit circles with angle 2 pi x / period."""
        with geomstats_import():
            from geomstats.geometry.hypersphere import Hypersphere
            from geomstats.geometry.product_manifold import ProductManifold

            space = ProductManifold([Hypersphere(1) for _ in range(self.dim)])
        p = self.period

        def to_gs(x: Tensor):
            angle = 2.0 * np.pi * x.detach().cpu().double().numpy() / p
            return np.stack([np.cos(angle), np.sin(angle)], axis=-1)

        return GeomstatsMatch(space, to_gs, p / (2.0 * math.pi))

    def __repr__(self) -> str:
        return f"FlatTorus(dim={self.dim}, period={self.period:g})"
