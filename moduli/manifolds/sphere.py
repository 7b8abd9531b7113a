"""Round spheres S^dim of any radius, and the circle."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _validate
from .base import _needs_grad, GeomstatsMatch, Manifold, overrides, safe_sqrt, tolerance, wrap
from ._geomstats import geomstats_import
from .euclidean import squared_norm_of_difference

__all__ = ["Sphere", "Circle"]

# acos(t) is well conditioned for |t| <= 0.98: d acos / dt <= 5.1, so float32
# rounding of the Gram entry costs at most ~3e-7 rad.
_ACOS_SAFE = 0.98


def _squared_norm_of_sum(x: Tensor, y: Tensor) -> Tensor:
    total = None
    for k in range(x.shape[-1]):
        s = x[..., k] + y[..., k]
        total = s * s if total is None else total + s * s
    return total


class Sphere(Manifold):
    """The sphere ``{x in R^(dim+1) : |x| = radius}`` with great-circle distance.

    The distance is ``2 r atan2(|x - y|, |x + y|)`` (for points of norm r),
    accurate for nearby and for antipodal points and with finite gradients at
    both, unlike ``r acos(<x, y> / r^2)``.

    Parameters
    ----------
    dim : int
        Intrinsic dimension (2 for the ordinary sphere).
    radius : float
        The paper uses radius 5 (Appendix D).

    Examples
    --------
    >>> import torch
    >>> from moduli import manifolds as mf
    >>> S = mf.Sphere(2, radius=5.0)
    >>> north, south = torch.tensor([0.0, 0.0, 5.0]), torch.tensor([0.0, 0.0, -5.0])
    >>> S.dist(north, south)  # antipodes: pi * radius
    tensor(15.7080)
    """

    def __init__(self, dim: int = 2, radius: float = 1.0):
        self.dim = _validate.integer(dim, "dim", minimum=1)
        self.coord_dim = self.dim + 1
        self.radius = _validate.positive(radius, "radius")
        self.diameter = math.pi * self.radius

    def _dist(self, x: Tensor, y: Tensor) -> Tensor:
        # a = |x - y|, b = |x + y|; a^2 + b^2 = 4 r^2 > 0 so atan2 is smooth.
        a = safe_sqrt(squared_norm_of_difference(x, y))
        b = safe_sqrt(_squared_norm_of_sum(x, y))
        return (2.0 * self.radius) * torch.atan2(a, b)

    def _cdist_block(self, x: Tensor, y: Tensor) -> Tensor:
        """Pairwise distances; without autograd, a Gram-matrix fast path.

        ``r acos(<x, y> / r^2)`` is fast (one matrix product) and accurate
        while ``|cos| <= _ACOS_SAFE``; the few pairs beyond (nearly equal or
        nearly antipodal points, about 2% of uniform pairs on S^2) are
        recomputed with the atan2 form. With autograd the atan2 form is used
        throughout, for its finite gradients.

        The fast path computes the great-circle distance, so it runs only
        while ``_dist`` is :meth:`Sphere._dist`: a subclass that overrides
        ``_dist`` (``Circle``, or a quotient such as RP^n written as a
        sphere) gets the default, :meth:`_dist` broadcast over the block.
        """
        if _needs_grad(x, y) or overrides(self, Sphere, "_dist"):
            return super()._cdist_block(x, y)
        r = self.radius
        out = torch.mm(x / r, (y / r).T).clamp_(-1.0, 1.0)
        near = (out.abs() > _ACOS_SAFE).nonzero()
        out.acos_().mul_(r)
        if near.numel():
            i, j = near[:, 0], near[:, 1]
            out[i, j] = self._dist(x[i], y[j])
        return out

    def _check(self, x: Tensor, name: str) -> None:
        norms = torch.linalg.vector_norm(x, dim=-1)
        err = float((norms - self.radius).abs().max()) if norms.numel() else 0.0
        if err > tolerance(x.dtype) * self.radius:
            raise ValueError(
                f"{name} must lie on the sphere of radius {self.radius} (|x| = radius); the "
                f"largest deviation of |{name}| from the radius is {err:.3g}. "
                f"Use {type(self).__name__}.project to move points onto the sphere."
            )

    def project(self, x: Tensor) -> Tensor:
        """Radial projection of nonzero points onto the sphere."""
        norms = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError("x contains the zero vector, which has no radial projection")
        return self.radius * x / norms

    def from_unconstrained(self, u: Tensor) -> Tensor:
        """``radius * u / |u|`` (the norm is floored at a dtype-sized epsilon)."""
        norm = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
        return self.radius * u / norm.clamp_min(torch.finfo(u.dtype).eps)

    def _random_uniform(self, n, generator, dtype, device) -> Tensor:
        g = torch.randn(n, self.coord_dim, generator=generator, dtype=dtype, device=device)
        # A standard normal vector is zero with probability 0; guard anyway.
        norms = torch.linalg.vector_norm(g, dim=-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        return self.radius * g / norms

    def geomstats_equivalent(self) -> GeomstatsMatch:
        with geomstats_import():
            from geomstats.geometry.hypersphere import Hypersphere

            space = Hypersphere(self.dim)
        r = self.radius
        return GeomstatsMatch(space, lambda x: (x.detach().cpu().double() / r).numpy(), r)

    def __repr__(self) -> str:
        return f"Sphere(dim={self.dim}, radius={self.radius:g})"


class Circle(Sphere):
    """The circle ``{x in R^2 : |x| = radius}`` with arc-length distance.

    Same metric as ``Sphere(dim=1, radius=radius)``; the paper's circle has
    radius 5 (Appendix D). Distances are computed from polar angles, one
    ``atan2`` per point and a wrap per pair.
    """

    def __init__(self, radius: float = 1.0):
        super().__init__(1, radius)

    def _dist(self, x: Tensor, y: Tensor) -> Tensor:
        # arc length from polar angles: r |wrap(theta_x - theta_y, 2 pi)|
        tx = torch.atan2(x[..., 1], x[..., 0])
        ty = torch.atan2(y[..., 1], y[..., 0])
        return self.radius * wrap(tx - ty, 2.0 * math.pi)

    def __repr__(self) -> str:
        return f"Circle(radius={self.radius:g})"
