"""Disjoint unions of metric spaces: neurons of one layer split into modules.

A multi-modular embedding puts each neuron in one of several spaces (for
example grid-cell modules: flat tori of different periods). Within a module
the distance is that module's own; between modules it is one constant, the
*cross distance*, so the prior's inhibitor gives every between-module pair
the same coefficient ``f(cross_distance)``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from .. import _validate
from .base import Manifold, component_spaces, generator_device, resolve_dtype

__all__ = ["DisjointUnion"]


class DisjointUnion(Manifold):
    """The disjoint union ``M_0 ⊔ ... ⊔ M_{K-1}`` with a constant distance between modules.

    **Point layout.** A point is one row of ``coord_dim = 1 + max_k
    M_k.coord_dim`` numbers: column 0 holds the module index ``k`` (an
    integer stored as a float), columns ``1 .. M_k.coord_dim`` the point's
    coordinates in ``M_k``, and the remaining columns are zero padding::

        [k, x_1, ..., x_{c_k}, 0, ..., 0]

    :meth:`pack` builds such rows from a module's coordinates, :meth:`assign`
    builds a fixed assignment (contiguous blocks of given sizes, or given
    labels) with uniform coordinates, :meth:`modules` and
    :meth:`coordinates` read them back. :meth:`check_points` checks the index
    (an integer in ``[0, K)``), the zero padding, and each module's rows with
    that module's own membership test.

    **Distance.** ``d(x, y) = d_k(x, y)`` when both points lie in module
    ``k``, and ``cross_distance`` otherwise.

    * A finite ``cross_distance = c`` gives a metric exactly when ``c > 0``
      and, for two or more modules, ``c >= D / 2`` with ``D`` the largest
      component diameter: two points of module ``k`` and a third point in
      another module obey the triangle inequality iff ``d_k(x, z) <= 2 c``
      (the other cases hold for every ``c > 0``). Below that bound the space
      still works as a table of coefficients but is not a metric; a
      ``UserWarning`` says so. A component of infinite diameter (``R^k``)
      needs ``cross_distance = inf`` for the same reason.
    * ``cross_distance = math.inf`` (the default) makes modules infinitely
      far apart: ``cdist`` holds ``inf`` for every between-module pair (an
      extended metric; :func:`~moduli.manifolds.testing.check_manifold`,
      which requires finite distances, applies to finite cross distances
      only).

    **The between-module inhibitor.** A :class:`~moduli.regularizers.ModuliPrior`
    computes ``f(cdist(...))``, so every between-module pair gets the single
    coefficient ``f(cross_distance)``: choose ``cross_distance`` to set it
    (:meth:`between_coefficient` returns it). With ``cross_distance = inf``
    it is the inhibitor's formula evaluated at ``inf``: for a
    :class:`~moduli.regularizers.DifferenceOfGaussians` this is exactly its
    far-field value ``c`` (between-module connections are inhibited like
    far-apart ones) and no NaN arises, also in the gradients of trained
    embeddings (between-module entries are constants that receive no
    gradient). Formulas that are not finite at ``inf`` -- ``Ricker``
    (``inf * 0``), ``Sinusoid`` (``cos(inf)``), ``Diffusion`` (``inf``) --
    would give NaN or infinite coefficients: :meth:`between_coefficient`
    raises for them, and a finite ``cross_distance`` is the remedy.
    ``ModuliPrior`` checks ``f >= 0`` on ``[0, diameter]``; with an infinite
    cross distance the diameter is ``inf`` and it checks ``[0, 1000]``, as
    for any unbounded space.

    **Trained embeddings.** :meth:`from_unconstrained` maps each module's
    coordinates with that module's own map and returns the index column
    rounded and detached: an optimizer step moves points within their
    module, never between modules (the index column of the parameter gets
    an exactly zero gradient). The assignment is learned by discrete moves
    instead -- swapping two neurons' points moves them between modules.
    Weight decay is the one thing that changes the index column of the
    parameter (it shrinks every entry); rounding absorbs drifts below 0.5,
    but exclude the embedding parameters from weight decay for long runs.

    Parameters
    ----------
    *spaces : Manifold
        The modules, at least one. Module ``k`` is ``spaces[k]``.
    cross_distance : float
        Distance between points of different modules: ``> 0``, finite or
        ``math.inf`` (the default).
    weights : sequence of float, optional
        Probability of each module in :meth:`random_uniform` (normalized;
        non-negative, not all zero). Default: equal.

    Attributes
    ----------
    spaces : tuple of Manifold
    cross_distance : float
    weights : tuple of float
        The normalized module probabilities.
    coord_dim : int
        ``1 + max_k spaces[k].coord_dim``.
    dim : int
        The largest component dimension.
    diameter : float
        The largest component diameter, and ``cross_distance`` when there are
        two or more modules.

    Examples
    --------
    >>> import math, torch
    >>> from moduli import manifolds as mf
    >>> U = mf.DisjointUnion(mf.FlatTorus(2, 10.0), mf.Circle(1.0), cross_distance=8.0)
    >>> U.coord_dim
    3
    >>> x = torch.cat([U.pack(0, torch.tensor([[0.5, 0.0], [9.5, 0.0]])), U.pack(1, torch.tensor([[1.0, 0.0]]))])
    >>> x.tolist()
    [[0.0, 0.5, 0.0], [0.0, 9.5, 0.0], [1.0, 1.0, 0.0]]
    >>> U.cdist(x).tolist()
    [[0.0, 1.0, 8.0], [1.0, 0.0, 8.0], [8.0, 8.0, 0.0]]
    """

    def __init__(self, *spaces: Manifold, cross_distance: float = math.inf,
                 weights: Optional[Sequence[float]] = None):
        self.spaces = component_spaces(spaces, "DisjointUnion")
        self.cross_distance = _cross_distance(cross_distance)
        self.weights = _weights(weights, len(spaces))
        self._widths = tuple(s.coord_dim for s in spaces)
        self.coord_dim = 1 + max(self._widths)
        self.dim = max(s.dim for s in spaces)
        self.differentiable = all(s.differentiable for s in spaces)
        largest = max(s.diameter for s in spaces)
        self.diameter = largest if len(spaces) == 1 else max(largest, self.cross_distance)
        if len(spaces) > 1 and 2.0 * self.cross_distance < largest:
            warnings.warn(
                f"cross_distance={self.cross_distance:g} is below half the largest module diameter "
                f"({largest:g}): two points of one module farther apart than 2 * cross_distance break the "
                f"triangle inequality through a point of another module, so {self!r} is not a metric space "
                f"(it needs cross_distance >= {largest / 2:g}; coefficients are still f(d))",
                UserWarning, stacklevel=2,
            )

    @property
    def num_modules(self) -> int:
        """``K``, the number of modules."""
        return len(self.spaces)

    # ---------------------------------------------------------- building
    def pack(self, module: int, coords: Tensor) -> Tensor:
        """Points of module ``module`` from that module's coordinates.

        Parameters
        ----------
        module : int
            ``0 <= module < K``.
        coords : Tensor, shape=[..., spaces[module].coord_dim]
            Points of ``spaces[module]`` (checked by that space).

        Returns
        -------
        Tensor, shape=[..., coord_dim]
            ``[module, coords..., 0...]`` rows (differentiable in ``coords``).
        """
        k = self._module_arg(module, "module")
        coords = self.spaces[k].check_points(coords, "coords")
        lead = coords.shape[:-1]
        index = torch.full((*lead, 1), float(k), dtype=coords.dtype, device=coords.device)
        pad = coords.new_zeros((*lead, self.coord_dim - 1 - self._widths[k]))
        return torch.cat([index, coords, pad], -1)

    def assign(self, sizes: Optional[Sequence[int]] = None, *, labels: Any = None,
               generator: Optional[torch.Generator] = None, dtype: Optional[torch.dtype] = None,
               device=None) -> Tensor:
        """A fixed assignment of neurons to modules, with uniform coordinates in each module.

        Pass the result as ``points=`` to :func:`moduli.regularizers.attach`.

        Parameters
        ----------
        sizes : sequence of int, optional
            ``K`` non-negative counts: the first ``sizes[0]`` rows are in module
            0, the next ``sizes[1]`` in module 1, and so on (contiguous blocks).
        labels : sequence of int or integer Tensor, optional
            Instead of ``sizes``: the module of every row.
        generator, dtype, device
            As in :meth:`random_uniform`; the coordinates of module ``k`` are
            ``spaces[k].random_uniform`` draws, made in module order.

        Returns
        -------
        Tensor, shape=[n, coord_dim]

        Raises
        ------
        ValueError
            If neither or both of ``sizes`` and ``labels`` are given, ``sizes``
            does not have ``K`` non-negative entries, or a label is not in
            ``[0, K)``.
        """
        if (sizes is None) == (labels is None):
            raise ValueError("assign needs exactly one of sizes (a count per module) or labels (a module per row)")
        dtype = resolve_dtype(dtype)
        device = generator_device(generator, device)
        if sizes is not None:
            if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) != self.num_modules:
                raise ValueError(f"sizes must be a sequence of {self.num_modules} counts (one per module); got {sizes!r}")
            counts = [_validate.integer(s, f"sizes[{i}]", minimum=0) for i, s in enumerate(sizes)]
            lab = torch.repeat_interleave(torch.arange(self.num_modules, device=device),
                                          torch.tensor(counts, device=device))
        else:
            lab = _labels(labels, self.num_modules, device)
        return self._fill(lab, generator, dtype, device)

    def _fill(self, labels: Tensor, generator, dtype, device) -> Tensor:
        """Rows with the given module labels and uniform coordinates (drawn in module order)."""
        out = torch.zeros(labels.numel(), self.coord_dim, dtype=dtype, device=device)
        out[:, 0] = labels.to(dtype)
        for k, space in enumerate(self.spaces):
            rows = (labels == k).nonzero().squeeze(1)
            if rows.numel():
                pts = space.random_uniform(rows.numel(), generator=generator, dtype=dtype, device=device)
                out[rows, 1:1 + self._widths[k]] = pts
        return out

    def _random_uniform(self, n, generator, dtype, device) -> Tensor:
        """Module ``k`` with probability ``weights[k]``, then a uniform point of ``spaces[k]``."""
        if n == 0:
            return torch.zeros(0, self.coord_dim, dtype=dtype, device=device)
        probs = torch.tensor(self.weights, dtype=torch.float64, device=device)
        labels = torch.multinomial(probs, n, replacement=True, generator=generator)
        return self._fill(labels, generator, dtype, device)

    # ----------------------------------------------------------- reading
    def modules(self, x: Tensor) -> Tensor:
        """The module index of every point, an int64 tensor of shape ``x.shape[:-1]``."""
        x = self.check_points(x, "x")
        return x[..., 0].long()

    def coordinates(self, x: Tensor, module: int) -> Tensor:
        """The coordinates of the rows of ``x`` that lie in ``module``, shape=[n_k, spaces[module].coord_dim]."""
        k = self._module_arg(module, "module")
        x = self.check_points(x, "x", ndim=2)
        return x[x[:, 0] == k, 1:1 + self._widths[k]]

    @property
    def attains_infinity(self) -> bool:
        """Whether some distances are ``inf`` (two or more modules, infinite cross distance): inhibitors
        are then checked at ``inf`` too (:meth:`moduli.regularizers.Inhibitor.validate_for`)."""
        return self.num_modules > 1 and math.isinf(self.cross_distance)

    def between_coefficient(self, inhibitor) -> float:
        """The coefficient of every between-module pair: ``inhibitor(cross_distance)``.

        Parameters
        ----------
        inhibitor : callable
            An inhibitor (a function of a tensor of distances).

        Raises
        ------
        ValueError
            If the value is NaN or infinite (with ``cross_distance = inf``: the
            inhibitor's formula has no finite value at ``inf``; use a finite
            cross distance).
        """
        value = float(inhibitor(torch.tensor([self.cross_distance], dtype=torch.float64))[0])
        if not math.isfinite(value):
            hint = ("its formula has no finite value at d = inf; pass a finite cross_distance "
                    f"(>= {max(s.diameter for s in self.spaces) / 2:g} keeps the metric axioms), so that "
                    "f(cross_distance) is the between-module coefficient"
                    if math.isinf(self.cross_distance) else "choose another cross_distance")
            raise ValueError(f"{inhibitor!r} is {value} at the cross distance {self.cross_distance:g}: {hint}")
        return value

    # ---------------------------------------------------------- distances
    def _dist(self, x: Tensor, y: Tensor) -> Tensor:
        shape = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
        xf = x.expand(*shape, self.coord_dim).reshape(-1, self.coord_dim)
        yf = y.expand(*shape, self.coord_dim).reshape(-1, self.coord_dim)
        out = torch.full((xf.shape[0],), self.cross_distance, dtype=x.dtype, device=x.device)
        for k, space in enumerate(self.spaces):
            sel = ((xf[:, 0] == k) & (yf[:, 0] == k)).nonzero().squeeze(1)
            if sel.numel():
                w = self._widths[k]
                out[sel] = space._dist(xf[sel, 1:1 + w], yf[sel, 1:1 + w])
        return out.reshape(shape)

    def _cdist(self, x: Tensor, y: Tensor) -> Tensor:
        """Per module pair-block: the component's own (blocked) ``cdist``; the rest is the cross distance.

        Rows of one module that are contiguous (as :meth:`assign` with
        ``sizes`` makes them) are read and written as slices; otherwise
        gathered and scattered. Between-module entries are constants (no
        gradient), so no value of the inhibitor there can reach a gradient.
        """
        return self._pairwise(x, y, blocked=True)

    def _cdist_block(self, x: Tensor, y: Tensor) -> Tensor:
        return self._pairwise(x, y, blocked=False)

    def _pairwise(self, x: Tensor, y: Tensor, *, blocked: bool) -> Tensor:
        same = x is y
        out = torch.full((x.shape[0], y.shape[0]), self.cross_distance, dtype=x.dtype, device=x.device)
        for k, space in enumerate(self.spaces):
            rows = _run((x[:, 0] == k).nonzero().squeeze(1))
            if rows is None:
                continue
            cols = rows if same else _run((y[:, 0] == k).nonzero().squeeze(1))
            if cols is None:
                continue
            w = self._widths[k]
            xk = x[rows, 1:1 + w]
            yk = xk if same else y[cols, 1:1 + w]
            Dk = space._cdist(xk, yk) if blocked else space._cdist_block(xk, yk)
            if isinstance(rows, slice) and isinstance(cols, slice):
                out[rows, cols] = Dk
            else:
                r = _as_index(rows, x.device)
                c = _as_index(cols, x.device)
                out[r[:, None], c[None, :]] = Dk
        return out

    # --------------------------------------------------------- validation
    def _check(self, x: Tensor, name: str) -> None:
        exact = round(2 / torch.finfo(x.dtype).eps)
        if self.num_modules - 1 > exact:
            raise TypeError(f"{name} has dtype {x.dtype}, which cannot hold every module index up to "
                            f"{self.num_modules - 1} exactly; use torch.float32 or torch.float64")
        xf = x.reshape(-1, self.coord_dim)
        idx = xf[:, 0]
        bad = ((idx != torch.round(idx)) | (idx < 0) | (idx > self.num_modules - 1)).nonzero()
        if bad.numel():
            i = int(bad[0])
            raise ValueError(
                f"{name} must hold a module index in column 0: an integer in [0, {self.num_modules}); point {i} "
                f"has {float(idx[i])!r}. Build points with DisjointUnion.pack or DisjointUnion.assign"
            )
        for k, space in enumerate(self.spaces):
            rows = xf[idx == k]
            if not rows.shape[0]:
                continue
            w = self._widths[k]
            pad = rows[:, 1 + w:]
            if pad.numel() and bool((pad != 0).any()):
                raise ValueError(
                    f"{name}: points of module {k} ({space!r}, {w} coordinates) must be zero in columns "
                    f"{1 + w}..{self.coord_dim - 1} (padding); build them with DisjointUnion.pack"
                )
            space._check(rows[:, 1:1 + w], f"{name} (module {k}, {space!r})")

    # ------------------------------------------------- trained embeddings
    def from_unconstrained(self, u: Tensor) -> Tensor:
        """Each module's coordinates through its own map; the index column rounded, with zero gradient.

        Rows whose rounded index is not a module (a corrupted parameter) keep
        zero coordinates and fail :meth:`check_points`.
        """
        uf = u.reshape(-1, self.coord_dim)
        index = torch.round(uf[:, :1].detach()) + 0.0  # + 0.0 turns -0.0 into 0.0
        coords = torch.zeros(uf.shape[0], self.coord_dim - 1, dtype=u.dtype, device=u.device)
        for k, space in enumerate(self.spaces):
            rows = (index[:, 0] == k).nonzero().squeeze(1)
            if rows.numel():
                w = self._widths[k]
                coords[rows, :w] = space.from_unconstrained(uf[rows, 1:1 + w])
        return torch.cat([index, coords], -1).reshape(u.shape)

    def to_unconstrained(self, x: Tensor) -> Tensor:
        """Each module's preimage; the index column unchanged."""
        xf = x.reshape(-1, self.coord_dim)
        out = xf.clone()
        for k, space in enumerate(self.spaces):
            rows = (xf[:, 0] == k).nonzero().squeeze(1)
            if rows.numel():
                w = self._widths[k]
                out[rows, 1:1 + w] = space.to_unconstrained(xf[rows, 1:1 + w])
        return out.reshape(x.shape)

    # ------------------------------------------------------------ helpers
    def _module_arg(self, module: Any, name: str) -> int:
        k = _validate.integer(module, name, minimum=0)
        if k >= self.num_modules:
            raise ValueError(f"{name} must be a module index in [0, {self.num_modules}); got {k}")
        return k

    def __repr__(self) -> str:
        parts = [repr(s) for s in self.spaces]
        parts.append(f"cross_distance={self.cross_distance:g}")
        if len(set(self.weights)) > 1:
            parts.append("weights=(" + ", ".join(f"{w:.3g}" for w in self.weights) + ")")
        return "DisjointUnion(" + ", ".join(parts) + ")"


