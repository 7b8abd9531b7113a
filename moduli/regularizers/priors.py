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

Priors that depend on the weight
--------------------------------
A prior whose penalty is not ``sum C |W|^l`` overrides
:meth:`Prior.weight_penalty`: a differentiable function of the weight and of
what :meth:`Prior.coefficients` returned at attach time (its geometry, e.g.
distances or a neighbourhood kernel). Such a prior is *weight-dependent*
(:attr:`Prior.weight_dependent`): the prior set evaluates it with autograd
(``penalty()`` and ``add_penalty_grad_`` alike), has no proximal step, and
does not train embeddings. :class:`CommunicabilityPrior` and
:class:`TopoLossPrior` are the built-in ones.
"""

from __future__ import annotations

import abc
from typing import Optional

import torch
from torch import Tensor

from .. import _validate
from ..manifolds import Manifold
from .inhibitors import Inhibitor
from .penalty import REDUCTIONS, coefficient_matrix, group_gather, weighted_penalty

__all__ = [
    "Prior", "ModuliPrior", "L1Prior", "ShuffledPrior", "CommunicabilityPrior", "TopoLossPrior",
    "communicability_penalty", "topo_loss",
]


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
            alike, kernel entries included). A weight-dependent prior (one
            overriding :meth:`weight_penalty`) may return any finite floating
            tensor its :meth:`weight_penalty` reads.
        """

    def weight_penalty(self, weight: Tensor, base: Tensor, layout) -> Tensor:
        """The penalty of one target weight, as a differentiable function of the weight.

        The extension point of priors whose penalty is not ``sum C |W|^l``.
        This default is Eq. 6 with ``base`` as the coefficients (what the
        prior set computes faster, with its fused and sparse paths, for every
        prior that does not override it). A subclass overriding it is
        weight-dependent (:attr:`weight_dependent`): ``penalty()`` calls it
        on the effective weight and differentiates it with autograd, and
        ``add_penalty_grad_(lam)`` adds ``lam`` times its autograd gradient
        to the stored parameters' ``.grad`` (``<name>_orig`` of a pruned
        weight, which the mask gives zero gradient where it is zero).

        Parameters
        ----------
        weight : Tensor, shape=layout.shape
            The effective weight (``orig * mask`` if pruned), part of the
            autograd graph when gradients are wanted.
        base : Tensor
            What :meth:`coefficients` returned for this target at attach time
            (moved to the weight's device and dtype).
        layout : moduli.targets.TargetLayout

        Returns
        -------
        Tensor, shape=[]
            Honouring ``self.reduction``.
        """
        return weighted_penalty(weight, base, self.exponent, slice_norm=layout.slice_norm, reduction=self.reduction)

    @property
    def weight_dependent(self) -> bool:
        """Whether this prior overrides :meth:`weight_penalty` (its penalty is evaluated by autograd)."""
        return type(self).weight_penalty is not Prior.weight_penalty

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


# ----------------------------------------------------------------------------- weight-dependent priors

STRENGTHS = ("out", "in", "total")


def _safe_rsqrt(s: Tensor) -> Tensor:
    """``s ** -0.5`` where ``s > 0`` and 0 where ``s == 0``, with a finite gradient everywhere."""
    positive = s > 0
    return torch.where(positive, torch.where(positive, s, torch.ones_like(s)).rsqrt(), torch.zeros_like(s))


