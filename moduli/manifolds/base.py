"""The base class of every metric space in :mod:`moduli.manifolds`.

A space needs three things: ``coord_dim`` (length of a point's coordinate
vector), ``_random_uniform`` (the sampling behind ``random_uniform``) and
``_dist`` (the geodesic distance of two broadcast-compatible batches of
points). Everything else -- validation,
pairwise ``cdist`` with bounded memory, the unconstrained parametrization used
by trained embeddings -- is derived here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from .. import _validate

__all__ = ["Manifold", "GeomstatsMatch", "safe_sqrt", "wrap", "tolerance"]

# Entries per block of a pairwise distance matrix computed without autograd:
# 2**18 entries is 1 MB of float32 per temporary, small enough to stay in
# cache and to be recycled by the allocator instead of page-faulted afresh.
_BLOCK_ENTRIES = 2**18


def tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance used to validate points of ``dtype``.

    float64 accepts float32 points cast up (relative error ~1e-7).
    """
    return {torch.float16: 1e-2, torch.bfloat16: 1e-2, torch.float32: 1e-4}.get(dtype, 1e-6)


def safe_sqrt(sq: Tensor) -> Tensor:
    """Square root with a finite (zero) gradient at 0.

    ``sqrt`` has an infinite derivative at 0, which turns into NaN through the
    chain rule (``inf * 0``). Entries that are exactly zero return 0 with zero
    gradient; every other entry is the ordinary square root.
    """
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), 0.0 * sq)


def wrap(t: Tensor, period: float) -> Tensor:
    """Distance from ``t`` to the nearest multiple of ``period`` (in [0, period/2])."""
    return torch.abs(t - period * torch.round(t / period))


@dataclass(frozen=True)
class GeomstatsMatch:
    """How a space corresponds to a geomstats space.

    ``scale * space.metric.dist(to_geomstats(x), to_geomstats(y))`` equals
    ``M.dist(x, y)`` for points ``x, y`` of the moduli space ``M``.

    Attributes
    ----------
    space : geomstats manifold
        The geomstats space (numpy backend unless the user chose another).
    to_geomstats : callable
        Maps a tensor of our points, shape=[n, coord_dim], to a numpy array of
        geomstats points.
    scale : float
        Factor from geomstats' distance to ours.
    """

    space: Any
    to_geomstats: Callable[[Tensor], Any]
    scale: float = 1.0

    def dist(self, x: Tensor, y: Tensor):
        """geomstats' distance of paired points, scaled to our parametrization."""
        return self.scale * self.space.metric.dist(self.to_geomstats(x), self.to_geomstats(y))


