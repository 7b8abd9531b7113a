"""The state of attached priors: embeddings, coefficients, and the calls into the penalty math.

:func:`attach` returns a :class:`PriorSet` (a ``torch.nn.Module``): one
:class:`NeuronEmbedding` per neuron group on ``prior.manifold`` and one
:class:`Term` per target weight. These classes hold buffers and parameters
and call :mod:`moduli.regularizers.penalty`; what differs between priors
comes from the prior itself (:meth:`Prior.coefficients`, ``manifold``,
``trainable``). The model is never modified, and pruning is read through
:mod:`moduli.targets` at every call (the effective weight ``orig * mask``;
fused gradients go to ``orig``). A weight-dependent prior (one overriding
:meth:`Prior.weight_penalty`) is evaluated by autograd on the effective weight
instead of the fused and sparse paths.
"""

from __future__ import annotations

import weakref
from typing import Optional

import torch
from torch import Tensor, nn

from .. import _validate
from .. import targets as tg
from . import penalty as _penalty
from .penalty import (
    FixedPenalty, KeptPairs, LivePenalty, SparseFixedPenalty, as_coefficients, group_gather, kept_entry_gradient,
    kept_pairs, live_pass, penalty_gradient, sparse_pass, weighted_penalty,
)
from .priors import Prior

__all__ = ["attach", "PriorSet", "Term", "NeuronEmbedding"]


def attach(model: nn.Module, prior: Prior, targets: tg.TargetSpec = "recurrent", *, points: Optional[dict] = None,
           generator: Optional[torch.Generator] = None, tie: Optional[str] = None) -> "PriorSet":
    """Apply a prior to the target weights of a model; return the prior set.

    The model is not modified (same class, same ``state_dict`` keys). The
    returned prior set (a ``torch.nn.Module``) holds the embeddings and
    coefficients.

    Parameters
    ----------
    model : torch.nn.Module
    prior : Prior
        :class:`ModuliPrior`, :class:`L1Prior`, :class:`ShuffledPrior`, or
        your own subclass of :class:`Prior`.
    targets : str, list of str, or callable
        ``"recurrent"`` (default: every ``weight_hh_l{k}[_reverse]`` of
        ``nn.RNN``/``nn.LSTM``/``nn.GRU`` and ``weight_hh`` of RNN cells, one
        embedding per layer and direction shared by the gate blocks),
        ``"linear"`` (``nn.Linear`` weights, one embedding for the inputs and
        one for the outputs of each layer), ``"conv"`` (``nn.Conv1d/2d/3d``
        weights, channels embedded, L2 norm per kernel slice), ``"attention"``
        (``in_proj_weight`` of ``nn.MultiheadAttention``: q/k/v blocks of the
        attention units, one embedding shared with ``out_proj``'s columns), a
        list of those kinds and/or parameter names (as in ``model.named_parameters()``;
        ``"<name>_orig"`` of a pruned weight is accepted too), or a predicate
        ``(name, weight) -> bool`` called on every parameter with at least two
        dimensions (biases are never targets). A weight registered with
        ``torch.nn.utils.parametrize`` is named by the layer's attribute
        (``"0.weight"``) and penalised as the layer computes it. See
        :func:`moduli.targets.find_targets`.
    points : dict, optional
        Embeddings to use instead of random ones: keys are neuron groups
        (``priors.embeddings``) or target names; values are tensors of shape
        ``(n, coord_dim)`` (or a pair ``(points_out, points_in)`` for a
        target whose rows and columns are different neurons).
    generator : torch.Generator, optional
        Seeds the random embeddings (and the shuffled permutation).
    tie : {None, "consecutive"}
        ``None`` (default): every layer has its own input and output neuron
        groups. ``"consecutive"``: in every ``nn.Sequential``, an ``nn.Linear``
        target and the next ``nn.Linear`` target, with only parameter-free
        modules (activations, dropout) or normalization layers between them,
        share neurons -- the output neurons of the first and the input
        neurons of the second are one embedding (one set of points; trained
        points get the gradients of both terms). The tied group keeps the
        first layer's name (``"0.out"``); ``points`` keyed by the second's
        (``"2.in"``) go to it.

    Returns
    -------
    PriorSet
        With ``.penalty()``, ``.terms[name]`` (``.points_out``, ``.points_in``,
        ``.weight``, ``.coefficients()``), ``.parameters()`` (trained
        embeddings), ``.freeze()``/``.unfreeze()``, ``.add_penalty_grad_(lam)``,
        ``state_dict()``/``load_state_dict()``.

    Raises
    ------
    ValueError
        If no weight matches ``targets``, a name is unknown or a matched
        parameter is not a weight matrix, or ``points`` has the wrong size.
    TypeError
        If ``model`` is not an ``nn.Module`` or ``prior`` is not a :class:`Prior`.
    """
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be a moduli.regularizers.Prior (ModuliPrior, L1Prior, ShuffledPrior or a "
                        f"subclass of your own); got {type(prior).__name__}")
    layouts = tg.find_targets(model, targets)
    if tie is not None:
        if tie != "consecutive":
            raise ValueError(f"tie must be None or 'consecutive'; got {tie!r}")
        layouts, alias = _tie_consecutive(model, layouts)
        if points is not None and isinstance(points, dict):
            renamed = {}
            for key, value in points.items():
                group = alias.get(key, key)
                if group in renamed:
                    raise ValueError(f"points has keys for both {group!r} and {key!r}, which tie='consecutive' "
                                     "makes one neuron group; give one of them")
                renamed[group] = value
            points = renamed
    return PriorSet(model, prior, layouts, points=points, generator=generator)