def communicability_penalty(weight: Tensor, distances: Tensor, *, strength: str = "out",
                            reduction: str = "sum") -> Tensor:
    """seRNN's weighted-communicability penalty ``sum_ij |W_ij| d_ij C_ij``.

    ``C = expm(S^{-1/2} |W| S^{-1/2})`` with its diagonal set to zero, ``S``
    the diagonal matrix of node strengths (Crofts and Higham's weighted
    communicability, as used by Achterberg et al. 2023). A neuron of strength
    0 (every connection of the counted direction pruned) gets ``S^{-1/2} =
    0``: its row and column of the normalised matrix are zero instead of the
    ``0 * inf = NaN`` of ``s ** -0.5``; value and gradient stay finite.

    Parameters
    ----------
    weight : Tensor, shape=[n, n] or [blocks, n, n]
        Square (gate blocks are independent graphs of the same neurons).
        Neuron ``i`` is row ``i`` and column ``i``; ``W_ij`` is the connection
        from ``j`` to ``i`` (torch's ``(out, in)`` orientation).
    distances : Tensor, shape=[n, n]
        ``d_ij``, non-negative.
    strength : {"out", "in", "total"}
        The strength ``s_i`` of neuron ``i``: ``"out"`` (default) its outgoing
        weight ``sum_j |W_ji|`` (the column sums of a torch weight, which is
        what seRNN's row sums of a Keras kernel, stored ``(in, out)``,
        compute); ``"in"`` its incoming weight ``sum_j |W_ij|`` (the row
        sums); ``"total"`` both added. With ``"out"`` (``"in"``) the
        normalised matrix is similar to the column- (row-) stochastic
        ``|W| S^{-1}`` (``S^{-1} |W|``): its spectral radius is 1, but an entry
        ``|W_ij| / sqrt(s_i s_j)`` grows without bound as ``s_i`` tends to 0
        while the other direction's weights do not, and jumps to 0 at
        ``s_i = 0``. With ``"total"`` every normalised entry is at most 1
        (``|W_ij| <= min(s_i, s_j)``) and tends to 0 with a neuron's strength.
    reduction : {"sum", "mean"}
        ``"mean"`` divides by the number of entries of ``weight``.

    Returns
    -------
    Tensor, shape=[]
    """
    if weight.ndim not in (2, 3) or weight.shape[-1] != weight.shape[-2]:
        raise ValueError(f"weight must be square, of shape (n, n) or (blocks, n, n); got {tuple(weight.shape)}")
    strength = _validate.choice(strength, "strength", STRENGTHS)
    reduction = _validate.choice(reduction, "reduction", REDUCTIONS)
    a = weight.abs()
    if strength == "out":
        s = a.sum(-2)
    elif strength == "in":
        s = a.sum(-1)
    else:
        s = a.sum(-2) + a.sum(-1)
    r = _safe_rsqrt(s)
    comm = torch.linalg.matrix_exp(r.unsqueeze(-1) * a * r.unsqueeze(-2))
    n = weight.shape[-1]
    off_diagonal = 1 - torch.eye(n, dtype=weight.dtype, device=weight.device)
    total = (a * comm * (distances * off_diagonal)).sum()
    return total / weight.numel() if reduction == "mean" else total


