"""Priors: what to penalise, as descriptions that own what makes them different.

A prior says which coefficient multiplies ``|w|^l`` for each entry of a
target weight. :func:`moduli.regularizers.attach` finds the target weights,
draws an embedding of the neurons on ``prior.manifold`` (when the prior has
one) and asks :meth:`Prior.coefficients` for each target's coefficients; the
prior set it returns holds them and evaluates the penalty.

Writing a prior
---------------
Subclass :class:`Prior` and implement :meth:`Prior.coefficients`; set
``manifold`` (class or instance attribute) if the prior needs neuron
embeddings. A subclass without ``coefficients`` cannot be instantiated
(``TypeError`` naming the method). Trained embeddings (``trainable=True``)
additionally need an ``inhibitor``: their coefficients are recomputed as
``inhibitor(manifold.cdist(...))`` at every step.
"""

from __future__ import annotations

import abc
from typing import Optional

import torch
from torch import Tensor

from .. import _validate
from ..manifolds import Manifold
from .inhibitors import Inhibitor
from .penalty import REDUCTIONS, coefficient_matrix, group_gather

__all__ = ["Prior", "ModuliPrior", "L1Prior", "ShuffledPrior"]


def _check_exponent(exponent) -> float:
    exponent = _validate.real(exponent, "exponent")
    if exponent < 1:
        raise ValueError(
            f"exponent must be a finite number >= 1 (Eq. 6 uses l >= 1; below 1 the gradient of "
            f"|w|**l is infinite at w = 0); got {exponent}"
        )
    return exponent


class Prior(abc.ABC):
    """Base class of priors.

    Parameters
    ----------
    exponent : float
        ``l >= 1`` in ``C |w|^l``.
    reduction : {"sum", "mean"}
        ``"sum"`` is Eq. 6 summed over every target; ``"mean"`` divides each
        target's sum by its number of coefficients (then sums over targets).

    Attributes
    ----------
    manifold : moduli.manifolds.Manifold or None
        When set, ``attach`` embeds each neuron group on it (random uniform
        points, or the ``points=`` given) and passes the points to
        :meth:`coefficients`; when None the points are None.
    trainable : bool
        Embeddings are parameters and coefficients are recomputed from them
        (needs ``manifold`` and an ``inhibitor`` attribute).
    """

    manifold: Optional[Manifold] = None
    trainable: bool = False
    exponent: float = 1.0
    reduction: str = "sum"

    def __init__(self, *, exponent: float = 1, reduction: str = "sum"):
        self.exponent = _check_exponent(exponent)
        self.reduction = _validate.choice(reduction, "reduction", REDUCTIONS)

    @abc.abstractmethod
    def coefficients(self, layout, points_out: Optional[Tensor], points_in: Optional[Tensor], *,
                     generator: Optional[torch.Generator] = None) -> Tensor:
        """The coefficients of one target weight.

        Parameters
        ----------
        layout : moduli.targets.TargetLayout
            The target: ``layout.rows x layout.cols`` coefficients
            (``rows = blocks * n_out``), ``layout.n_out``/``n_in`` neurons.
        points_out, points_in : Tensor or None, shape=[n_out, coord_dim], [n_in, coord_dim]
            The embeddings of the rows' and columns' neurons (None without a
            ``manifold``; ``points_in`` is None when rows and columns are the
            same neurons).
        generator : torch.Generator, optional
            For priors that draw random numbers.

        Returns
        -------
        Tensor
            Non-negative, of shape ``(n_out, cols)`` (shared by gate blocks),
            ``(rows, cols)``, ``(blocks, n_out, cols)``, or 0-d (every entry
            alike, kernel entries included).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(exponent={self.exponent:g}, reduction={self.reduction!r})"


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
        if not isinstance(manifold, Manifold):
            raise TypeError(f"manifold must be a moduli.manifolds.Manifold; got {type(manifold).__name__}")
        if not isinstance(inhibitor, Inhibitor):
            raise TypeError(
                f"inhibitor must be a moduli.regularizers.Inhibitor (e.g. DifferenceOfGaussians, or "
                f"Inhibitor.from_expression); got {type(inhibitor).__name__}"
            )
        if not isinstance(trainable, bool):
            raise TypeError(f"trainable must be a bool; got {type(trainable).__name__}")
        super().__init__(exponent=exponent, reduction=reduction)
        self.manifold = manifold
        self.inhibitor = inhibitor
        self.trainable = trainable
        inhibitor.validate_for(manifold, trainable=trainable)

    def coefficients(self, layout, points_out, points_in=None, *, generator=None) -> Tensor:
        """``f(manifold.cdist(points_out, points_in))``, shape=[n_out, n_in // groups]."""
        return group_gather(coefficient_matrix(self.manifold, self.inhibitor, points_out, points_in), layout.groups)

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
        super().__init__(exponent=1.0, reduction=reduction)

    def coefficients(self, layout, points_out=None, points_in=None, *, generator=None) -> Tensor:
        """A 0-d one: every entry weighs 1."""
        return torch.ones(())

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
        super().__init__(exponent=prior.exponent, reduction=prior.reduction)
        self.prior = prior
        self.generator = generator
        self.manifold = prior.manifold

    def coefficients(self, layout, points_out, points_in=None, *, generator=None) -> Tensor:
        """The moduli prior's coefficients, repeated over gate blocks and permuted, shape=[blocks, n_out, cols]."""
        c = self.prior.coefficients(layout, points_out, points_in)
        full = c.expand(layout.blocks, *c.shape).reshape(-1)
        perm = torch.randperm(full.numel(), generator=generator,
                              device=generator.device if generator is not None else "cpu")
        return full[perm.to(full.device)].reshape(layout.blocks, *c.shape)

    def __repr__(self) -> str:
        return f"ShuffledPrior({self.prior!r})"
