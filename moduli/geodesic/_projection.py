"""Projections onto sparse hyperplanes (global magnitude and whole units).

The ``p``-sparse hyperplane of Eq. 7's sparsification problem is the set of
networks whose chosen weights have (at least) a fraction ``p`` of zeros.  The
Euclidean projection of ``w`` onto it zeroes the ``round(p * N)`` entries of
smallest magnitude (ties broken by index order), which is what
:func:`magnitude_masks` computes.  The structured variant zeroes whole output
units -- rows of a ``Linear`` weight (neurons) or output channels of a
``Conv`` weight (filters) -- choosing, per layer, the ``round(p * units)``
units of smallest L2 norm (the Euclidean projection onto "that many units are
zero in this layer").
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _validate

__all__ = ["magnitude_masks", "unit_masks", "apply_masks"]


def magnitude_masks(weights: dict[str, Tensor], target_sparsity: float) -> dict[str, Tensor]:
    """Keep-masks of the global magnitude projection.

    Parameters
    ----------
    weights : dict of str to Tensor
        The weights that count towards the sparsity (any shapes).
    target_sparsity : float
        Fraction in ``[0, 1)`` of entries to zero; exactly
        ``round(target_sparsity * N)`` entries are removed, ``N`` the total
        number of entries.

    Returns
    -------
    dict of str to Tensor
        Boolean masks shaped like each weight, ``True`` where the entry is kept.

    Examples
    --------
    >>> import torch
    >>> m = magnitude_masks({"a": torch.tensor([3.0, -1.0]), "b": torch.tensor([0.5, 2.0])}, 0.5)
    >>> m["a"].tolist(), m["b"].tolist()
    ([True, False], [False, True])
    """
    p = _validate.fraction(target_sparsity, "target_sparsity")
    if not weights:
        raise ValueError("weights must be a non-empty dict of tensors")
    flat = torch.cat([w.detach().reshape(-1).abs() for w in weights.values()])
    n = flat.numel()
    k = int(round(p * n))
    keep = torch.ones(n, dtype=torch.bool, device=flat.device)
    if k > 0:
        # stable sort: ties broken by position, so the count is exact
        idx = torch.sort(flat, stable=True).indices[:k]
        keep[idx] = False
    out, i = {}, 0
    for name, w in weights.items():
        out[name] = keep[i : i + w.numel()].view(w.shape)
        i += w.numel()
    return out


def unit_masks(weights: dict[str, Tensor], target_sparsity: float) -> dict[str, Tensor]:
    """Keep-masks that remove whole output units per layer.

    Parameters
    ----------
    weights : dict of str to Tensor
        Layer weights of shape ``[out_units, ...]`` (Linear ``[out, in]``,
        Conv ``[out_channels, in_channels/groups, *kernel]``).
    target_sparsity : float
        Fraction in ``[0, 1)`` of units to remove in each layer;
        ``round(target_sparsity * out_units)`` units per layer (and never all
        of them).

    Returns
    -------
    dict of str to Tensor
        Boolean masks of shape ``[out_units]``, ``True`` for kept units.

    Examples
    --------
    >>> import torch
    >>> w = torch.tensor([[1.0, 1.0], [0.1, 0.0], [2.0, 0.0]])
    >>> unit_masks({"fc": w}, 1 / 3)["fc"].tolist()
    [True, False, True]
    """
    p = _validate.fraction(target_sparsity, "target_sparsity")
    if not weights:
        raise ValueError("weights must be a non-empty dict of tensors")
    out = {}
    for name, w in weights.items():
        if w.ndim < 2:
            raise ValueError(f"structured target {name!r} must have a weight of >= 2 dims, got shape {tuple(w.shape)}")
        units = w.shape[0]
        k = min(int(round(p * units)), units - 1)
        norms = w.detach().reshape(units, -1).norm(dim=1)
        keep = torch.ones(units, dtype=torch.bool, device=w.device)
        if k > 0:
            keep[torch.sort(norms, stable=True).indices[:k]] = False
        out[name] = keep
    return out


def apply_masks(weights: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
    """Return ``weights`` with masked entries (or masked units) set to zero.

    Parameters
    ----------
    weights : dict of str to Tensor
    masks : dict of str to Tensor
        Element masks (same shape as the weight) or unit masks (shape
        ``[out_units]``, broadcast over the remaining dimensions).

    Returns
    -------
    dict of str to Tensor
        New tensors; the inputs are not modified.
    """
    out = {}
    for name, w in weights.items():
        m = masks[name]
        if m.shape != w.shape:
            m = m.view(-1, *([1] * (w.ndim - 1)))
        out[name] = w * m.to(w.dtype)
    return out