_CHAIN_KEEPS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _tie_consecutive(model: nn.Module, layouts: list) -> tuple[list, dict]:
    """Layouts with the output group of each ``nn.Linear`` target and the input group of the next
    one in an ``nn.Sequential`` made one; and ``{merged-away group: its new name}``."""
    from dataclasses import replace

    linear = {}
    for lay in layouts:
        module, attr = tg.resolve(model, lay.name)
        if isinstance(module, nn.Linear) and attr == "weight" and lay.blocks == 1:
            linear[id(module)] = lay
    alias: dict[str, str] = {}

    def find(group: str) -> str:
        while group in alias:
            group = alias[group]
        return group

    pairs = 0
    for seq_name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        prev = None
        for child in seq.children():
            lay = linear.get(id(child))
            if lay is not None:
                if prev is not None:
                    if prev.n_out != lay.n_in:
                        raise ValueError(
                            f"tie='consecutive': {prev.name} has {prev.n_out} output neurons but the next Linear "
                            f"target {lay.name} has {lay.n_in} inputs; they cannot be the same neurons (pass tie=None, "
                            "or choose targets=)")
                    a, b = find(prev.out_group), find(lay.in_group)
                    if a != b:
                        alias[b] = a
                    pairs += 1
                prev = lay
            elif any(True for _ in child.parameters()) and not isinstance(child, _CHAIN_KEEPS):
                prev = None  # a layer with weights of its own (not a target) breaks the chain
    if pairs == 0:
        raise ValueError("tie='consecutive' found no two consecutive nn.Linear targets in an nn.Sequential of the "
                         "model (targets: " + ", ".join(lay.name for lay in layouts) + ")")
    flat = {g: find(g) for g in alias}
    out = [replace(lay, out_group=flat.get(lay.out_group, lay.out_group),
                   in_group=flat.get(lay.in_group, lay.in_group)) for lay in layouts]
    return out, flat


def _key(name: str) -> str:
    return name.replace(".", ":")


class NeuronEmbedding(nn.Module):
    """Points of one neuron group on a manifold.

    Fixed embeddings are a buffer ``fixed``; trained ones a parameter ``u``
    mapped by ``manifold.from_unconstrained`` at every access, so optimizer
    steps never leave the space.
    """

    def __init__(self, manifold, points: Tensor, trainable: bool):
        super().__init__()
        self.manifold = manifold
        self.trainable = trainable
        if trainable:
            self.u = nn.Parameter(manifold.to_unconstrained(points).detach().clone())
        else:
            self.register_buffer("fixed", points.detach().clone())

    @property
    def points(self) -> Tensor:
        """Tensor, shape=[n, coord_dim] (differentiable in ``u`` when trained)."""
        if self.trainable:
            return self.manifold.from_unconstrained(self.u)
        return self.fixed

    def extra_repr(self) -> str:
        n = (self.u if self.trainable else self.fixed).shape[0]
        return f"n={n}, manifold={self.manifold!r}, trainable={self.trainable}"


