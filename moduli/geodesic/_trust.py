"""The trust-region step of Eq. 7, solved matrix-free.

Eq. 7 of the geodesic-sparsification paper asks, at the current weights
``w``, for the tangent vector

.. math::

    \\theta^\\star = \\arg\\min_{\\theta}\\; \\theta^T g_w \\theta - \\beta\\,\\theta^T v
    \\quad\\text{subject to}\\quad \\theta^T\\theta \\le \\varepsilon ,

with ``g_w`` symmetric positive semi-definite.  Its KKT conditions are
``(g + lam I) theta = beta v / 2`` with ``lam >= 0`` and
``lam (|theta|^2 - eps) = 0``.

We never form ``g``.  A Lanczos process started at ``v`` builds an
orthonormal basis ``Q`` of the Krylov space ``span{v, g v, ..., g^{k-1} v}``
(with full re-orthogonalisation, ``k`` vectors of memory) and the tridiagonal
``T = Q^T g Q``; the small problem ``min y^T T y - beta |v| y_1``,
``|y|^2 <= eps`` is solved exactly through the eigen-decomposition of ``T``
and a safeguarded Newton iteration on the multiplier, and ``theta = Q y``.  This is the
generalised-Lanczos trust-region method; when the Krylov space is exhausted
(``k`` reaches the dimension, or the recurrence breaks down) the answer is the
exact solution of Eq. 7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .. import _validate

__all__ = ["trust_region_step", "StepInfo", "solve_small_trust_region"]


@dataclass(frozen=True)
class StepInfo:
    """Diagnostics of one trust-region step.

    Attributes
    ----------
    lam : float
        The Lagrange multiplier of the norm constraint (0 when the
        unconstrained minimiser lies strictly inside the ball).
    quad : float
        ``theta^T g theta`` (exact for ``theta`` in the Krylov space).
    lin : float
        ``theta^T v``.
    objective : float
        ``quad - beta * lin``.
    iterations : int
        Matrix-vector products with ``g`` used by the Lanczos process.
    boundary : bool
        Whether the step lies on the trust-region boundary.
    residual : float
        Relative residual ``|2 (g + lam I) theta − beta v| / (beta |v|)`` of
        the KKT system, from the Lanczos recurrence (0 when the Krylov space
        is exhausted).
    """

    lam: float
    quad: float
    lin: float
    objective: float
    iterations: int
    boundary: bool
    residual: float = 0.0


def solve_small_trust_region(T, c: float, radius: float) -> tuple[np.ndarray, float]:
    """Solve ``min y^T T y - c y_1  s.t. |y| <= radius`` for a small dense ``T``.

    Uses the eigen-decomposition ``T = U diag(d) U^T``: the minimiser is
    ``y(lam) = U (c U[0]) / (2 (d + lam))`` with the multiplier ``lam``
    either 0 (interior, pseudo-inverse solution inside the ball) or the root
    of ``|y(lam)| = radius``, found by safeguarded Newton iterations on
    ``1/|y(lam)| - 1/radius`` (the Moré-Sorensen secular equation).

    Parameters
    ----------
    T : array-like, shape=[k, k]
        Symmetric positive semi-definite matrix.
    c : float
        Coefficient of the linear term along the first basis vector.
    radius : float
        Trust-region radius, ``> 0``.

    Returns
    -------
    y : numpy.ndarray, shape=[k]
        The minimiser (float64).
    lam : float
        Its multiplier ``>= 0``.

    Examples
    --------
    >>> import numpy as np
    >>> y, lam = solve_small_trust_region(np.diag([1.0, 2.0]), 2.0, 0.5)
    >>> np.round(y, 6).tolist(), round(lam, 6)  # boundary: y = c/(2(1+lam)) e1, |y| = 0.5
    ([0.5, 0.0], 1.0)
    """
    T = np.asarray(T, dtype=np.float64)
    k = T.shape[0]
    if k == 0 or c == 0.0:
        return np.zeros(k), 0.0
    d, U = np.linalg.eigh(T)
    a = c * U[0, :]  # U^T (c e1)
    scale = max(float(np.abs(d).max()), 1e-300)
    zero = d <= 1e-12 * scale
    lo = max(0.0, -float(d.min()))

    def norm(lam: float) -> float:
        return float(np.sqrt(np.sum((a / (2.0 * (d + lam))) ** 2)))

    # Interior solution (lam = 0): the linear term must lie in range(T) and
    # the pseudo-inverse solution must fit inside the ball.
    if np.all(np.abs(a[zero]) <= 1e-12 * abs(c)) and lo <= 1e-12 * scale:
        z = np.where(zero, 0.0, a / (2.0 * np.where(zero, 1.0, d)))
        if float(np.linalg.norm(z)) <= radius:
            return U @ z, 0.0
    # Boundary: |y(lam)| = radius, |y| decreasing in lam on (lo, inf).
    left, right = lo, lo + float(np.linalg.norm(a)) / (2.0 * radius)
    lam = right
    for _ in range(100):
        z = a / (2.0 * (d + lam))
        nz = float(np.sqrt(np.sum(z * z)))
        if abs(nz - radius) <= 1e-13 * radius:
            break
        if nz > radius:
            left = lam
        else:
            right = lam
        # Newton on phi(lam) = 1/|z| - 1/radius; d|z|^2/dlam = -2 sum z^2/(d+lam)
        dn2 = -2.0 * float(np.sum(z * z / (d + lam)))
        step = (1.0 / nz - 1.0 / radius) / (-0.5 * dn2 / nz**3) if dn2 != 0 else 0.0
        new = lam - step
        lam = new if left < new < right else 0.5 * (left + right)
        if right - left <= 1e-15 * max(right, 1e-300):
            break
    z = a / (2.0 * (d + lam))
    # rescale onto the sphere (removes the last relative error of the root)
    z = z * (radius / float(np.linalg.norm(z)))
    return U @ z, float(lam)


def trust_region_step(
    matvec: Callable[[Tensor], Tensor],
    v: Tensor,
    *,
    eps: float,
    beta: float,
    max_iter: int = 20,
    radius: float | None = None,
    rtol: float | None = None,
) -> tuple[Tensor, StepInfo]:
    """One matrix-free step of Eq. 7: ``argmin θᵀgθ − β θᵀv`` s.t. ``θᵀθ ≤ eps``.

    Parameters
    ----------
    matvec : callable
        ``x -> g x`` for a symmetric positive semi-definite ``g``; takes and
        returns tensors shaped like ``v``.
    v : Tensor, shape=[n]
        Direction to move towards (the linear term).
    eps : float
        Squared trust-region radius (the paper uses 0.01).
    beta : float
        Weight of the linear term, ``> 0``.
    max_iter : int, optional
        Maximum number of Lanczos vectors (= products with ``g``).
    radius : float, optional
        Overrides ``sqrt(eps)`` as the radius (used to avoid overshooting a
        target closer than ``sqrt(eps)``).
    rtol : float, optional
        Stop the Lanczos process early once the subproblem's solution solves
        the full KKT system ``2 (g + lam I) theta = beta v`` to this relative
        residual (``2 b_k |y_k| / (beta |v|)``, read off the recurrence).
        ``None``: always use ``max_iter`` products.

    Returns
    -------
    theta : Tensor, shape=[n]
        The step (same dtype and device as ``v``).
    info : StepInfo
        Multiplier, objective terms and product count.

    Examples
    --------
    >>> import torch
    >>> G = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
    >>> v = torch.tensor([1.0, 1.0], dtype=torch.float64)
    >>> theta, info = trust_region_step(lambda x: G @ x, v, eps=100.0, beta=2.0)
    >>> theta  # interior: theta = beta/2 * G^{-1} v
    tensor([1.0000, 0.2500], dtype=torch.float64)
    """
    if not isinstance(v, Tensor) or v.ndim != 1:
        raise TypeError(f"v must be a 1-D tensor, got {type(v).__name__} with shape {getattr(v, 'shape', None)}")
    _validate.positive(eps, "eps")
    _validate.positive(beta, "beta")
    _validate.integer(max_iter, "max_iter", minimum=1)
    r = math.sqrt(eps) if radius is None else _validate.positive(radius, "radius")
    vnorm = float(v.norm())
    if not math.isfinite(vnorm):
        raise ValueError("v contains NaN or inf")
    if vnorm == 0.0:
        return torch.zeros_like(v), StepInfo(0.0, 0.0, 0.0, 0.0, 0, False)

    if rtol is not None:
        rtol = _validate.positive(rtol, "rtol")
    n = v.numel()
    k_max = min(max_iter, n)
    Q = torch.empty(k_max, n, dtype=v.dtype, device=v.device)
    Q[0] = v / vnorm
    alphas: list[float] = []
    betas: list[float] = []
    anorm = 0.0
    k = 0
    c = beta * vnorm  # the linear term is c · y_1 in the Lanczos basis
    b_last = 0.0  # the next off-diagonal coefficient: the residual of the Krylov solution
    for j in range(k_max):
        w = matvec(Q[j])
        if w.shape != v.shape:
            raise ValueError(f"matvec returned shape {tuple(w.shape)}, expected {tuple(v.shape)}")
        k = j + 1
        alpha = float(Q[j] @ w)
        alphas.append(alpha)
        w = w - alpha * Q[j]
        if j > 0:
            w = w - betas[-1] * Q[j - 1]
        # full re-orthogonalisation, twice is enough
        for _ in range(2):
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = float(w.norm())
        anorm = max(anorm, abs(alpha) + b + (betas[-1] if betas else 0.0))
        if b <= 1e-10 * max(anorm, 1e-300):
            b_last = 0.0
            break  # invariant subspace: exact solution lives in span(Q[:k])
        b_last = b
        if j + 1 == k_max:
            break
        if rtol is not None and j >= 1:
            y, _ = solve_small_trust_region(_tridiagonal(alphas, betas, k), c, r)
            if 2.0 * b * abs(float(y[-1])) <= rtol * c:
                break
        betas.append(b)
        Q[j + 1] = w / b
    T = _tridiagonal(alphas, betas, k)
    y, lam = solve_small_trust_region(T, c, r)
    res = 2.0 * b_last * abs(float(y[-1])) / c
    theta = Q[:k].T @ torch.as_tensor(y, dtype=v.dtype, device=v.device)
    quad = float(y @ T @ y)
    lin = float(y[0]) * vnorm
    boundary = lam > 0.0
    return theta, StepInfo(lam, quad, lin, quad - beta * lin, k, boundary, res)


def _tridiagonal(alphas: list[float], betas: list[float], k: int) -> np.ndarray:
    """The ``k × k`` Lanczos tridiagonal matrix."""
    T = np.diag(np.asarray(alphas[:k], dtype=np.float64))
    if k > 1:
        off = np.asarray(betas[: k - 1], dtype=np.float64)
        T = T + np.diag(off, 1) + np.diag(off, -1)
    return T