def _cross_distance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"cross_distance must be a positive real number or math.inf; got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or value <= 0:
        raise ValueError(f"cross_distance must be > 0 (finite or math.inf); got {value}")
    return value


def _weights(weights: Any, k: int) -> tuple:
    if weights is None:
        return tuple(1.0 / k for _ in range(k))
    if isinstance(weights, Tensor):
        weights = weights.tolist()
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__") or len(weights) != k:
        raise ValueError(f"weights must be a sequence of {k} non-negative numbers (one per module); got {weights!r}")
    values = [_validate.nonnegative(w, f"weights[{i}]") for i, w in enumerate(weights)]
    total = sum(values)
    if total <= 0:
        raise ValueError(f"weights must not all be zero; got {weights!r}")
    return tuple(v / total for v in values)


def _labels(labels: Any, k: int, device) -> Tensor:
    if isinstance(labels, Tensor):
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"labels must hold integers; got a tensor of dtype {labels.dtype}")
        if labels.ndim != 1:
            raise ValueError(f"labels must be one-dimensional (a module per row); got shape {tuple(labels.shape)}")
        lab = labels.to(device=device, dtype=torch.int64)
    else:
        if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
            raise TypeError(f"labels must be a sequence of ints or an integer tensor; got {type(labels).__name__}")
        values = [_validate.integer(v, f"labels[{i}]") for i, v in enumerate(labels)]
        lab = torch.tensor(values, dtype=torch.int64, device=device)
    bad = ((lab < 0) | (lab >= k)).nonzero()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(f"labels must be module indices in [0, {k}); labels[{i}] = {int(lab[i])}")
    return lab


def _run(index: Tensor):
    """``index`` as a slice when it is a contiguous increasing run, None when empty, else itself."""
    n = index.numel()
    if n == 0:
        return None
    first, last = int(index[0]), int(index[-1])
    if last - first + 1 == n:
        return slice(first, last + 1)
    return index


def _as_index(rows, device) -> Tensor:
    if isinstance(rows, slice):
        return torch.arange(rows.start, rows.stop, device=device)
    return rows
