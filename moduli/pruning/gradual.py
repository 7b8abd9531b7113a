"""Gradual magnitude pruning (paper, Section 4) on ``torch.nn.utils.prune``."""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Iterator

import torch
from torch import Tensor, nn

from .. import _validate
from .. import targets as tg
from ..targets import default_weights, sparsity

__all__ = ["GradualMagnitudePruning", "sparsity", "default_weights", "schedule"]

_SCOPES = ("global", "tensor")


def _resolve_targets(model_or_params: Any, targets=None) -> list[tuple[str, nn.Module, str]]:
    if isinstance(model_or_params, nn.Module):
        if targets is None:
            found = default_weights(model_or_params)
        else:
            found = [(lay.name,) + tg.resolve(model_or_params, lay.name)
                     for lay in tg.find_targets(model_or_params, targets)]
        if not found:
            raise ValueError(f"{type(model_or_params).__name__} has no weight matrices to prune")
        return found
    if targets is not None:
        raise TypeError("targets= is only accepted together with a model (an nn.Module)")
    if isinstance(model_or_params, (str, Tensor)) or not isinstance(model_or_params, Iterable):
        raise TypeError(
            "model_or_params must be an nn.Module or an iterable of (module, parameter_name) pairs; got "
            f"{type(model_or_params).__name__}"
        )
    found = []
    for i, item in enumerate(model_or_params):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], nn.Module)
                and isinstance(item[1], str)):
            raise TypeError(f"model_or_params[{i}] must be a (module, parameter_name) pair; got {item!r}")
        module, attr = item
        try:
            tg.resolve(module, attr)
        except ValueError:
            raise ValueError(f"model_or_params[{i}]: {type(module).__name__} has no parameter {attr!r}") from None
        found.append((f"{type(module).__name__}[{i}].{attr}", module, attr))
    if not found:
        raise ValueError("model_or_params is empty")
    return found


def schedule(epoch: int, epochs: int, target_sparsity: float) -> float:
    """Fraction pruned at the start of ``epoch`` (1-based): ``(k - 1) p / (n - 1)``.

    Epochs after the ``n``-th stay at ``p``; with ``n = 1`` the single epoch
    starts at ``p``.
    """
    if epochs == 1:
        return target_sparsity
    k = min(epoch, epochs)
    return (k - 1) * target_sparsity / (epochs - 1)


