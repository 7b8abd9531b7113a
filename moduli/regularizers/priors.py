"""Prior descriptions and the framework-free math of Eq. 6.

A prior here is a *description*: which space, which inhibitor, which exponent,
whether embeddings train. :func:`moduli.regularizers.attach` hands it to a
backend, which finds the target weights in a model and builds the state
(embeddings, coefficient matrices). The functions in this module only see
tensors: points, coefficients and weights.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
from torch import Tensor

from .inhibitors import Inhibitor

__all__ = [
    "Prior", "ModuliPrior", "L1Prior", "ShuffledPrior", "coefficient_matrix", "magnitude",
    "weighted_penalty", "penalty_gradient", "REDUCTIONS",
]

REDUCTIONS = ("sum", "mean")


def _check_exponent(exponent) -> float:
    if isinstance(exponent, bool) or not isinstance(exponent, numbers.Real):
        raise TypeError(f"exponent must be a real number >= 1; got {type(exponent).__name__}")
    exponent = float(exponent)
    if not math.isfinite(exponent) or exponent < 1:
        raise ValueError(
            f"exponent must be a finite number >= 1 (Eq. 6 uses l >= 1; below 1 the gradient of "
            f"|w|**l is infinite at w = 0); got {exponent}"
        )
    return exponent


def _check_reduction(reduction) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    return reduction


class Prior:
    """Base class of prior descriptions (:class:`ModuliPrior`, :class:`L1Prior`, :class:`ShuffledPrior`)."""

    exponent: float = 1.0
    reduction: str = "sum"
    trainable: bool = False
    manifold = None


class ModuliPrior(Prior):
    """The moduli prior of Eq. 6: ``sum_jk f(d(i(j), i(k))) |w_jk|^l``.

    Parameters
    ----------
    manifold : moduli.manifolds.Manifold
        The space neurons are embedded in.
    inhibitor : Inhibitor
        ``f``; checked to be non-negative on ``[0, manifold.diameter]``.
    exponent : float
        ``l >= 1``. For convolutions ``|T_{c,c'}|`` is the L2 norm of a
        kernel slice (Appendix I.2.1).
    trainable : bool
        Train the embedding: points are ``manifold.from_unconstrained(u)``
        with ``u`` a parameter returned by ``priors.parameters()``.
    reduction : {"sum", "mean"}
        ``"sum"`` is Eq. 6 summed over every target; ``"mean"`` divides each
        target's sum by its number of coefficients (then sums over targets).

    Raises
    ------
    ValueError
        If the inhibitor is negative on the space, ``exponent < 1``, or a
        trained embedding is asked for with a non-differentiable inhibitor or
        space. Warns when ``f(0)`` is the minimum of ``f`` and ``trainable``.

    Examples
    --------
    >>> from moduli import manifolds as mf, regularizers as rg
    >>> prior = rg.ModuliPrior(mf.FlatTorus(2, 10.0), rg.DifferenceOfGaussians())
    >>> prior.exponent
    1.0
    """

    def __init__(self, manifold, inhibitor: Inhibitor, *, exponent: float = 1, trainable: bool = False,
                 reduction: str = "sum"):
        from ..manifolds import Manifold

        if not isinstance(manifold, Manifold):
            raise TypeError(f"manifold must be a moduli.manifolds.Manifold; got {type(manifold).__name__}")
        if not isinstance(inhibitor, Inhibitor):
            raise TypeError(
                f"inhibitor must be a moduli.regularizers.Inhibitor (e.g. DifferenceOfGaussians, or "
                f"Inhibitor.from_expression); got {type(inhibitor).__name__}"
            )
        if not isinstance(trainable, bool):
            raise TypeError(f"trainable must be a bool; got {type(trainable).__name__}")
        self.manifold = manifold
        self.inhibitor = inhibitor
        self.exponent = _check_exponent(exponent)
        self.trainable = trainable
        self.reduction = _check_reduction(reduction)
        inhibitor.validate_for(manifold, trainable=trainable)

    def coefficients(self, points_out: Tensor, points_in: Optional[Tensor] = None, *,
                     validate: bool = True) -> Tensor:
        """``f(manifold.cdist(points_out, points_in))``, shape=[n_out, n_in]."""
        return coefficient_matrix(self.manifold, self.inhibitor, points_out, points_in, validate=validate)

    def __repr__(self) -> str:
        return (
            f"ModuliPrior({self.manifold!r}, {self.inhibitor!r}, exponent={self.exponent:g}, "
            f"trainable={self.trainable}, reduction={self.reduction!r})"
        )


class L1Prior(Prior):
    """The L1 control: exactly ``sum |w|`` over every entry of the targets (Eq. 4).

    For convolutions too the penalty is elementwise (not per kernel slice).

    Parameters
    ----------
    reduction : {"sum", "mean"}
    """

    def __init__(self, *, reduction: str = "sum"):
        self.exponent = 1.0
        self.reduction = _check_reduction(reduction)
        self.trainable = False

    def __repr__(self) -> str:
        return f"L1Prior(reduction={self.reduction!r})"


class ShuffledPrior(Prior):
    """The shuffled control: a moduli prior whose coefficients are randomly permuted.

    The coefficient matrix of each target (with the weight's shape, e.g.
    ``(4h, h)`` for an LSTM's recurrent matrix) is computed from a fixed random
    embedding, then its entries are permuted uniformly at random: the same
    multiset of coefficients, with the geometry destroyed (paper, Section 4.1).

    Parameters
    ----------
    prior : ModuliPrior
        A prior with a fixed embedding (``trainable=False``).
    generator : torch.Generator, optional
        Source of the permutations (and of the embeddings, if ``attach`` is
        not given its own generator).
    """

    def __init__(self, prior: ModuliPrior, *, generator: Optional[torch.Generator] = None):
        if not isinstance(prior, ModuliPrior):
            raise TypeError(f"prior must be a ModuliPrior; got {type(prior).__name__}")
        if prior.trainable:
            raise ValueError(
                "ShuffledPrior needs a fixed embedding: the permutation of trained coefficients has "
                "no meaning; pass a ModuliPrior with trainable=False"
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        self.prior = prior
        self.generator = generator
        self.manifold = prior.manifold
        self.exponent = prior.exponent
        self.reduction = prior.reduction
        self.trainable = False

    def __repr__(self) -> str:
        return f"ShuffledPrior({self.prior!r})"


# ---------------------------------------------------------------------- math
def coefficient_matrix(manifold, inhibitor: Inhibitor, points_out: Tensor,
                       points_in: Optional[Tensor] = None, *, validate: bool = True) -> Tensor:
    """Coefficients ``f(d(points_out[j], points_in[k]))``.

    Parameters
    ----------
    points_out : Tensor, shape=[n_out, coord_dim]
    points_in : Tensor, shape=[n_in, coord_dim], optional
        Defaults to ``points_out`` (a recurrent matrix).

    Returns
    -------
    Tensor, shape=[n_out, n_in]
    """
    d = manifold.cdist(points_out, points_in, validate=validate)
    return inhibitor(d)


def magnitude(weight: Tensor, exponent: float, slice_norm: bool) -> Tensor:
    """``|w|^l`` per entry, or ``||T_{c,c'}||_2^l`` per kernel slice.

    Parameters
    ----------
    weight : Tensor, shape=[out, in] or [out, in, *kernel]
    slice_norm : bool
        Reduce trailing kernel axes with the L2 norm (convolutions).

    Returns
    -------
    Tensor, shape=[out, in]
    """
    if slice_norm:
        sq = (weight * weight).flatten(2).sum(-1)
        if exponent == 2.0:
            return sq
        positive = sq > 0
        safe = torch.where(positive, sq, torch.ones_like(sq))
        return torch.where(positive, safe.pow(0.5 * exponent), torch.zeros_like(sq))
    if exponent == 1.0:
        return weight.abs()
    if exponent == 2.0:
        return weight * weight
    return weight.abs().pow(exponent)


def weighted_penalty(weight: Tensor, coefficients: Tensor, exponent: float, *, slice_norm: bool = False,
                     reduction: str = "sum", workspace: Optional[Tensor] = None) -> Tensor:
    """Eq. 6 for one weight: ``sum C * |W|^l`` (or ``mean``).

    ``coefficients`` broadcasts against ``weight`` viewed as
    ``(blocks, n_out, n_in)``: a ``(n_out, n_in)`` matrix is shared by the
    gate blocks of an LSTM/GRU recurrent matrix of shape
    ``(blocks * n_out, n_in)``.

    Parameters
    ----------
    weight : Tensor, shape=[blocks * n_out, n_in, *kernel]
    coefficients : Tensor, shape=[n_out, n_in] or [blocks, n_out, n_in]
    exponent : float
    slice_norm : bool
        Use the L2 norm of each kernel slice (convolutions).
    reduction : {"sum", "mean"}
        ``"mean"`` divides by the number of (broadcast) coefficients.
    workspace : Tensor, optional
        Scratch memory shaped like ``weight`` (used when ``exponent == 1``
        and ``slice_norm`` is false, to avoid a fresh allocation). Not for
        autograd: pass it only under ``torch.no_grad()``.

    Returns
    -------
    Tensor, shape=[]
    """
    n_out, n_in = coefficients.shape[-2:]
    if workspace is not None and exponent == 1.0 and not slice_norm:
        mag = torch.abs(weight, out=workspace)
    else:
        mag = magnitude(weight, exponent, slice_norm)
    mag = mag.reshape(-1, n_out, n_in)
    if mag.shape[0] == 1:
        total = torch.dot(coefficients.reshape(-1), mag.reshape(-1))
    elif coefficients.ndim == 2:
        total = torch.dot(coefficients.reshape(-1), mag.sum(0).reshape(-1))
    else:
        total = torch.dot(coefficients.reshape(-1), mag.reshape(-1))
    if reduction == "mean":
        total = total / mag.numel()
    return total


def penalty_gradient(weight: Tensor, coefficients: Tensor, exponent: float, *, slice_norm: bool = False,
                     reduction: str = "sum", scale: float = 1.0, out: Optional[Tensor] = None) -> Tensor:
    """Gradient of :func:`weighted_penalty` in ``weight``, without autograd.

    ``l C sign(W) |W|^(l-1)`` per entry, or ``l C ||T||^(l-2) T`` per kernel
    slice (zero where the slice is zero), times ``scale``.

    Parameters
    ----------
    out : Tensor, optional
        Write the result here (shaped like ``weight``; not ``weight`` itself).

    Returns
    -------
    Tensor, same shape as ``weight``
    """
    n_out, n_in = coefficients.shape[-2:]
    blocks = weight.shape[0] // n_out
    if reduction == "mean":
        scale = scale / (blocks * n_out * n_in)
    if slice_norm:
        c = coefficients.expand(blocks, n_out, n_in).reshape(weight.shape[0], n_in)
        sq = (weight * weight).flatten(2).sum(-1)
        if exponent == 2.0:
            factor = 2.0 * c
        else:
            positive = sq > 0
            safe = torch.where(positive, sq, torch.ones_like(sq))
            factor = torch.where(positive, exponent * c * safe.pow(0.5 * exponent - 1.0), torch.zeros_like(sq))
        factor = (scale * factor).reshape(factor.shape + (1,) * (weight.ndim - 2))
        return torch.mul(factor, weight, out=out) if out is not None else factor * weight
    if exponent == 1.0:
        g = torch.sign(weight, out=out) if out is not None else torch.sign(weight)
    elif exponent == 2.0:
        g = torch.mul(weight, 2.0, out=out) if out is not None else 2.0 * weight
    else:
        g = weight.sign() * weight.abs().pow(exponent - 1.0) * exponent
        if out is not None:
            out.copy_(g)
            g = out
    g.view(-1, n_out, n_in).mul_(coefficients)
    if scale != 1.0:
        g.mul_(scale)
    return g
