"""Products of metric spaces with the L2 product metric."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .base import GeomstatsMatch, Manifold, component_spaces, safe_sqrt
from ._geomstats import geomstats_import

__all__ = ["Product"]


class Product(Manifold):
    """The product ``M_1 x ... x M_r`` with ``d = sqrt(sum_i d_i^2)``.

    A point is the concatenation of the factors' coordinates.

    Examples
    --------
    >>> import torch
    >>> from moduli import manifolds as mf
    >>> P = mf.Product(mf.Circle(1.0), mf.Euclidean(1))
    >>> P.coord_dim
    3
    """

    def __init__(self, *spaces: Manifold):
        self.spaces = component_spaces(spaces, "Product")
        self.coord_dim = sum(s.coord_dim for s in spaces)
        self.dim = sum(s.dim for s in spaces)
        self.diameter = math.sqrt(sum(s.diameter ** 2 for s in spaces))
        self.differentiable = all(s.differentiable for s in spaces)
        bounds = np.cumsum([0] + [s.coord_dim for s in spaces])
        self._slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

    def split(self, x: Tensor) -> list[Tensor]:
        """The factors' coordinates of ``x``."""
        return [x[..., sl] for sl in self._slices]

    def _dist(self, x: Tensor, y: Tensor) -> Tensor:
        total = None
        for space, xs, ys in zip(self.spaces, self.split(x), self.split(y)):
            d = space._dist(xs, ys)
            total = d * d if total is None else total + d * d
        return safe_sqrt(total)

    def _cdist_block(self, x: Tensor, y: Tensor) -> Tensor:
        total = None
        for space, xs, ys in zip(self.spaces, self.split(x), self.split(y)):
            d = space._cdist_block(xs, ys)
            total = d * d if total is None else total + d * d
        return safe_sqrt(total)

    def _check(self, x: Tensor, name: str) -> None:
        for i, (space, xs) in enumerate(zip(self.spaces, self.split(x))):
            space._check(xs, f"{name} (factor {i}, {space!r})")

    def from_unconstrained(self, u: Tensor) -> Tensor:
        return torch.cat([s.from_unconstrained(p) for s, p in zip(self.spaces, self.split(u))], -1)

    def to_unconstrained(self, x: Tensor) -> Tensor:
        return torch.cat([s.to_unconstrained(p) for s, p in zip(self.spaces, self.split(x))], -1)

    def _random_uniform(self, n, generator, dtype, device) -> Tensor:
        parts = [s.random_uniform(n, generator=generator, dtype=dtype, device=device) for s in self.spaces]
        return torch.cat(parts, dim=-1)

    def geomstats_equivalent(self):
        """geomstats' ProductManifold of the factors' spaces, when every factor
        has a vector-shaped geomstats equivalent and all share one scale."""
        matches = [s.geomstats_equivalent() for s in self.spaces]
        if any(m is None or len(m.space.shape) != 1 for m in matches):
            return None
        scales = {round(m.scale, 12) for m in matches}
        if len(scales) != 1:
            return None
        with geomstats_import():
            from geomstats.geometry.product_manifold import ProductManifold

            space = ProductManifold([m.space for m in matches])

        def to_gs(x: Tensor):
            parts = [m.to_geomstats(p) for m, p in zip(matches, self.split(x))]
            return np.concatenate(parts, axis=-1)

        return GeomstatsMatch(space, to_gs, matches[0].scale)

    def __repr__(self) -> str:
        return "Product(" + ", ".join(repr(s) for s in self.spaces) + ")"
