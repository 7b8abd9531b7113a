"""Euclidean space R^k."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _validate
from .base import GeomstatsMatch, Manifold, safe_sqrt
from ._geomstats import geomstats_import

__all__ = ["Euclidean", "squared_norm_of_difference", "norm_of_difference"]

# (integer dtype of the same width, mask of the exponent field) per float dtype
_EXPONENT_FIELD = {
    torch.float64: (torch.int64, 0x7FF0000000000000),
    torch.float32: (torch.int32, 0x7F800000),
    torch.float16: (torch.int16, 0x7C00),
    torch.bfloat16: (torch.int16, 0x7F80),
}


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


def _power_of_two_at_most(m: Tensor) -> Tensor:
    """``2**floor(log2(m))`` for normal ``m > 0``, read exactly from the exponent bits.

    0 for 0 and subnormal ``m``, inf for inf; ``m`` must be non-negative.
    """
    int_dtype, mask = _EXPONENT_FIELD[m.dtype]
    return (m.view(int_dtype) & mask).view(m.dtype)


def _power_of_two_range(dtype: torch.dtype) -> tuple[float, float]:
    """Smallest and largest normal powers of two of ``dtype``."""
    info = torch.finfo(dtype)
    return info.tiny, math.ldexp(1.0, math.frexp(info.max)[1] - 1)


def norm_of_difference(x: Tensor, y: Tensor) -> Tensor:
    """``|x - y|`` over the last axis, without overflow or underflow in the squares.

    Each pair is scaled by a power of two ``s = 1 / p`` before squaring and
    the norm multiplied back by ``p``, where ``p`` is the larger of the two
    points' largest coordinates rounded down to a power of two (read from the
    exponent bits; one value per point, so the per-pair cost is a maximum,
    a reciprocal and ``k + 1`` products). Every scaled difference is then at
    most 4, so the squares cannot overflow; they underflow only for
    coordinate differences below about ``2**-511`` (float64) times the
    points' largest coordinate, negligible at the points' precision unless
    every coordinate differs that little (then, as with the plain formula,
    such a difference is lost).

    Multiplying by a power of two is exact and rounding commutes with it, so
    wherever the plain ``sqrt(sum_k (x_k - y_k)^2)`` stays in the normal range
    the result, and its gradient, are bit for bit the plain ones (``p`` is a
    constant for autograd). Where the plain squares overflow
    (``|x - y| > 1.3e154`` in float64, ``1.8e19`` in float32, ``255`` in
    float16) the distance is still finite and accurate; it is ``inf`` only
    when the distance itself exceeds the dtype's range. The gradient is
    finite (zero) at ``x = y``.
    """
    if x.dtype not in _EXPONENT_FIELD:
        return safe_sqrt(squared_norm_of_difference(x, y))
    lo, hi = _power_of_two_range(x.dtype)
    with torch.no_grad():
        # clamped: all-zero or subnormal points get the smallest normal power,
        # the largest finite coordinates the largest power (never 0 or inf)
        px = _power_of_two_at_most(torch.abs(x).amax(-1)).clamp_(lo, hi)
        py = _power_of_two_at_most(torch.abs(y).amax(-1)).clamp_(lo, hi)
        p = torch.maximum(px, py)
        s = torch.reciprocal(p)
    total = None
    for k in range(x.shape[-1]):
        diff = (x[..., k] - y[..., k]) * s
        total = diff * diff if total is None else total + diff * diff
    return p * safe_sqrt(total)


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
        return norm_of_difference(x, y)

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