def topo_loss(weight: Tensor, kernel: Tensor, *, reduction: str = "sum") -> Tensor:
    """TopoLoss: ``sum_i 1 - cos(w_i, wbar_i)`` with ``wbar = K W``.

    ``w_i`` is row ``i`` of the weight flattened (an output unit's weight
    vector: its incoming weights, a convolution's flattened kernels);
    ``wbar_i = sum_j K_ij w_j`` its neighbourhood's average. A unit whose
    vector or average is zero (a pruned unit) has cosine 0 by definition
    (term 1) and zero gradient.

    Parameters
    ----------
    weight : Tensor, shape=[n, ...] or [blocks, n, ...]
        Rows are units; trailing axes are flattened. Gate blocks are
        averaged (each block's rows against the same kernel).
    kernel : Tensor, shape=[n, n]
        ``K`` (row-normalised by :class:`TopoLossPrior`).
    reduction : {"sum", "mean"}
        ``"mean"`` divides by the number of units (times blocks): the
        average ``1 - cos`` of Deb et al.

    Returns
    -------
    Tensor, shape=[]
    """
    reduction = _validate.choice(reduction, "reduction", REDUCTIONS)
    n = kernel.shape[-1]
    if kernel.ndim != 2 or kernel.shape[0] != n or weight.ndim < 2 or weight.shape[0] % n:
        raise ValueError(f"kernel must be (n, n) and weight (blocks * n, ...); got kernel {tuple(kernel.shape)}, "
                         f"weight {tuple(weight.shape)}")
    w = weight.reshape(weight.shape[0] // n, n, -1)
    avg = kernel @ w
    dot = (w * avg).sum(-1)
    den = (w * w).sum(-1) * (avg * avg).sum(-1)
    positive = den > 0
    cos = torch.where(positive, dot * torch.where(positive, den, torch.ones_like(den)).rsqrt(), torch.zeros_like(den))
    total = (1 - cos).sum()
    return total / cos.numel() if reduction == "mean" else total


def _check_manifold(manifold) -> Manifold:
    if not isinstance(manifold, Manifold):
        raise TypeError(f"manifold must be a moduli.manifolds.Manifold; got {type(manifold).__name__}")
    return manifold


class CommunicabilityPrior(Prior):
    """seRNN's spatial communicability prior: ``sum_ij |W_ij| d_ij C_ij`` (Achterberg et al. 2023).

    ``d_ij`` is the distance between the embedding points of neurons ``i``
    and ``j`` on ``manifold`` (seRNN uses Euclidean distance on a 3-D grid;
    ``points=`` of :func:`attach` places neurons), optionally passed through
    an inhibitor; ``C`` is the weighted communicability of ``|W|`` (see
    :func:`communicability_penalty`, which also says how a pruned neuron of
    strength 0 is handled): a connection costs more when it is long and when
    its neurons are well connected through the rest of the network. The
    diagonal of ``C`` is zeroed, as in seRNN, so self-connections
    ``W_ii`` carry no penalty.

    The penalty depends on the weight beyond ``|W|`` (a weight-dependent
    prior): it is evaluated by autograd through ``torch.linalg.matrix_exp``
    (``O(n^3)`` per call, and about eight times that for its gradient), has
    no ``prox_`` and a fixed embedding. ``coefficients()`` holds the
    distances.

    Parameters
    ----------
    manifold : moduli.manifolds.Manifold
        The space neurons are embedded in.
    inhibitor : Inhibitor, optional
        ``d_ij = inhibitor(distance)`` (checked non-negative on the space);
        default the plain distance.
    strength : {"out", "in", "total"}
        Which node strengths normalise ``|W|`` (default ``"out"``, seRNN's
        convention; see :func:`communicability_penalty`).
    reduction : {"sum", "mean"}
        ``"mean"`` divides each target's sum by its number of entries
        (seRNN's ``reduce="mean"``).

    Notes
    -----
    Targets must be square: a recurrent matrix, or a square weight named in
    ``targets=`` whose row ``i`` and column ``i`` are taken to be the same
    neuron (as when a ``Linear(n, n)`` is applied recurrently). An LSTM/GRU
    recurrent matrix ``(blocks * n, n)`` is penalised per gate block (the
    sum, or mean, over the blocks' penalties), every block being a graph of
    the same ``n`` neurons; convolutions are refused.

    Examples
    --------
    >>> import torch
    >>> from moduli import manifolds as mf, regularizers as rg
    >>> rnn = torch.nn.RNN(2, 6)
    >>> priors = rg.attach(rnn, rg.CommunicabilityPrior(mf.Euclidean(3)),
    ...                    generator=torch.Generator().manual_seed(0))
    >>> priors.terms["weight_hh_l0"].coefficients().shape  # the distances
    torch.Size([6, 6])
    >>> bool(priors.penalty() > 0)
    True
    """

    def __init__(self, manifold, inhibitor: Optional[Inhibitor] = None, *, strength: str = "out",
                 reduction: str = "sum"):
        self.manifold = _check_manifold(manifold)
        if inhibitor is not None:
            if not isinstance(inhibitor, Inhibitor):
                raise TypeError(f"inhibitor must be None or a moduli.regularizers.Inhibitor; got "
                                f"{type(inhibitor).__name__}")
            inhibitor.validate_for(manifold)
        super().__init__(exponent=1.0, reduction=reduction)
        self.inhibitor = inhibitor
        self.strength = _validate.choice(strength, "strength", STRENGTHS)

    def coefficients(self, layout, points_out, points_in=None, *, generator=None) -> Tensor:
        """The distances ``d_ij`` (through the inhibitor if any), shape=[n, n].

        Raises
        ------
        ValueError
            If the target is not square (naming it) or is a convolution.
        """
        if len(layout.shape) != 2 or layout.groups != 1:
            raise ValueError(f"CommunicabilityPrior needs a square weight matrix; {layout.name} is a "
                             f"{layout.kind} weight of shape {tuple(layout.shape)}")
        if layout.n_out != layout.n_in:
            raise ValueError(f"CommunicabilityPrior needs a square weight matrix (communicability is a property "
                             f"of a graph on one set of neurons); {layout.name} has shape {tuple(layout.shape)} "
                             f"({layout.n_out} output and {layout.n_in} input neurons)")
        d = self.manifold.cdist(points_out, points_in)
        return d if self.inhibitor is None else self.inhibitor(d)

    def weight_penalty(self, weight: Tensor, base: Tensor, layout) -> Tensor:
        """:func:`communicability_penalty` of the weight (its gate blocks apart) with ``base`` as distances."""
        w = weight if layout.blocks == 1 else weight.reshape(layout.blocks, layout.n_out, layout.n_in)
        return communicability_penalty(w, base, strength=self.strength, reduction=self.reduction)

    def __repr__(self) -> str:
        return (f"CommunicabilityPrior({self.manifold!r}, {self.inhibitor!r}, strength={self.strength!r}, "
                f"reduction={self.reduction!r})")


class TopoLossPrior(Prior):
    """TopoLoss (Deb et al. 2025, TopoNets): output units on a space, each unit's weights close to its neighbours'.

    The rows of a target (output units: a linear layer's outputs, a
    convolution's output channels with their kernels flattened, a recurrent
    layer's hidden units) are embedded on ``manifold``; the penalty is
    ``sum_i 1 - cos(w_i, wbar_i)`` (:func:`topo_loss`) with ``wbar = K W``
    the neighbourhood average of the units' weight vectors. ``K`` is the
    row-normalised kernel ``K_ij = k(d(i, j)) / sum_m k(d(i, m))`` on the
    embedding distances, **unit i itself included** (``k(0) = 1``; the
    blurred sheet of TopoLoss contains the unit), so every row has positive
    mass: with ``sigma``, a Gaussian ``k(d) = exp(-d^2 / (2 sigma^2))`` (a
    grid: points of a ``FlatTorus`` or ``Euclidean`` space); with ``radius``,
    ``k(d) = 1`` for ``d <= radius`` and 0 beyond (a ``GraphSpace`` with
    ``radius=1``: the unit and its graph neighbours, equally weighted).

    A weight-dependent prior: evaluated by autograd (``O(n^2 * fan_in)`` for
    ``K W``), no ``prox_``, fixed embedding. ``coefficients()`` holds ``K``.

    Parameters
    ----------
    manifold : moduli.manifolds.Manifold
    sigma : float, optional
        Width of the Gaussian kernel. Give exactly one of ``sigma`` and
        ``radius``.
    radius : float, optional
        Neighbourhood radius (inclusive).
    reduction : {"sum", "mean"}
        ``"sum"`` over units (and gate blocks, which are averaged against the
        same kernel); ``"mean"`` their average (the TopoLoss of Deb et al.).

    Examples
    --------
    >>> import networkx as nx, torch
    >>> from moduli import manifolds as mf, regularizers as rg
    >>> grid = mf.GraphSpace(nx.grid_2d_graph(3, 3))
    >>> layer = torch.nn.Sequential(torch.nn.Linear(5, 9))
    >>> priors = rg.attach(layer, rg.TopoLossPrior(grid, radius=1), targets="linear",
    ...                    points={"0.out": grid.points(grid.nodes)})
    >>> priors.terms["0.weight"].coefficients()[4]  # the centre: itself and 4 neighbours
    tensor([0.0000, 0.2000, 0.0000, 0.2000, 0.2000, 0.2000, 0.0000, 0.2000, 0.0000])
    """

    def __init__(self, manifold, *, sigma: Optional[float] = None, radius: Optional[float] = None,
                 reduction: str = "sum"):
        self.manifold = _check_manifold(manifold)
        if (sigma is None) == (radius is None):
            raise ValueError("TopoLossPrior needs exactly one of sigma (a Gaussian kernel) and radius (neighbours "
                             f"within a distance); got sigma={sigma!r}, radius={radius!r}")
        self.sigma = None if sigma is None else _validate.positive(sigma, "sigma")
        self.radius = None if radius is None else _validate.nonnegative(radius, "radius")
        super().__init__(exponent=1.0, reduction=reduction)

    def coefficients(self, layout, points_out, points_in=None, *, generator=None) -> Tensor:
        """The row-normalised kernel ``K`` of the output units, shape=[n_out, n_out]."""
        d = self.manifold.cdist(points_out)
        if self.sigma is not None:
            k = torch.exp(-0.5 * (d / self.sigma) ** 2)
        else:
            k = (d <= self.radius).to(d.dtype)
        k.fill_diagonal_(1.0)  # the unit itself, whatever rounding did to d(i, i)
        return k / k.sum(1, keepdim=True)

    def weight_penalty(self, weight: Tensor, base: Tensor, layout) -> Tensor:
        """:func:`topo_loss` of the weight's rows with ``base`` as the kernel."""
        return topo_loss(weight, base, reduction=self.reduction)

    def __repr__(self) -> str:
        width = f"sigma={self.sigma:g}" if self.sigma is not None else f"radius={self.radius:g}"
        return f"TopoLossPrior({self.manifold!r}, {width}, reduction={self.reduction!r})"