class Term(nn.Module):
    """The prior on one weight.

    Attributes
    ----------
    name : str
        The weight's name in ``model.named_parameters()`` (before pruning).
    layout : moduli.targets.TargetLayout
    kind : str
    live : bool
        Coefficients are recomputed from trained embeddings at each call.
    """

    def __init__(self, layout: tg.TargetLayout, module: nn.Module, attr: str, prior: Prior,
                 emb_out: Optional[NeuronEmbedding], emb_in: Optional[NeuronEmbedding], coeff: Tensor, live: bool):
        super().__init__()
        self.layout = layout
        self.name = layout.name
        self.kind = layout.kind
        self.prior = prior
        self.exponent = float(prior.exponent)
        self.reduction = prior.reduction
        self.live = live
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_attr", attr)
        object.__setattr__(self, "_emb_out", emb_out)
        object.__setattr__(self, "_emb_in", emb_in)
        self.register_buffer("coeff", coeff)

    # ----------------------------------------------------------- accessors
    @property
    def points_out(self) -> Optional[Tensor]:
        """Embedding of the rows' neurons, shape=[n_out, coord_dim] (None without a manifold)."""
        return None if self._emb_out is None else self._emb_out.points

    @property
    def points_in(self) -> Optional[Tensor]:
        """Embedding of the columns' neurons, shape=[n_in, coord_dim]; the same
        tensor object as ``points_out`` for a recurrent matrix with fixed
        embedding."""
        return None if self._emb_in is None else self._emb_in.points

    @property
    def manifold(self):
        """The space of the embedding (None without one)."""
        return self.prior.manifold

    @property
    def weight(self) -> Tensor:
        """The effective weight (``orig * mask`` if pruned)."""
        return tg.effective_weight(self._module, self._attr)

    @property
    def parameter(self) -> nn.Parameter:
        """The stored leaf that receives gradients (``<name>_orig`` if pruned, ``.original`` if
        parametrized; ``ValueError`` for a weight parametrized from several tensors, see
        :func:`moduli.targets.stored_parameters`)."""
        return tg.stored_parameter(self._module, self._attr)

    @property
    def parametrized(self) -> bool:
        """The weight is computed by ``torch.nn.utils.parametrize``: penalties and fused gradients
        reach its originals through the parametrization (autograd)."""
        return tg.is_parametrized(self._module, self._attr)

    @property
    def weight_dependent(self) -> bool:
        """The prior overrides :meth:`Prior.weight_penalty` (evaluated by autograd)."""
        return self.prior.weight_dependent

    def _shared(self) -> bool:
        return self._emb_in is self._emb_out

    def _live_base(self) -> Tensor:
        """Coefficients recomputed from the (trained) embeddings, shape=[n_out, n_in // groups]."""
        c = self.prior.inhibitor.forward(self.prior.manifold.cdist(
            self._emb_out.points, None if self._shared() else self._emb_in.points, validate=False))
        return group_gather(c, self.layout.groups)

    def _base(self) -> Tensor:
        """Coefficients broadcastable to ``(blocks, n_out, cols)`` (see :mod:`.penalty`)."""
        return self._live_base() if self.live else self.coeff

    def coefficients(self) -> Tensor:
        """The coefficients with the weight's shape for matrices (gate blocks
        repeat the neurons' coefficients) and ``(out_channels, in_channels //
        groups)`` for convolutions; all ones for L1. For a weight-dependent
        prior, what its ``coefficients()`` returned (e.g. distances or a kernel)."""
        if self.weight_dependent:
            return self.coeff
        lay = self.layout
        return self._base().expand(lay.blocks, lay.n_out, lay.cols).reshape(lay.rows, lay.cols)

    # ------------------------------------------------------------ penalty
    def _kept(self) -> Optional[tuple[Tensor, KeptPairs]]:
        """``(mask, kept pairs)`` when the weight is pruned sparsely enough for the sparse pass, else None.

        The pairs are gathered once per mask: a mask is recognised by its
        identity and its version counter (bumped by every in-place change,
        which is how :func:`moduli.targets.install_mask` and ``load_state_dict``
        change it; a new mask is a new tensor). Writes that bypass the
        counter (through ``mask.data`` or a numpy view) are not seen: call
        :meth:`forget_mask` after them.
        """
        if self.parametrized:  # the sparse passes read the stored leaf as the weight
            return None
        mask = tg.mask_of(self._module, self._attr)
        if mask is None:
            return None
        try:
            version = mask._version
        except RuntimeError:  # an inference tensor has no version counter: gather afresh each call
            version = None
        cached = self.__dict__.get("_kept_cache")
        if cached is None or version is None or cached[0]() is not mask or cached[1] != version:
            cached = (weakref.ref(mask), version, kept_pairs(self.layout, mask))
            self.__dict__["_kept_cache"] = cached
        return (mask, cached[2]) if cached[2].density <= _penalty.SPARSE_DENSITY else None

    def _kept_entries(self) -> Optional[tuple[Tensor, Tensor, Tensor, int]]:
        """``(index, mask_kept, c_kept, divisor)`` for the sparse fixed penalty, or None.

        For a fixed term on a pruned weight without slice norms whose mask
        keeps at most ``SPARSE_DENSITY`` of the entries. Gathered once per
        mask and coefficient buffer (identity and version counter of both).
        """
        if self.layout.slice_norm or self.parametrized:
            return None
        mask = tg.mask_of(self._module, self._attr)
        if mask is None:
            return None
        coeff = self.coeff
        try:
            key = (mask._version, coeff._version)
        except RuntimeError:  # inference tensors have no version counter
            key = None
        cached = self.__dict__.get("_entry_cache")
        if (cached is None or key is None or cached[0]() is not mask or cached[1]() is not coeff
                or cached[2] != key):
            flat = mask.detach().reshape(-1)
            index = flat.nonzero().squeeze(1)
            lay = self.layout
            if coeff.ndim == 0:
                c_kept, divisor = coeff.detach(), mask.numel()
            else:
                c_kept = coeff.detach().expand(lay.blocks, lay.n_out, lay.cols).reshape(-1).index_select(0, index)
                divisor = lay.blocks * lay.n_out * lay.cols
            entries = (index, flat.index_select(0, index), c_kept, divisor if self.reduction == "mean" else 1)
            cached = (weakref.ref(mask), weakref.ref(coeff), key, entries, index.numel() / max(1, flat.numel()))
            self.__dict__["_entry_cache"] = cached
        return cached[3] if cached[4] <= _penalty.SPARSE_DENSITY else None

    def __getstate__(self):
        """For pickling (``torch.save(priors)``): the caches hold weak references; they are rebuilt on use."""
        state = dict(self.__dict__)
        state.pop("_kept_cache", None)
        state.pop("_entry_cache", None)
        return state

    def forget_mask(self) -> None:
        """Drop the cached kept pairs and entries.

        Call it after changing a mask in a way its version counter does not
        see (through ``mask.data`` or a numpy view).
        """
        self.__dict__.pop("_kept_cache", None)
        self.__dict__.pop("_entry_cache", None)

    def penalty(self) -> Tensor:
        """This term of Eq. 6, shape=[]."""
        lay = self.layout
        if self.weight_dependent:
            return self.prior.weight_penalty(self.weight, self.coeff, lay)
        if not self.live:
            entries = self._kept_entries()
            if entries is not None:
                return SparseFixedPenalty.apply(self.parameter, *entries[:3], self.exponent, entries[3])
            w = self.weight
            if not torch.is_grad_enabled():
                return weighted_penalty(w, self.coeff, self.exponent, slice_norm=lay.slice_norm,
                                        reduction=self.reduction, workspace=self._workspace(w))
            return FixedPenalty.apply(w, self.coeff, self.exponent, lay.slice_norm, self.reduction,
                                      self._workspace(w))
        kept = self._kept()
        p_in = None if self._shared() else self._emb_in.points
        args = (lay, self.prior.manifold, self.prior.inhibitor, self.exponent, self.reduction)
        if not torch.is_grad_enabled():
            if kept is not None:
                return sparse_pass(*args, self._emb_out.points, p_in, self.parameter, *kept, point_grads=False)[0]
            return weighted_penalty(self.weight, self._live_base(), self.exponent, slice_norm=lay.slice_norm,
                                    reduction=self.reduction)
        if kept is not None:
            return LivePenalty.apply(self._emb_out.points, p_in, self.parameter, *args, *kept)
        return LivePenalty.apply(self._emb_out.points, p_in, self.weight, *args)

    def _add_grad_(self, lam: float, want_value: bool, points: list, point_grads: list) -> Optional[Tensor]:
        """Add ``lam * d term / dW`` to the stored parameter's ``.grad`` (and collect embedding gradients)."""
        if self.weight_dependent:
            return self._add_grad_autograd_(lam, want_value)
        if self.parametrized:
            return self._add_grad_parametrized_(lam, want_value, points, point_grads)
        param = self.parameter
        lay = self.layout
        if self.live:
            with torch.enable_grad():
                p_out = self._emb_out.points
                p_in = None if self._shared() else self._emb_in.points
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            args = (lay, self.prior.manifold, self.prior.inhibitor, self.exponent, self.reduction, p_out, p_in)
            kept = self._kept()
            if kept is not None:
                v, g_out, g_in = sparse_pass(*args, param, *kept, weight_grad=param.grad, alpha=lam, accumulate=True)
            else:
                v, g_out, g_in = live_pass(*args, self.weight.detach(), weight_grad=param.grad, alpha=lam,
                                           accumulate=True)
            points.append(p_out)
            point_grads.append(g_out.mul_(lam))
            if p_in is not None:
                points.append(p_in)
                point_grads.append(g_in.mul_(lam))
            return v
        entries = self._kept_entries()
        if entries is not None:
            index, mask_kept, c_kept, divisor = entries
            wk = param.detach().reshape(-1).index_select(0, index).mul_(mask_kept)
            v = None
            if want_value:
                mag = wk.abs() if self.exponent == 1.0 else wk.abs().pow(self.exponent)
                v = (mag.sum() * c_kept if c_kept.ndim == 0 else torch.dot(c_kept, mag)) / divisor
            g = kept_entry_gradient(wk, c_kept, self.exponent).mul_(mask_kept)
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            param.grad.view(-1).index_add_(0, index, g, alpha=lam / divisor)
            return v
        w = self.weight.detach()
        v = None
        if want_value:
            v = weighted_penalty(w, self.coeff, self.exponent, slice_norm=lay.slice_norm, reduction=self.reduction,
                                 workspace=self._workspace(w))
        g = penalty_gradient(w, self.coeff, self.exponent, slice_norm=lay.slice_norm, reduction=self.reduction,
                             out=self._workspace(w))
        if param.grad is None:
            param.grad = g.mul(lam)
        else:
            param.grad.add_(g, alpha=lam)
        return v

    def _add_grad_autograd_(self, lam: float, want_value: bool) -> Optional[Tensor]:
        """:meth:`_add_grad_` for a weight-dependent prior: ``lam`` times the autograd gradient of
        :meth:`Prior.weight_penalty`, accumulated into the stored leaves' ``.grad`` (through the mask of a
        pruned weight and the parametrization of a parametrized one)."""
        with torch.enable_grad():
            v = self.prior.weight_penalty(self.weight, self.coeff, self.layout)
            if v.requires_grad:  # else every stored leaf is frozen: nothing to update
                torch.autograd.backward(v, torch.full_like(v, lam))
        return v.detach() if want_value else None

    def _prox_(self, step: float) -> None:
        """Soft-threshold the stored weight: each entry (each kernel slice) by ``step`` times its coefficient."""
        if self.weight_dependent:
            raise ValueError(f"prox_ is the soft threshold of a weighted L1; the prior of {self.name}, "
                             f"{type(self.prior).__name__}, depends on the weight otherwise and has no closed-form "
                             "proximal step: use add_penalty_grad_ or penalty()")
        if self.exponent != 1.0:
            raise ValueError(f"prox_ is the soft threshold of a weighted L1 (exponent 1); the prior of {self.name} "
                             f"has exponent {self.exponent:g}")
        if self.parametrized:
            raise ValueError(f"prox_ thresholds a stored weight; {self.name} is computed by a parametrization from "
                             "its originals, which a soft threshold of the weight does not determine: use "
                             "add_penalty_grad_ or penalty()")
        param = self.parameter
        w = param.detach()
        c = self._base().detach()
        if self.layout.slice_norm and c.ndim > 0 and w.ndim > 2:
            unit = torch.full_like(w, float(w[0, 0].numel()) ** -0.5)  # every slice of norm 1
            c_slice = penalty_gradient(unit, c, 1.0, slice_norm=True, reduction=self.reduction).flatten(2).norm(dim=-1)
            norms = w.flatten(2).norm(dim=-1)
            factor = (1 - step * c_slice / norms.clamp_min(torch.finfo(w.dtype).tiny)).clamp_min_(0)
            w.mul_(factor.reshape(*factor.shape, *([1] * (w.ndim - 2))))
        else:
            c_entry = penalty_gradient(torch.ones_like(w), c, 1.0, reduction=self.reduction)
            w.copy_(w.sign() * (w.abs() - step * c_entry).clamp_min_(0))
        self.forget_mask()

    def _add_grad_parametrized_(self, lam: float, want_value: bool, points: list,
                                point_grads: list) -> Optional[Tensor]:
        """:meth:`_add_grad_` for a parametrized weight ``W = f(originals)``: the fused gradient
        ``lam * dP/dW`` is pulled back to the originals by one backward pass through ``f``."""
        lay = self.layout
        with torch.enable_grad():
            w = self.weight
        wd = w.detach()
        g = torch.zeros_like(wd)
        if self.live:
            with torch.enable_grad():
                p_out = self._emb_out.points
                p_in = None if self._shared() else self._emb_in.points
            args = (lay, self.prior.manifold, self.prior.inhibitor, self.exponent, self.reduction, p_out, p_in)
            v, g_out, g_in = live_pass(*args, wd, weight_grad=g, alpha=1.0, accumulate=True)
            points.append(p_out)
            point_grads.append(g_out.mul_(lam))
            if p_in is not None:
                points.append(p_in)
                point_grads.append(g_in.mul_(lam))
        else:
            v = None
            if want_value:
                v = weighted_penalty(wd, self.coeff, self.exponent, slice_norm=lay.slice_norm,
                                     reduction=self.reduction)
            penalty_gradient(wd, self.coeff, self.exponent, slice_norm=lay.slice_norm, reduction=self.reduction,
                             out=g)
        if w.requires_grad:  # else every original is frozen: nothing to update
            with torch.enable_grad():
                torch.autograd.backward(w, g.mul_(lam))
        return v

    def _workspace(self, like: Tensor) -> Tensor:
        """Scratch memory shaped like the weight, reused across calls."""
        ws = self.__dict__.get("_ws")
        if ws is None or ws.shape != like.shape or ws.dtype != like.dtype or ws.device != like.device:
            ws = torch.empty_like(like, memory_format=torch.contiguous_format)
            self.__dict__["_ws"] = ws
        return ws

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "coeff"
        if key in state_dict and _legacy_uniform(state_dict[key], self.coeff):
            state_dict = dict(state_dict)
            state_dict[key] = self.coeff.detach().clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, kind={self.kind}, shape={self.layout.shape}, live={self.live}"