class Manifold:
    """A metric space whose points are rows of a tensor.

    Subclasses set ``coord_dim`` and ``dim`` and implement :meth:`_dist` and
    :meth:`_random_uniform` (the sampling hook of :meth:`random_uniform`,
    which validates its arguments first); they may override :meth:`_cdist_block` for a faster pairwise formula,
    :meth:`_check` for extra membership conditions, and
    :meth:`from_unconstrained` for trained embeddings.

    Attributes
    ----------
    coord_dim : int
        Number of coordinates of a point (the last axis of every point tensor).
    dim : int
        Intrinsic dimension.
    diameter : float
        Supremum of the distance (``math.inf`` for unbounded spaces).
    differentiable : bool
        Whether distances are differentiable in the points (False for finite
        metric spaces such as graphs).
    """

    coord_dim: int
    dim: int
    diameter: float = math.inf
    differentiable: bool = True

    # ------------------------------------------------------------------ API
    def random_uniform(
        self,
        n: int,
        *,
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[torch.device | str] = None,
    ) -> Tensor:
        """Draw ``n`` points independently from the uniform (volume) distribution.

        Validates and resolves the arguments, then calls the subclass hook
        :meth:`_random_uniform`, which does only the sampling.

        Parameters
        ----------
        n : int
            Number of points, ``n >= 0``.
        generator : torch.Generator, optional
            Source of randomness (torch's global generator if ``None``); the
            same generator state gives the same points.
        dtype : torch.dtype, optional
            A floating-point dtype; torch's default dtype if ``None``.
        device : torch.device or str, optional
            Where to sample; defaults to the generator's device, else the CPU.

        Returns
        -------
        Tensor, shape=[n, coord_dim]

        Raises
        ------
        TypeError
            If ``n`` is not an int or ``dtype`` is not a floating-point dtype.
        ValueError
            If ``n < 0``.
        """
        n = _validate.integer(n, "n", minimum=0)
        dtype = resolve_dtype(dtype)
        device = generator_device(generator, device)
        return self._random_uniform(n, generator, dtype, device)

    def _random_uniform(
        self, n: int, generator: Optional[torch.Generator], dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        """Sampling hook of :meth:`random_uniform`: ``n`` points, shape=[n, coord_dim].

        The arguments are already checked: ``n`` is an int >= 0, ``dtype`` a
        floating-point dtype, ``device`` a ``torch.device``. Pass
        ``generator``, ``dtype`` and ``device`` to every torch sampler.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement _random_uniform(n, generator, dtype, device) "
            "(or override random_uniform)"
        )

    def _dist(self, x: Tensor, y: Tensor) -> Tensor:
        """Distance of broadcast-compatible, validated points ``(..., coord_dim)``."""
        raise NotImplementedError

    def dist(self, x: Tensor, y: Tensor, *, validate: bool = True) -> Tensor:
        """Geodesic distance of paired points.

        Parameters
        ----------
        x, y : Tensor, shape=[..., coord_dim]
            Leading dimensions broadcast against each other.
        validate : bool
            Check shapes, finiteness and membership (costs a device sync).

        Returns
        -------
        Tensor, shape=[...]
            ``d(x[i], y[i])`` for every broadcast index ``i``.
        """
        if validate:
            x = self.check_points(x, "x")
            y = self.check_points(y, "y")
            _check_same_kind(x, y)
            try:
                torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
            except RuntimeError:
                raise ValueError(
                    f"x and y must have broadcastable leading dimensions; got x of shape "
                    f"{tuple(x.shape)} and y of shape {tuple(y.shape)}"
                ) from None
        return self._dist(x, y)

    def cdist(self, x: Tensor, y: Optional[Tensor] = None, *, validate: bool = True) -> Tensor:
        """Pairwise distance matrix.

        Parameters
        ----------
        x : Tensor, shape=[n, coord_dim]
        y : Tensor, shape=[m, coord_dim], optional
            Defaults to ``x``.
        validate : bool
            Check shapes, finiteness and membership (costs a device sync).

        Returns
        -------
        Tensor, shape=[n, m]
            ``out[i, j] = d(x[i], y[j])``.
        """
        same = y is None
        if validate:
            x = self.check_points(x, "x", ndim=2)
            y = x if same else self.check_points(y, "y", ndim=2)
            _check_same_kind(x, y)
        elif same:
            y = x
        out = self._cdist(x, y)
        if same and not out.requires_grad:
            out.fill_diagonal_(0.0)
        return out

    def _cdist(self, x: Tensor, y: Tensor) -> Tensor:
        """Pairwise distances from :meth:`_cdist_block`, in row blocks.

        Without autograd, rows are processed in blocks of about
        ``_BLOCK_ENTRIES`` entries written into one output, so temporaries
        stay small (and in cache). For one set of points (``y is x``) only
        the blocks on and below the diagonal are computed and mirrored, which
        halves the work and makes the matrix symmetric bit for bit. With
        autograd the whole matrix is one block (the graph keeps it anyway).
        """
        n, m = x.shape[0], y.shape[0]
        if _needs_grad(x, y):
            return self._cdist_block(x, y)
        same = x is y
        out = torch.empty(n, m, dtype=x.dtype, device=x.device)
        step = max(1, _BLOCK_ENTRIES // max(m, 1))
        for s in range(0, n, step):
            e = min(n, s + step)
            cols = e if same else m
            out[s:e, :cols] = self._cdist_block(x[s:e], y[:cols])
            if same:
                diag = out[s:e, s:e]
                diag.copy_(torch.tril(diag) + torch.tril(diag, -1).T)
                out[:s, s:e] = out[s:e, :s].T
        return out

    def _cdist_block(self, x: Tensor, y: Tensor) -> Tensor:
        """Distances of all pairs of two small sets, shape=[len(x), len(y)].

        The default broadcasts :meth:`_dist`; spaces with a faster pairwise
        formula override this (not :meth:`_cdist`) and keep the blocking.
        """
        return self._dist(x[:, None, :], y[None, :, :])

    def from_unconstrained(self, u: Tensor) -> Tensor:
        """Map free coordinates in R^coord_dim onto the space (differentiably).

        Trained embeddings store an unconstrained parameter ``u`` and use
        ``from_unconstrained(u)`` as the points, so an ordinary optimizer step
        can never leave the space. The default is the identity (spaces whose
        distance accepts every real coordinate vector).
        """
        return u

    def to_unconstrained(self, x: Tensor) -> Tensor:
        """A preimage of ``x`` under :meth:`from_unconstrained`."""
        return x

    def geomstats_equivalent(self) -> Optional[GeomstatsMatch]:
        """The matching geomstats space, or ``None`` if geomstats has none."""
        return None

    # ----------------------------------------------------------- validation
    def _check(self, x: Tensor, name: str) -> None:
        """Extra membership test on finite points; raise ValueError naming ``name``."""

    def check_points(self, x: Any, name: str = "x", *, ndim: Optional[int] = None) -> Tensor:
        """Validate a tensor of points and return it.

        Raises
        ------
        TypeError
            If ``x`` is not a floating-point tensor.
        ValueError
            If the last axis is not ``coord_dim`` long, ``ndim`` does not match,
            an entry is NaN or infinite, or a point is not on the space.
        """
        if not isinstance(x, Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor of shape (..., {self.coord_dim}); got "
                f"{type(x).__name__} (use torch.as_tensor to convert)"
            )
        if not x.is_floating_point():
            raise TypeError(f"{name} must have a floating-point dtype; got {x.dtype}")
        if x.ndim == 0 or x.shape[-1] != self.coord_dim:
            raise ValueError(
                f"{name} must have shape (..., {self.coord_dim}) for {self!r}; got shape "
                f"{tuple(x.shape)}"
            )
        if ndim is not None and x.ndim != ndim:
            raise ValueError(
                f"{name} must have shape (n, {self.coord_dim}); got shape {tuple(x.shape)}"
            )
        xd = x.detach()
        if not bool(torch.isfinite(xd).all()):
            bad = int((~torch.isfinite(xd)).any(-1).sum())
            raise ValueError(f"{name} contains NaN or infinite coordinates ({bad} points)")
        self._check(xd, name)
        return x

    # ------------------------------------------------------------- helpers
    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def overrides(obj: Any, owner: type, name: str) -> bool:
    """Whether ``type(obj)`` replaces ``owner``'s method ``name``.

    A fast path that is only valid for ``owner``'s own formula (for example
    :class:`~moduli.manifolds.Sphere`'s Gram-matrix ``cdist``, which
    accelerates ``Sphere._dist``) must not run for a subclass that redefines
    that formula.
    """
    return getattr(type(obj), name) is not getattr(owner, name)


def component_spaces(spaces: tuple, owner: str) -> tuple:
    """The component spaces of a composite space (``Product``, ``DisjointUnion``), checked.

    Raises
    ------
    ValueError
        If there are none.
    TypeError
        If one is not a :class:`Manifold`, naming its index.
    """
    if len(spaces) < 1:
        raise ValueError(f"{owner} needs at least one space")
    for i, s in enumerate(spaces):
        if not isinstance(s, Manifold):
            raise TypeError(f"spaces[{i}] must be a moduli Manifold; got {type(s).__name__}")
    return tuple(spaces)


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _check_same_kind(x: Tensor, y: Tensor) -> None:
    if x.dtype != y.dtype:
        raise TypeError(f"x and y must have the same dtype; got {x.dtype} and {y.dtype}")
    if x.device != y.device:
        raise ValueError(f"x and y must be on the same device; got {x.device} and {y.device}")


def resolve_dtype(dtype: Optional[torch.dtype]) -> torch.dtype:
    """``dtype`` or torch's current default; reject non-floating dtypes."""
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype; got {dtype!r}")
    return dtype


def generator_device(generator: Optional[torch.Generator], device) -> torch.device:
    """Device to sample on: the generator's (``device``, when given, must agree), else ``device``, else the CPU.

    Raises
    ------
    ValueError
        If ``device`` and the generator's device differ: a generator draws
        only on its own device.
    """
    if generator is None:
        return torch.device("cpu") if device is None else torch.device(device)
    if device is not None:
        want = torch.device(device)
        if want.type != generator.device.type or (want.index is not None and want.index != generator.device.index):
            raise ValueError(f"device {want} differs from the generator's device {generator.device}: pass a "
                             "generator of that device, or leave device out")
    return generator.device