class GradualMagnitudePruning:
    """Gradual magnitude pruning with masks from ``torch.nn.utils.prune``.

    Call :meth:`step` at the start of each epoch. At the start of epoch ``k``
    of ``n`` the lowest-magnitude ``(k - 1) p / (n - 1)`` of the chosen
    weights are zero (Section 4): exactly ``round(fraction * count)`` of them,
    counted over all chosen weights (``scope="global"``) or in each tensor
    (``scope="tensor"``). Weights pruned once stay pruned.

    What changes on the model: each chosen weight ``w`` of a module becomes
    ``w_orig`` (the parameter, same object, so optimizers keep working) and a
    buffer ``w_mask``; ``w`` is recomputed as ``w_orig * w_mask`` before each
    forward (``torch.nn.utils.prune``). Pruned entries of ``w_orig`` are set
    to zero too. Effective weights stay exactly zero under any optimizer.
    Masks are buffers, so they move with ``.to()`` and are saved in the
    model's ``state_dict`` (as ``w_mask``, with ``w_orig`` for ``w``).

    Parameters
    ----------
    model_or_params : nn.Module or iterable of (module, name)
        A model (its weight matrices, see :func:`default_weights`, or the
        ``targets``) or explicit ``(module, parameter_name)`` pairs.
    target_sparsity : float
        Final fraction ``p`` in [0, 1].
    epochs : int
        Number of epochs ``n`` >= 1 over which pruning ramps up.
    scope : {"global", "tensor"}
        Rank magnitudes over all chosen weights together or per tensor.
    targets : optional
        With a model: the same target specs as
        :func:`moduli.regularizers.attach` (``"recurrent"``, ``"linear"``,
        ``"conv"``, names, predicate) instead of every weight matrix.
    min_kept : float
        Keep at least ``ceil(min_kept * numel)`` entries of every tensor (its
        largest ones), so global ranking cannot empty a layer; default 0.
        ``ValueError`` if the target sparsity cannot be met with it.
    block : int or (int, int), optional
        Structured pruning: prune whole ``rows x cols`` tiles of every chosen
        weight (which they must tile), ranked by the sum of their entries'
        scores; fractions and ``min_kept`` then count tiles. The mask is
        block-sparse by construction (a BSR layout stores no zero it need not).
    order : Tensor or dict, optional
        With ``block``: tiles are cut after renumbering neurons by this
        permutation (``weight[order][:, order]``, for square weights), or by
        ``{name: (row_order, col_order)}`` per weight (``None`` for identity).
        Ordering neurons along their embedding
        (:func:`moduli.sparse.curve_order`) makes a tile a patch of nearby
        neurons.
    scores : callable, optional
        ``scores(name, weight) -> Tensor`` of the weight's shape, the
        importance of each entry (default ``|weight|``); e.g. ``|w| / c`` with
        the prior's coefficients ``c`` to rank by the prior as well.

    Warns
    -----
    UserWarning
        Once per tensor, when a step leaves it with fewer kept entries than it
        has rows (output units) -- a layer emptied, or nearly, by global ranking.

    Examples
    --------
    >>> import torch
    >>> from moduli import pruning
    >>> model = torch.nn.Linear(10, 10)
    >>> gmp = pruning.GradualMagnitudePruning(model, target_sparsity=0.9, epochs=4)
    >>> [round(gmp.step(), 2) for _ in range(4)]
    [0.0, 0.3, 0.6, 0.9]
    >>> pruning.sparsity(model)
    0.9
    """

    def __init__(self, model_or_params, target_sparsity: float, epochs: int, scope: str = "global", *,
                 targets=None, min_kept: float = 0.0, block=None, order=None, scores=None):
        target_sparsity = _validate.fraction(target_sparsity, "target_sparsity", closed=True)
        epochs = _validate.integer(epochs, "epochs", minimum=1)
        min_kept = _validate.fraction(min_kept, "min_kept")
        scope = {"per-tensor": "tensor", "per_tensor": "tensor", "local": "tensor"}.get(scope, scope)
        if scope not in _SCOPES:
            raise ValueError(f"scope must be 'global' or 'tensor'; got {scope!r}")
        self.entries = _resolve_targets(model_or_params, targets)
        self._root = model_or_params if isinstance(model_or_params, nn.Module) else None
        self.target_sparsity = float(target_sparsity)
        self.epochs = int(epochs)
        self.scope = scope
        self.epoch = 0
        self.min_kept = min_kept
        self._warned: set[str] = set()
        if scores is not None and not callable(scores):
            raise TypeError(f"scores must be a callable (name, weight) -> Tensor; got {type(scores).__name__}")
        self.scores = scores
        self.block = None if block is None else _block_shape(block)
        self.orders = {}
        if order is not None and self.block is None:
            raise ValueError("order= is only used together with block=")
        shapes = [tg.weight_shape(m, a) for _, m, a in self.entries]
        if self.block is not None:
            br, bc = self.block
            for (name, _, _), shape in zip(self.entries, shapes):
                if len(shape) != 2 or shape[0] % br or shape[1] % bc:
                    raise ValueError(f"block={self.block} does not tile {name} of shape {shape}")
                self.orders[name] = _orders_for(order, name, shape)
        sizes = [shape[0] * shape[1] // (br * bc) if self.block is not None else math.prod(shape)
                 for shape in shapes]
        kept = [math.ceil(min_kept * n) for n in sizes]
        pairs = [(sum(sizes), sum(kept))] if scope == "global" else list(zip(sizes, kept))
        for n, k in pairs:
            if round(self.target_sparsity * n) > n - k:
                raise ValueError(f"target_sparsity={self.target_sparsity:g} cannot be met while keeping "
                                 f"min_kept={min_kept:g} of every tensor; lower one of them")

    @property
    def names(self) -> list[str]:
        """Names of the pruned weights."""
        return [name for name, _, _ in self.entries]

    @property
    def fraction(self) -> float:
        """The scheduled fraction of the current epoch (0 before the first step)."""
        return 0.0 if self.epoch == 0 else schedule(self.epoch, self.epochs, self.target_sparsity)

    def step(self) -> float:
        """Start the next epoch: prune to its scheduled fraction; return that fraction."""
        self.epoch += 1
        frac = self.fraction
        self.prune_to(frac)
        return frac

    @torch.no_grad()
    def prune_to(self, fraction: float) -> None:
        """Zero the lowest-magnitude ``fraction`` of the chosen weights (keeping earlier masks)."""
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"fraction must be in [0, 1]; got {fraction}")
        scores = []
        for name, module, attr in self.entries:
            w = tg.effective_weight(module, attr).detach()
            if not bool(torch.isfinite(w).all()):
                raise ValueError(f"cannot prune {attr} of {type(module).__name__}: it has NaN/inf entries")
            s = w.abs().to(torch.float64 if w.dtype == torch.float64 else torch.float32)
            mask = tg.mask_of(module, attr)
            if mask is not None:
                s = torch.where(mask == 0, torch.full_like(s, -1.0), s)
            if self.scores is not None:
                custom = torch.as_tensor(self.scores(name, w)).to(device=s.device, dtype=s.dtype)
                if custom.shape != s.shape:
                    raise ValueError(f"scores({name!r}, ...) has shape {tuple(custom.shape)}; the weight has "
                                     f"{tuple(s.shape)}")
                s = torch.where(s < 0, s, custom.clamp_min(0))
            if self.block is not None:
                s = _to_blocks(s, self.block, self.orders[name])
            s = s.reshape(-1)
            if self.min_kept > 0:  # the largest entries of each tensor are never candidates
                s[torch.topk(s, math.ceil(self.min_kept * s.numel())).indices] = math.inf
            scores.append(s)
        if self.scope == "global":
            flat = torch.cat([s.to(scores[0].device) for s in scores])
            masks = _lowest_mask(flat, round(fraction * flat.numel())).split([s.numel() for s in scores])
        else:
            masks = [_lowest_mask(s, round(fraction * s.numel())) for s in scores]
        for (name, module, attr), mask in zip(self.entries, masks):
            if self.block is not None:
                mask = _from_blocks(mask, self.block, self.orders[name], tg.weight_shape(module, attr))
            if self._root is not None:
                tg.install_mask(self._root, name, mask)  # the whole model: parents reading a weight are hooked
            else:
                tg.install_mask(module, attr, mask)
            rows = tg.weight_shape(module, attr)[0]
            kept = int(tg.mask_of(module, attr).count_nonzero())
            if kept < rows and name not in self._warned:
                self._warned.add(name)
                warnings.warn(
                    f"pruning to {fraction:.3g} left {name} with {kept} kept entries for its {rows} rows "
                    f"({'emptied' if kept == 0 else 'fewer than one per output unit'}); pass min_kept= to keep "
                    "a fraction of every tensor, or scope='tensor'", UserWarning, stacklevel=3)

    def __iter__(self) -> Iterator[tuple[nn.Module, str]]:
        """The chosen weights as ``(module, attr)`` pairs (so ``sparsity(pruner)`` measures them)."""
        return iter([(module, attr) for _, module, attr in self.entries])

    def sparsity(self) -> float:
        """Fraction of zero entries over the chosen (effective) weights."""
        return sparsity(self)

    def state_dict(self) -> dict:
        """The schedule position (masks live in the model's own ``state_dict``)."""
        return {"epoch": self.epoch, "epochs": self.epochs, "target_sparsity": self.target_sparsity,
                "scope": self.scope, "block": self.block}

    def load_state_dict(self, state: dict) -> None:
        """Restore the schedule position saved by :meth:`state_dict`."""
        if not isinstance(state, dict) or "epoch" not in state:
            raise ValueError("state must be a dict from GradualMagnitudePruning.state_dict()")
        self.epoch = int(state["epoch"])

    def __repr__(self) -> str:
        blk = f", block={self.block}" if self.block is not None else ""
        return (f"GradualMagnitudePruning(target_sparsity={self.target_sparsity:g}, epochs={self.epochs}, "
                f"scope={self.scope!r}{blk}, epoch={self.epoch}, weights={len(self.entries)})")