class PriorSet(nn.Module):
    """The priors attached to one model (returned by :func:`attach`).

    Holds the embeddings (buffers, or parameters when trained) and the
    coefficient matrices of every target; the model itself is not changed.

    Attributes
    ----------
    terms : dict of str to Term
        One term per target weight, keyed by its name in
        ``model.named_parameters()`` (the name before pruning).
    embeddings : dict of str to NeuronEmbedding
        One embedding per neuron group (empty for a prior without a manifold).
    check_finite : bool
        ``penalty()`` raises ``ValueError`` on a NaN/inf result, naming the
        weight (one scalar device sync per call). Set False to skip.
    """

    def __init__(self, model: nn.Module, prior: Prior, layouts: list[tg.TargetLayout], *,
                 points: Optional[dict] = None, generator: Optional[torch.Generator] = None):
        super().__init__()
        if not isinstance(prior, Prior):
            raise TypeError(f"prior must be a moduli.regularizers.Prior; got {type(prior).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        if points is not None and not isinstance(points, dict):
            raise TypeError(f"points must be a dict from neuron group or weight name to a tensor; got "
                            f"{type(points).__name__}")
        manifold = prior.manifold
        if prior.trainable and prior.weight_dependent:
            raise ValueError(f"{type(prior).__name__} depends on the weight (it overrides weight_penalty) and "
                             "supports fixed embeddings only: trainable=True is not available for it")
        if prior.trainable and (manifold is None or getattr(prior, "inhibitor", None) is None):
            raise TypeError(f"{type(prior).__name__} has trainable=True but no manifold and inhibitor: trained "
                            "embeddings recompute inhibitor(manifold.cdist(...))")
        if points and manifold is None:
            raise ValueError(f"points were given but {type(prior).__name__} has no manifold to embed them on")
        self.prior = prior
        self.check_finite = True
        self._frozen = False
        device, dtype = tg.module_device_dtype(model)
        self.emb = nn.ModuleDict()
        self.term = nn.ModuleDict()
        gen = generator if generator is not None else getattr(prior, "generator", None)
        groups = _group_sizes(layouts)
        if manifold is not None:
            points = _expand_points(points or {}, layouts, groups)
            for group, n in groups.items():
                pts = points.get(group)
                if pts is None:
                    pts = manifold.random_uniform(
                        n, generator=gen, dtype=dtype, device=gen.device if gen is not None else device,
                    ).to(device=device, dtype=dtype)
                else:
                    pts = _check_points(manifold, pts, group, n).to(device=device, dtype=dtype)
                self.emb[_key(group)] = NeuronEmbedding(manifold, pts, prior.trainable)
        owner = type(prior).__name__
        for lay in layouts:
            if lay.n_out == 0 or lay.n_in == 0:
                raise ValueError(f"target {lay.name} has shape {lay.shape}: a layer without neurons cannot carry "
                                 "a prior")
            module, attr = tg.resolve(model, lay.name)
            e_out = self.emb[_key(lay.out_group)] if manifold is not None else None
            e_in = self.emb[_key(lay.in_group)] if manifold is not None else None
            with torch.no_grad():
                if prior.trainable:  # recomputed at every call; filled by freeze()
                    coeff = torch.zeros(lay.n_out, lay.cols, device=device, dtype=dtype)
                else:
                    c = prior.coefficients(lay, None if e_out is None else e_out.points,
                                           None if e_in is None or lay.shared else e_in.points, generator=gen)
                    coeff = (_check_base(c, lay, owner) if prior.weight_dependent
                             else as_coefficients(c, lay, owner)).to(device=device, dtype=dtype)
            self.term[_key(lay.name)] = Term(lay, module, attr, prior, e_out, e_in, coeff, live=prior.trainable)
        self.terms: dict[str, Term] = {t.name: t for t in self.term.values()}
        self.embeddings: dict[str, NeuronEmbedding] = {k.replace(":", "."): v for k, v in self.emb.items()}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load embeddings and coefficients saved from a prior set of the same shape.

        Raises
        ------
        ValueError
            If a saved tensor's shape differs from this prior set's (a prior set
            of another model or size), naming the tensor.
        """
        own = self.state_dict()
        for key, value in state_dict.items():
            if key in own and isinstance(value, Tensor) and own[key].shape != value.shape \
                    and not (key.endswith(".coeff") and _legacy_uniform(value, own[key])):
                raise ValueError(f"the saved prior set does not fit this one: {key} has shape {tuple(value.shape)}, "
                                 f"here {tuple(own[key].shape)} (a prior set of another model or size?)")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # --------------------------------------------------------------- main
    def _follow_model(self) -> None:
        """Move buffers/embeddings to the model's device and dtype if it moved."""
        for t in self.term.values():
            w = tg.stored_parameters(t._module, t._attr)[0]  # a stored leaf: no computation
            if t.coeff.device != w.device or t.coeff.dtype != w.dtype:
                self.to(device=w.device, dtype=w.dtype)
            break

    def penalty(self) -> Tensor:
        """Sum of every term (Eq. 6), a scalar to add to the loss as ``lam * penalty()``.

        Returns
        -------
        Tensor, shape=[]
        """
        self._follow_model()
        total = None
        for term in self.terms.values():
            p = term.penalty()
            total = p if total is None else total + p
        if total is None:
            raise ValueError("this prior set has no terms")
        if self.check_finite and not bool(torch.isfinite(total.detach())):
            self._raise_not_finite()
        return total

    def _raise_not_finite(self):
        for term in self.terms.values():
            w = term.weight.detach()
            if not bool(torch.isfinite(w).all()):
                bad = int((~torch.isfinite(w)).sum())
                raise ValueError(
                    f"weight {term.name} of shape {tuple(w.shape)} has {bad} NaN/inf entries; the prior "
                    "penalty is not finite"
                )
        for emb_name, emb in self.embeddings.items():
            if not bool(torch.isfinite(emb.points.detach()).all()):
                raise ValueError(f"the embedding of neuron group {emb_name} has NaN/inf points; the prior penalty "
                                 "is not finite (lower the embeddings' learning rate, or fix them)")
        for term in self.terms.values():
            if not bool(torch.isfinite(term._base().detach()).all()):
                raise ValueError(f"the coefficients of {term.name} contain NaN/inf; the prior penalty is not finite")
        dtype = next(iter(self.terms.values())).weight.dtype
        if self.prior.weight_dependent:
            raise ValueError(
                f"the penalty of {type(self.prior).__name__} is not finite in {dtype} although the weights and "
                "coefficients are (its weight_penalty overflowed): compute it in float64 (model.double()) or change "
                "the prior's options"
            )
        raise ValueError(
            f"the prior penalty overflowed in {dtype} (weights, embeddings and coefficients are finite, but their "
            "weighted sum is not): compute it in float64 (model.double()) or use smaller weights or lambda"
        )

    def add_penalty_grad_(self, lam: float) -> Optional[Tensor]:
        """Fused gradient step: add ``lam * d penalty / dW`` to each weight's ``.grad``.

        Like decoupled weight decay, this skips the autograd graph of the
        penalty: ``grad += lam * l * C * sign(W) * |W|^(l-1)`` per entry (per
        kernel slice ``lam * l * C * ||T||^(l-2) * T`` for convolutions). Call
        it after ``loss.backward()`` and before ``optimizer.step()``, instead
        of adding ``lam * penalty()`` to the loss. Pruned weights receive the
        gradient on ``<name>_orig`` (zero where the mask is zero). Trained
        embeddings receive ``lam * d penalty / d u`` as well (coefficients
        recomputed in row chunks, as in :meth:`penalty`). A weight-dependent
        prior's term (:attr:`Prior.weight_dependent`) has no closed form: its
        ``lam * d penalty / dW`` comes from one autograd backward pass, the
        same gradient as ``(lam * penalty()).backward()``.

        Parameters
        ----------
        lam : float
            The regularizing factor, finite and >= 0.

        Returns
        -------
        Tensor or None
            The penalty value (detached) when ``check_finite`` is true, else None.
        """
        lam = _validate.nonnegative(lam, "lam")
        self._follow_model()
        value = None
        points, point_grads = [], []
        with torch.no_grad():
            for term in self.terms.values():
                v = term._add_grad_(lam, self.check_finite, points, point_grads)
                if v is not None:
                    value = v if value is None else value + v
        if points:
            torch.autograd.backward(points, point_grads)
        if not self.check_finite:
            return None
        if not bool(torch.isfinite(value)):
            self._raise_not_finite()
        return value

    @torch.no_grad()
    def prox_(self, lr: float, lam: float) -> "PriorSet":
        """Proximal step of ``lam * penalty`` with step ``lr``: exact zeros without magnitude pruning.

        For a weighted L1 (exponent 1) the proximal operator is a soft
        threshold with a threshold per entry: ``W <- sign(W) * max(|W| - lr *
        lam * c, 0)``, ``c`` the entry's coefficient (divided by their number
        under ``reduction="mean"``); a convolution's kernel slice ``T`` is
        shrunk as a group, ``T <- T * max(0, 1 - lr * lam * c / ||T||)``. Call
        it after ``optimizer.step()`` on the loss alone (no
        ``add_penalty_grad_``): with SGD at learning rate ``lr`` this is the
        proximal gradient method (ISTA), whose iterates have exact zeros where
        the loss gradient cannot hold a weight against its threshold; with Adam
        it is the usual heuristic of the same form. A pruned weight's pruned
        entries stay zero.

        Parameters
        ----------
        lr, lam : float
            Finite and >= 0.

        Returns
        -------
        PriorSet
            ``self``.

        Raises
        ------
        ValueError
            If the exponent is not 1 (not a weighted L1), the prior is
            weight-dependent (no closed-form proximal step), or embeddings are
            trained and not frozen (the prox moves weights only; freeze them or
            use :meth:`add_penalty_grad_`).
        """
        lr = _validate.nonnegative(lr, "lr")
        lam = _validate.nonnegative(lam, "lam")
        if self._trained_embeddings() and not self._frozen:
            raise ValueError("prox_ moves weights only and would leave trained embeddings without the penalty's "
                             "gradient: call freeze() first, or use add_penalty_grad_")
        self._follow_model()
        for term in self.terms.values():
            term._prox_(lr * lam)
        return self

    # ------------------------------------------------------------- freezing
    @property
    def frozen(self) -> bool:
        """Whether trained embeddings are frozen."""
        return self._frozen

    def _trained_embeddings(self):
        return [emb for emb in self.emb.values() if emb.trainable]

    def freeze(self) -> "PriorSet":
        """Stop training the embeddings (the lottery phase).

        Sets ``requires_grad=False`` on every embedding parameter and caches
        the coefficients once, so later penalties cost as much as a fixed
        embedding's. Returns ``self``.
        """
        for emb in self._trained_embeddings():
            emb.u.requires_grad_(False)
        with torch.no_grad():
            for term in self.term.values():
                if term.live:
                    term.live = False
                    term.coeff = term._live_base().detach().clone()
        self._frozen = True
        return self

    def unfreeze(self) -> "PriorSet":
        """Undo :meth:`freeze`: embeddings train again. Returns ``self``."""
        for emb in self._trained_embeddings():
            emb.u.requires_grad_(True)
        for term in self.term.values():
            term.live = term.prior.trainable
        self._frozen = False
        return self

    def get_extra_state(self) -> dict:
        return {"frozen": self._frozen}

    def set_extra_state(self, state: dict) -> None:
        if state.get("frozen", False):
            self._frozen = True
            for emb in self._trained_embeddings():
                emb.u.requires_grad_(False)
            for term in self.term.values():
                term.live = False
        else:
            self.unfreeze()

    def extra_repr(self) -> str:
        return f"prior={self.prior!r}, targets={list(self.terms)}, frozen={self._frozen}"


def _check_base(c, layout, owner: str) -> Tensor:
    """A weight-dependent prior's coefficients: any finite floating tensor (its ``weight_penalty`` reads it)."""
    if not isinstance(c, Tensor) or not c.is_floating_point():
        raise TypeError(f"{owner}.coefficients must return a floating torch.Tensor; got "
                        f"{type(c).__name__ if not isinstance(c, Tensor) else c.dtype}")
    if not bool(torch.isfinite(c).all()):
        raise ValueError(f"{owner}.coefficients for {layout.name} must be finite")
    return c.contiguous()


def _legacy_uniform(saved: Tensor, own: Tensor) -> bool:
    """A uniform (L1) coefficient saved by moduli 0.1, which stored it as an empty buffer."""
    return saved.numel() == 0 and own.ndim == 0


def _group_sizes(layouts: list[tg.TargetLayout]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for lay in layouts:
        for group, n in ((lay.out_group, lay.n_out), (lay.in_group, lay.n_in)):
            if sizes.setdefault(group, n) != n:
                raise ValueError(f"neuron group {group!r} has inconsistent sizes {sizes[group]} and {n}")
    return sizes


def _expand_points(points: dict, layouts: list[tg.TargetLayout], groups: dict) -> dict:
    """Accept points keyed by group or by weight name (tensor, or (out, in) pair)."""
    out = {}
    names = {lay.name: lay for lay in layouts}
    for key, value in points.items():
        if key in groups:
            out[key] = value
        elif key in names:
            lay = names[key]
            if isinstance(value, (tuple, list)):
                if len(value) != 2:
                    raise ValueError(f"points[{key!r}] must be a tensor or a pair (points_out, points_in)")
                out[lay.out_group], out[lay.in_group] = value
            else:
                if not lay.shared:
                    raise ValueError(
                        f"points[{key!r}]: {key} connects two neuron groups ({lay.out_group}, {lay.in_group}); "
                        "pass a pair (points_out, points_in)"
                    )
                out[lay.out_group] = value
        else:
            raise ValueError(
                f"points has key {key!r}, which is neither a target weight ({', '.join(names)}) nor a "
                f"neuron group ({', '.join(groups)})"
            )
    return out


def _check_points(manifold, pts, group: str, n: int) -> Tensor:
    pts = manifold.check_points(pts, f"points[{group!r}]", ndim=2)
    if pts.shape[0] != n:
        raise ValueError(
            f"points[{group!r}] must have shape ({n}, {manifold.coord_dim}) for the {n} neurons of "
            f"{group}; got shape {tuple(pts.shape)}"
        )
    return pts
