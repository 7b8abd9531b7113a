"""Neuron swaps: move neurons' embedding points to lower the prior's cost (BIMT's permutation step).

Liu, Gan and Tegmark's brain-inspired modular training (2023) periodically
swaps pairs of neurons of a layer when that shortens the network's weighted
wiring. Here a neuron keeps its weights and its place in the network; only
its point on the manifold moves. Exchanging the points of neurons ``a`` and
``b`` of a group changes the coefficients of every term that group touches
(``C <- P C`` for its rows, ``C <- C P`` for its columns, ``C <- P C P`` for a
recurrent matrix whose rows and columns are both the group) and nothing else:
the network computes exactly what it computed before, and the prior's cost
``sum C |W|^l`` changes by an amount computed here exactly.

The cost change of one swap
---------------------------
Per term, with ``M`` the weight's magnitudes (``|W|^l``, or the kernel
slices' ``||T||^l``) summed over the gate blocks that share a coefficient and
divided by the number of coefficients under ``reduction="mean"``, and ``C``
the coefficients (``n_out x cols``):

* rows (the group is the term's ``out_group``):
  ``delta(a, b) = -(M[a] - M[b]) . (C[a] - C[b])``;
* columns (``in_group``): the same on ``M.T`` and ``C.T``;
* a shared (recurrent) matrix, ``C <- P C P``: the row part and the column
  part, plus ``(M[a,a] + M[b,b] - M[a,b] - M[b,a]) (C[a,a] + C[b,b] -
  C[a,b] - C[b,a])`` for the four entries where rows and columns ``{a, b}``
  meet, which the two parts miscount.

Each is ``O(n)`` for one pair; every pair at once is a few matrix products
(:func:`swap_cost_changes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional, Union

import torch
from torch import Tensor

from .. import _validate
from .penalty import magnitude
from .priors import ModuliPrior, ShuffledPrior

__all__ = ["swap_neurons_", "swap_cost_changes", "SwapResult", "GroupSwaps"]


@dataclass(frozen=True)
class GroupSwaps:
    """What :func:`swap_neurons_` did to one neuron group.

    Attributes
    ----------
    swaps : int
        Swaps applied.
    passes : int
        Sweeps over the group's neurons (the last one applied none unless
        ``passes`` ran out).
    cost_before, cost_after : float
        Sum of the penalties of the terms touching this group, before and
        after its swaps (groups are processed in turn, so a later group's
        ``cost_before`` includes the earlier groups' swaps).
    permutation : Tensor, shape=[n]
        The points' new order: new ``points[i]`` is old
        ``points[permutation[i]]`` (identity when no swap was applied).
    """

    swaps: int
    passes: int
    cost_before: float
    cost_after: float
    permutation: Tensor = field(repr=False)


@dataclass(frozen=True)
class SwapResult:
    """What one call of :func:`swap_neurons_` did.

    Attributes
    ----------
    swaps : int
        Swaps applied, over every group.
    cost_before, cost_after : float
        ``priors.penalty()`` (evaluated under ``torch.no_grad()``) before and
        after the call.
    groups : dict of str to GroupSwaps
        Per neuron group processed, in order.
    """

    swaps: int
    cost_before: float
    cost_after: float
    groups: dict

    @property
    def gain(self) -> float:
        """``cost_before - cost_after`` (>= 0 up to the penalty's rounding)."""
        return self.cost_before - self.cost_after


def _work_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _check_prior_set(priors) -> None:
    from .state import PriorSet

    if not isinstance(priors, PriorSet):
        raise TypeError(f"priors must be a moduli.regularizers.PriorSet (returned by attach); got "
                        f"{type(priors).__name__}")
    prior = priors.prior
    name = type(prior).__name__
    if prior.manifold is None:
        raise ValueError(f"swapping neurons needs a prior whose coefficients depend on the neurons' points; {name} "
                         "has no manifold (L1Prior weighs every entry alike), so no swap can change its cost")
    if not isinstance(prior, ModuliPrior):
        if isinstance(prior, ShuffledPrior):
            raise ValueError("swapping neurons needs coefficients that are a function of the points; ShuffledPrior "
                             "permutes its coefficients at random, so moving a neuron's point does not move its "
                             "coefficients")
        raise ValueError(f"swapping neurons needs a ModuliPrior (coefficients inhibitor(manifold.cdist(points))); "
                         f"got {name}, whose coefficients need not be a function of the points")
    if type(prior).coefficients is not ModuliPrior.coefficients:
        raise ValueError(f"{name} overrides ModuliPrior.coefficients: its coefficients need not be "
                         "inhibitor(manifold.cdist(points)), which swapping neurons relies on")


def _select_groups(priors, groups) -> list:
    names = list(priors.embeddings)
    if groups is None:
        return names
    if isinstance(groups, str):
        groups = [groups]
    try:
        chosen = list(groups)
    except TypeError:
        raise TypeError(f"groups must be None, a neuron group's name or a list of them; got "
                        f"{type(groups).__name__}") from None
    for g in chosen:
        if not isinstance(g, str):
            raise TypeError(f"groups must hold names (str) of neuron groups; got {type(g).__name__}")
        if g not in priors.embeddings:
            raise ValueError(f"groups names {g!r}, which is not a neuron group of this prior set (its groups: "
                             f"{', '.join(names)})")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"groups names a neuron group twice: {chosen}")
    return chosen


def _touching(priors, group: str) -> list:
    terms = [t for t in priors.terms.values() if group in (t.layout.out_group, t.layout.in_group)]
    for t in terms:
        if t.layout.groups != 1:
            raise ValueError(f"{t.name} is a grouped convolution (groups={t.layout.groups}): swapping two of its "
                             "channels from different convolution groups changes which coefficients they see, "
                             "not only their order; swaps support groups=1 only (leave its neuron groups out "
                             "with groups=)")
        if not t.live and t.coeff.ndim != 2:
            raise ValueError(f"the coefficients of {t.name} have shape {tuple(t.coeff.shape)}, not one per neuron "
                             "pair (n_out, cols): they are not a function of the points")
    return terms


class _Group:
    """The working state of one neuron group: magnitudes and coefficients of every term it touches,
    in a working dtype, with the group's neurons along the first axis.

    ``rowlike`` holds ``stack([M, C])`` per term whose rows or columns (then transposed) are the group;
    ``shared`` holds ``stack([M, C, M.T, C.T])`` and ``diag(M)``, ``diag(C)`` per term whose rows and
    columns both are. Only the coefficients move (:meth:`swap`); the magnitudes stay.
    """

    def __init__(self, priors, group: str, terms: list):
        self.n = priors.embeddings[group].points.shape[0]
        self.rowlike = []
        self.shared = []
        for t in terms:
            lay = t.layout
            with torch.no_grad():
                w = t.weight.detach()
                c = t._base().detach()
            dtype = _work_dtype(c.device)
            m = magnitude(w.to(dtype), t.exponent, lay.slice_norm).reshape(lay.blocks, lay.n_out, lay.cols).sum(0)
            if t.reduction == "mean":
                m = m / (lay.blocks * lay.n_out * lay.cols)
            c = c.to(dtype)
            if lay.shared:
                x = torch.stack([m, c, m.t(), c.t()])
                self.shared.append((x, m.diagonal().clone(), c.diagonal().clone()))
            elif lay.out_group == group:
                self.rowlike.append(torch.stack([m, c]))
            else:
                self.rowlike.append(torch.stack([m.t(), c.t()]))

    @property
    def device(self) -> torch.device:
        return (self.rowlike or [s[0] for s in self.shared])[0].device

    def cost(self) -> float:
        """The cost of the terms touching the group, in the working dtype."""
        total = 0.0
        for x in self.rowlike:
            total += float(torch.dot(x[0].reshape(-1), x[1].reshape(-1)))
        for x, _, _ in self.shared:
            total += float(torch.dot(x[0].reshape(-1), x[1].reshape(-1)))
        return total

    def all_changes(self) -> Tensor:
        """The exact cost change of swapping every pair, shape=[n, n] (zero diagonal)."""
        d = torch.zeros(self.n, self.n, dtype=(self.rowlike or [s[0] for s in self.shared])[0].dtype,
                        device=self.device)
        for m, c in self.rowlike:
            g = m @ c.t()  # g[a, b] = M[a] . C[b]
            dg = g.diagonal()
            d += g + g.t() - dg[:, None] - dg[None, :]
        for x, s, cd in self.shared:
            m, c = x[0], x[1]
            for g in (m @ c.t(), m.t() @ c):  # rows M[a] . C[b]; columns M[:, a] . C[:, b]
                dg = g.diagonal()
                d += g + g.t() - dg[:, None] - dg[None, :]
            # the rows and columns {a, b} meet in four entries, which the row and column parts
            # miscount by (S_aa + S_bb - S_ab - S_ba)(C_aa + C_bb - C_ab - C_ba)
            d += (s[:, None] + s[None, :] - m - m.t()) * (cd[:, None] + cd[None, :] - c - c.t())
        d.fill_diagonal_(0.0)
        return d

    def changes(self, a: int, bs: Tensor) -> Tensor:
        """The exact cost change of swapping ``a`` with each of ``bs`` (not containing ``a``), shape=[len(bs)]."""
        d = None
        for x in self.rowlike:
            y, xa = x[:, bs], x[:, a]  # (2, k, cols), (2, cols)
            part = torch.bmm(y, xa.flip(0)[:, :, None]).sum(0).squeeze(1)  # M[b] . C[a] + C[b] . M[a]
            part -= (y[0] * y[1]).sum(1) + torch.dot(xa[0], xa[1])
            d = part if d is None else d.add_(part)
        for x, s, cd in self.shared:
            y, xa = x[:, bs], x[:, a]  # (4, k, n), (4, n)
            cross = xa[[1, 0, 3, 2], :, None]
            part = torch.bmm(y, cross).sum(0).squeeze(1)
            part -= (y[0::2] * y[1::2]).sum((0, 2)) + (xa[0::2] * xa[1::2]).sum()
            ab = xa[:, bs]  # M[a, b], C[a, b], M[b, a], C[b, a]
            part += (s[a] + s[bs] - ab[0] - ab[2]) * (cd[a] + cd[bs] - ab[1] - ab[3])
            d = part if d is None else d.add_(part)
        return d

    def swap(self, a: int, b: int) -> None:
        """Exchange the points of ``a`` and ``b`` in the working coefficients."""
        for x in self.rowlike:
            _swap_rows(x[1], a, b)
        for x, _, cd in self.shared:
            for c in (x[1], x[3]):
                _swap_rows(c, a, b)
                _swap_rows(c.t(), a, b)
            _swap_rows(cd, a, b)


def _swap_rows(x: Tensor, a: int, b: int) -> None:
    row = x[a].clone()
    x[a] = x[b]
    x[b] = row


def _penalty_of(terms) -> float:
    with torch.no_grad():
        return float(sum(float(t.penalty()) for t in terms))


def swap_cost_changes(priors, group: str) -> Tensor:
    """The exact change of the prior's cost if the points of each pair of neurons were exchanged.

    Parameters
    ----------
    priors : PriorSet
        From :func:`moduli.regularizers.attach` with a :class:`ModuliPrior`.
    group : str
        A neuron group (a key of ``priors.embeddings``).

    Returns
    -------
    Tensor, shape=[n, n]
        ``changes[a, b]``: ``penalty() after - penalty() before`` for the swap
        of ``a`` and ``b`` (symmetric up to rounding, zero diagonal), in
        float64 on the coefficients' device.

    Raises
    ------
    ValueError, TypeError
        As :func:`swap_neurons_`.
    """
    _check_prior_set(priors)
    if not isinstance(group, str):
        raise TypeError(f"group must be the name (str) of a neuron group; got {type(group).__name__}")
    (group,) = _select_groups(priors, [group])
    return _Group(priors, group, _touching(priors, group)).all_changes()


def _check_rowwise(priors, group: str) -> None:
    """A trained embedding's ``from_unconstrained`` must map each row of ``u`` to its own point."""
    emb = priors.embeddings[group]
    if not emb.trainable:
        return
    with torch.no_grad():
        u = emb.u.detach()
        flipped = emb.manifold.from_unconstrained(u.flip(0))
        ok = torch.allclose(flipped, emb.points.detach().flip(0), rtol=1e-6, atol=1e-6)
    if not ok:
        raise ValueError(f"the embedding of {group} is trained through {type(emb.manifold).__name__}."
                         "from_unconstrained, which does not map each row of u to its own point: permuting the "
                         "rows of u would not permute the points, so its neurons cannot be swapped")


def _permute_optimizer_state(optimizer, param: Tensor, perm: Tensor) -> None:
    state = optimizer.state.get(param)
    if not state:
        return
    for key, value in state.items():
        if isinstance(value, Tensor) and value.shape == param.shape:
            value.copy_(value[perm.to(value.device)])


@torch.no_grad()
def _apply(priors, group: str, terms: list, perm: Tensor, optimizer) -> None:
    """Permute the group's stored points and the cached coefficients of the terms touching it."""
    emb = priors.embeddings[group]
    store = emb.u if emb.trainable else emb.fixed
    idx = perm.to(store.device)
    store.copy_(store[idx])
    if emb.trainable:
        if emb.u.grad is not None:
            emb.u.grad.copy_(emb.u.grad[idx])
        if optimizer is not None:
            _permute_optimizer_state(optimizer, emb.u, perm)
    for t in terms:
        if t.live:
            continue  # recomputed from the points at every call
        lay = t.layout
        c = t.coeff
        i = perm.to(c.device)
        if lay.out_group == group:
            c.copy_(c[i])
        if lay.in_group == group:
            c.copy_(c[:, i])


def swap_neurons_(priors, *, candidates: int = 16, groups: Union[None, str, Iterable[str]] = None,
                  passes: int = 1, rtol: float = 1e-10,
                  optimizer: Optional[torch.optim.Optimizer] = None) -> SwapResult:
    """Greedily exchange neurons' embedding points where that lowers the prior's cost (in place).

    For each neuron group, a pass visits the neurons ``a = 0 .. n-1`` in turn;
    for each it evaluates exactly (``O(n)`` per pair, over the candidates at
    once) the change of the cost of swapping ``a``'s point with each of its
    ``candidates`` partners, and applies the best swap if it lowers the cost
    of the terms touching the group by more than ``rtol`` times that cost.
    The weights are not touched (the model computes exactly what it did);
    only the points and the coefficients move, which is the neuron
    permutation of brain-inspired modular training (Liu, Gan and Tegmark
    2023) seen from the embedding.

    Candidates: at the start of each pass, the change of every pair is
    computed exactly (:func:`swap_cost_changes`: a few ``n x n x cols`` matrix
    products), and the partners of ``a`` are the ``candidates`` with the most
    negative change there. Swaps earlier in the pass make that ranking stale
    for pairs involving the neurons moved (for a recurrent matrix, slightly
    stale for every pair); the change of the swap applied is always
    recomputed for the current points. A pass that applies no swap therefore
    certifies that no exchange of any two neurons lowers the cost (a local
    minimum over all pairs): repeated calls converge, the cost never rising.

    Parameters
    ----------
    priors : PriorSet
        From :func:`moduli.regularizers.attach` with a :class:`ModuliPrior`
        (fixed or trained embedding, frozen or not).
    candidates : int
        Partners evaluated per neuron, >= 1 (``n - 1`` or more: all of them).
    groups : str or list of str, optional
        Neuron groups to process (keys of ``priors.embeddings``), in this
        order; default every group, the network's input and output units
        included (name the hidden groups to keep those where they are). With
        ``tie="consecutive"`` a tied hidden group's cost involves the rows of
        one layer and the columns of the next.
    passes : int
        Maximum sweeps per group, >= 1; stops early after a sweep with no swap.
    rtol : float
        A swap is applied when it lowers the group's cost by more than
        ``rtol`` times it (>= 0; guards against swaps whose gain is rounding).
    optimizer : torch.optim.Optimizer, optional
        For trained embeddings: its per-parameter state tensors of the
        embedding's shape (Adam's moments, momentum) are permuted with the
        points. Without it they stay where they were, attached to the old
        neuron order.

    Returns
    -------
    SwapResult
        Swaps applied, ``priors.penalty()`` before and after, and per group
        the swaps, sweeps, costs of the terms touching it and the permutation
        of its points.

    Raises
    ------
    TypeError
        If ``priors`` is not a :class:`PriorSet`, ``candidates``/``passes`` are
        not ints, or ``groups`` holds something other than names.
    ValueError
        If the prior has no manifold (:class:`L1Prior`), its coefficients are
        not ``inhibitor(cdist(points))`` (:class:`ShuffledPrior`, a subclass
        overriding ``coefficients``), a term touching a processed group is a
        grouped convolution, ``candidates``/``passes`` are < 1, or ``groups``
        names an unknown group.

    Notes
    -----
    Trained embeddings: the rows of the parameter ``u`` are permuted (a
    per-point map ``from_unconstrained`` makes that a permutation of the
    points); frozen coefficients are permuted too, live ones are recomputed
    from ``u`` at the next call; a pending ``u.grad`` is permuted with ``u``.
    Pass ``optimizer`` to carry its state along.
    The cost changes are computed in float64 (float32 on MPS); the costs
    reported are ``penalty()`` in the model's dtype.
    """
    _check_prior_set(priors)
    candidates = _validate.integer(candidates, "candidates", minimum=1)
    passes = _validate.integer(passes, "passes", minimum=1)
    rtol = _validate.nonnegative(rtol, "rtol")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None; got {type(optimizer).__name__}")
    chosen = _select_groups(priors, groups)
    touching = {g: _touching(priors, g) for g in chosen}
    for g in chosen:
        _check_rowwise(priors, g)
    priors._follow_model()
    with torch.no_grad():
        before = float(priors.penalty())
    out = {}
    total = 0
    for g in chosen:
        terms = touching[g]
        state = _Group(priors, g, terms)
        n = state.n
        g_before = _penalty_of(terms)
        perm = torch.arange(n, device=state.device)
        swaps = sweeps = 0
        k = min(candidates, n - 1)
        for _ in range(passes if n > 1 else 0):
            sweeps += 1
            applied = 0
            ranking = state.all_changes()
            ranking.fill_diagonal_(math.inf)
            tol = rtol * state.cost()
            partners = torch.topk(ranking, k, dim=1, largest=False).indices
            del ranking
            for a in range(n):
                bs = partners[a]
                value, best = torch.min(state.changes(a, bs), 0)
                if value.item() < -tol:
                    b = int(bs[best])
                    state.swap(a, b)
                    perm[[a, b]] = perm[[b, a]]
                    applied += 1
            swaps += applied
            if applied == 0:
                break
        if swaps:
            _apply(priors, g, terms, perm, optimizer)
        out[g] = GroupSwaps(swaps=swaps, passes=sweeps, cost_before=g_before, cost_after=_penalty_of(terms),
                            permutation=perm.cpu())
        total += swaps
    with torch.no_grad():
        after = float(priors.penalty())
    return SwapResult(swaps=total, cost_before=before, cost_after=after, groups=out)
