"""Check a metric space against the contract every :class:`Manifold` must meet.

:func:`check_manifold` draws points with the space's own ``random_uniform``
(plain torch, no test framework needed) and checks the metric axioms and the
``dist``/``cdist`` contract. Call it on a space you wrote; the project's test
suite calls it on every built-in space.

>>> from moduli import manifolds as mf
>>> from moduli.manifolds.testing import check_manifold
>>> report = check_manifold(mf.KleinBottle(10.0))
>>> report.space
'KleinBottle(side=10)'
>>> report.errors["triangle inequality"] <= report.atol
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .. import _validate
from .base import Manifold, resolve_dtype

__all__ = ["check_manifold", "ManifoldCheckError", "ManifoldReport"]

# Absolute tolerance per unit of distance scale (see check_manifold's atol).
_ATOL = {torch.float16: 1e-2, torch.bfloat16: 1e-2, torch.float32: 1e-4}
_ATOL_DEFAULT = 1e-9


class ManifoldCheckError(AssertionError):
    """A space breaks a property of the manifold contract.

    Attributes
    ----------
    property : str
        The property that fails, e.g. ``"symmetry"`` or ``"triangle inequality"``.
    space : str
        ``repr`` of the space.
    """

    def __init__(self, prop: str, space: str, detail: str):
        self.property = prop
        self.space = space
        super().__init__(f"{prop} fails for {space}: {detail}")


@dataclass(frozen=True)
class ManifoldReport:
    """What :func:`check_manifold` checked and how close the space came to failing.

    Attributes
    ----------
    space : str
        ``repr`` of the space.
    n : int
        Points per sample.
    dtype : torch.dtype
        dtype of the points.
    atol : float
        Absolute tolerance used for the properties that allow rounding.
    max_distance : float
        Largest distance seen (``cdist`` of the first sample).
    errors : dict of str to float
        For every property checked, the largest violation observed (0.0 when
        none; properties that must hold exactly are listed with 0.0).
        Gradient properties appear only for differentiable spaces.
    """

    space: str
    n: int
    dtype: torch.dtype
    atol: float
    max_distance: float
    errors: dict

    @property
    def checks(self) -> tuple:
        """Names of the properties checked, in order."""
        return tuple(self.errors)


def check_manifold(
    M: Manifold,
    *,
    n: int = 64,
    generator: Optional[torch.Generator] = None,
    dtype: torch.dtype = torch.float64,
    device=None,
    atol: Optional[float] = None,
) -> ManifoldReport:
    """Check the metric axioms and the ``dist``/``cdist`` contract of ``M``.

    Three samples ``x, y, z`` of ``n`` points each are drawn with
    ``M.random_uniform``. The checks, in order (each property's name is the
    one used in error messages and in :attr:`ManifoldReport.errors`):

    * ``random_uniform``: shape ``(n, coord_dim)``, the requested dtype and
      device, points accepted by ``M.check_points``, and the same points
      again from the same generator state;
    * ``dist shape``: ``dist(x, y)`` has shape ``(n,)`` and the inputs' dtype
      and device, ``cdist(x, y)`` shape ``(n, n)``;
    * ``finite``: every distance is finite;
    * ``non-negativity``: ``d(x, y) >= 0``;
    * ``identity``: ``d(x, x) <= atol``;
    * ``symmetry``: ``|d(x, y) - d(y, x)| <= atol``;
    * ``triangle inequality``: ``d(x, z) <= d(x, y) + d(y, z) + atol`` on the
      paired samples and on every triple of the first 64 points of ``x``;
    * ``dist is the diagonal of cdist``: ``dist(x, y)`` against
      ``diag(cdist(x, y))``, ``dist(x[:, None], y[None])`` against
      ``cdist(x, y)``, and ``cdist(x)`` against ``cdist(x, x.clone())``;
    * ``cdist(x) exactly symmetric``: ``cdist(x)`` equals its transpose bit
      for bit and has an exactly zero diagonal;
    * ``diameter``: every distance ``<= M.diameter + atol`` (when finite);
    * for differentiable spaces, ``cdist with autograd``: the autograd path of
      ``cdist`` agrees with the no-grad path, and ``finite gradients``: the
      gradients of ``dist`` at coincident points, of ``cdist(x)`` (whose
      diagonal is coincident pairs) and of ``dist(x, y)`` are finite.

    Parameters
    ----------
    M : Manifold
        The space to check.
    n : int
        Points per sample, ``n >= 2``.
    generator : torch.Generator, optional
        Source of the points; a fresh generator seeded with 0 if ``None``, so
        that a failure can be reproduced.
    dtype : torch.dtype
        Floating-point dtype of the points.
    device : torch.device or str, optional
        Where to sample (as in ``random_uniform``).
    atol : float, optional
        Absolute tolerance for the properties that allow rounding. Default:
        ``1e-9`` for float64, ``1e-4`` for float32, ``1e-2`` for half
        precision, times ``max(1, scale)`` with ``scale`` the diameter if
        finite, else the largest sampled distance.

    Returns
    -------
    ManifoldReport
        The largest violation seen per property (every one within tolerance).

    Raises
    ------
    ManifoldCheckError
        A subclass of ``AssertionError``, on the first property that fails;
        the message names the property, the space, the worst offending point
        or pair (indices into the samples) and its value.
    TypeError, ValueError
        If ``M`` is not a :class:`Manifold` or an argument is invalid.
    """
    if not isinstance(M, Manifold):
        raise TypeError(f"M must be a moduli Manifold; got {type(M).__name__}")
    n = _validate.integer(n, "n", minimum=2)
    dtype = resolve_dtype(dtype)
    if atol is not None:
        atol = _validate.nonnegative(atol, "atol")
    if generator is None:
        generator = torch.Generator(device="cpu" if device is None else device).manual_seed(0)
    space = repr(M)
    errors: dict = {}

    def fail(prop: str, detail: str):
        raise ManifoldCheckError(prop, space, detail)

    # ------------------------------------------------------------ sampling
    state = generator.get_state()
    x = M.random_uniform(n, generator=generator, dtype=dtype, device=device)
    after = generator.get_state()
    generator.set_state(state)
    x_again = M.random_uniform(n, generator=generator, dtype=dtype, device=device)
    generator.set_state(after)
    want_device = torch.device(device) if device is not None else generator.device
    if not isinstance(x, Tensor) or tuple(x.shape) != (n, M.coord_dim):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        fail("random_uniform", f"random_uniform({n}) must return shape ({n}, {M.coord_dim}); got {got}")
    if x.dtype != dtype or x.device.type != want_device.type:
        fail("random_uniform", f"asked for {dtype} on {want_device}; got {x.dtype} on {x.device}")
    try:
        M.check_points(x, "random_uniform points")
    except ValueError as exc:
        fail("random_uniform", f"its points are rejected by check_points: {exc}")
    if not torch.equal(x, x_again):
        fail("random_uniform", "the same generator state gave different points")
    y = M.random_uniform(n, generator=generator, dtype=dtype, device=device)
    z = M.random_uniform(n, generator=generator, dtype=dtype, device=device)
    errors["random_uniform"] = 0.0

    # ------------------------------------------------------------- metric
    with torch.no_grad():
        dxy, dyx = M.dist(x, y), M.dist(y, x)
        dxz, dyz, dxx = M.dist(x, z), M.dist(y, z), M.dist(x, x)
        Dxy = M.cdist(x, y)
        D = M.cdist(x)
    for name, t, shape in [("dist(x, y)", dxy, (n,)), ("cdist(x, y)", Dxy, (n, n)), ("cdist(x)", D, (n, n))]:
        if tuple(t.shape) != shape or t.dtype != dtype or t.device != x.device:
            fail("dist shape", f"{name} must have shape {shape}, dtype {dtype} and device {x.device}; got "
                               f"shape {tuple(t.shape)}, {t.dtype} on {t.device}")
    errors["dist shape"] = 0.0
    for name, t in [("dist(x, y)", dxy), ("dist(x, x)", dxx), ("cdist(x, y)", Dxy), ("cdist(x)", D)]:
        bad = (~torch.isfinite(t)).nonzero()
        if len(bad):
            fail("finite", f"{name} has {len(bad)} non-finite entries, first at index {tuple(bad[0].tolist())}: "
                           f"{float(t[tuple(bad[0])])}")
    errors["finite"] = 0.0

    max_distance = float(torch.cat([D.flatten(), Dxy.flatten()]).max())
    if atol is None:
        scale = M.diameter if math.isfinite(M.diameter) else max_distance
        atol = _ATOL.get(dtype, _ATOL_DEFAULT) * max(1.0, scale)

    def worst_pair(err: Tensor) -> tuple:
        k = int(torch.argmax(err.flatten()))
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(k), err.shape))
        return idx, float(err.flatten()[k])

    def bound(prop: str, err: Tensor, what: str, tol: float):
        """Record the largest of ``err`` under ``prop``; fail if it exceeds ``tol``."""
        idx, value = worst_pair(err) if err.numel() else ((), 0.0)
        if value > tol:
            fail(prop, f"{what}; worst at index {idx}: {value:.6g} (tolerance {tol:.3g})")
        errors[prop] = max(errors.get(prop, 0.0), value)

    for name, t in [("dist(x, y)", dxy), ("dist(x, x)", dxx), ("cdist(x, y)", Dxy), ("cdist(x)", D)]:
        bound("non-negativity", -t, f"{name} has negative entries (shown negated)", 0.0)
    bound("identity", dxx, "d(x[i], x[i]) is not 0", atol)
    bound("symmetry", (dxy - dyx).abs(), "|d(x[i], y[i]) - d(y[i], x[i])|", atol)
    bound("triangle inequality", dxz - dxy - dyz, "d(x[i], z[i]) - d(x[i], y[i]) - d(y[i], z[i])", atol)
    m = min(n, 64)
    Dm = D[:m, :m]
    # excess[i, j, k] = d(i, k) - d(i, j) - d(j, k) over triples of points of x
    excess = Dm[:, None, :] - Dm[:, :, None] - Dm[None, :, :]
    bound("triangle inequality", excess, "d(x[i], x[k]) - d(x[i], x[j]) - d(x[j], x[k]) at (i, j, k)", atol)

    with torch.no_grad():
        broadcast = M.dist(x[:, None], y[None])
        D_two = M.cdist(x, x.clone())
    bound("dist is the diagonal of cdist", (torch.diagonal(Dxy) - dxy).abs(),
          "|cdist(x, y)[i, i] - dist(x, y)[i]|", atol)
    bound("dist is the diagonal of cdist", (broadcast - Dxy).abs(),
          "|dist(x[:, None], y[None]) - cdist(x, y)| at (i, j)", atol)
    bound("dist is the diagonal of cdist", (D - D_two).abs(), "|cdist(x) - cdist(x, x.clone())| at (i, j)", atol)

    if not torch.equal(D, D.T):
        idx, value = worst_pair((D - D.T).abs())
        fail("cdist(x) exactly symmetric", f"cdist(x) differs from its transpose; worst at {idx}: {value:.3g}")
    diag = torch.diagonal(D).abs()
    if bool((diag != 0).any()):
        idx, value = worst_pair(diag)
        fail("cdist(x) exactly symmetric", f"cdist(x) has a nonzero diagonal entry at {idx}: {value:.3g}")
    errors["cdist(x) exactly symmetric"] = 0.0

    diameter = M.diameter
    if not isinstance(diameter, (int, float)) or math.isnan(diameter) or diameter < 0:
        fail("diameter", f"diameter must be a non-negative number or inf; got {diameter!r}")
    if math.isfinite(diameter):
        for name, t in [("dist(x, y)", dxy), ("cdist(x, y)", Dxy), ("cdist(x)", D)]:
            bound("diameter", t - diameter, f"{name} exceeds the diameter {diameter:.6g} (excess shown)", atol)

    # ----------------------------------------------------------- gradients
    if M.differentiable:
        k = min(n, 16)
        xg = x.clone().requires_grad_()
        with_grad = M.cdist(xg, y)
        if not with_grad.requires_grad:
            fail("cdist with autograd", "cdist of points that require grad returned a tensor without a graph")
        bound("cdist with autograd", (with_grad.detach() - Dxy).abs(),
              "|cdist(x, y) with autograd - without| at (i, j)", atol)
        for what, make in [
            ("dist(x, x) (coincident points)", lambda a: M.dist(a, a.detach()).sum()),
            ("cdist(x) (its diagonal is coincident pairs)", lambda a: M.cdist(a).sum()),
            ("dist(x, y)", lambda a: M.dist(a, y[:k]).sum()),
        ]:
            a = x[:k].clone().requires_grad_()
            (grad,) = torch.autograd.grad(make(a), (a,))
            bad = (~torch.isfinite(grad)).any(-1).nonzero()
            if len(bad):
                i = int(bad[0])
                fail("finite gradients", f"the gradient of {what} is not finite at point {i}: "
                                         f"{grad[i].tolist()}")
        errors["finite gradients"] = 0.0

    return ManifoldReport(space=space, n=n, dtype=dtype, atol=float(atol), max_distance=max_distance,
                          errors=dict(errors))