def _lowest_mask(scores: Tensor, k: int) -> Tensor:
    """Mask with zeros at the ``k`` smallest scores (ties broken by position)."""
    mask = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        idx = torch.topk(scores, k, largest=False, sorted=False).indices
        mask[idx] = False
    return mask


def _block_shape(block) -> tuple[int, int]:
    if isinstance(block, int) and not isinstance(block, bool):
        block = (block, block)
    if not (isinstance(block, (tuple, list)) and len(block) == 2):
        raise TypeError(f"block must be an int or a (rows, cols) pair; got {block!r}")
    return tuple(_validate.integer(b, "block", minimum=1) for b in block)


def _check_perm(perm, n: int, what: str) -> Tensor:
    perm = torch.as_tensor(perm, dtype=torch.long).reshape(-1)
    if perm.numel() != n or not torch.equal(torch.sort(perm).values, torch.arange(n)):
        raise ValueError(f"order for {what} must be a permutation of 0..{n - 1}")
    return perm


def _orders_for(order, name: str, shape) -> tuple:
    """``(row_order, col_order)`` of one weight (``None``: identity)."""
    if order is None:
        return (None, None)
    if isinstance(order, dict):
        pair = order.get(name, (None, None))
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"order[{name!r}] must be a (row_order, col_order) pair")
        return tuple(None if p is None else _check_perm(p, n, f"{name} {side}")
                     for p, n, side in zip(pair, shape, ("rows", "columns")))
    if shape[0] != shape[1]:
        raise ValueError(f"a single order= needs square weights; {name} has shape {tuple(shape)} (pass a dict)")
    perm = _check_perm(order, shape[0], name)
    return (perm, perm)


def _to_blocks(s: Tensor, block, orders) -> Tensor:
    """Per-tile sums of the entry scores (a tile with a pruned entry scores -1: already pruned)."""
    rows, cols = orders
    if rows is not None:
        s = s[rows.to(s.device)]
    if cols is not None:
        s = s[:, cols.to(s.device)]
    br, bc = block
    t = s.reshape(s.shape[0] // br, br, s.shape[1] // bc, bc)
    total = t.clamp_min(0).sum(dim=(1, 3))
    return torch.where((t < 0).any(dim=3).any(dim=1), torch.full_like(total, -1.0), total)


def _from_blocks(mask: Tensor, block, orders, shape) -> Tensor:
    """The entry mask of a tile mask, in the weight's own neuron order."""
    br, bc = block
    m = mask.reshape(shape[0] // br, shape[1] // bc).repeat_interleave(br, 0).repeat_interleave(bc, 1)
    rows, cols = orders
    out = m
    if rows is not None:
        out = torch.empty_like(m)
        out[rows.to(m.device)] = m
        m = out
    if cols is not None:
        out = torch.empty_like(m)
        out[:, cols.to(m.device)] = m
    return out
