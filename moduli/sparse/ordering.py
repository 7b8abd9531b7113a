"""Neuron orderings that gather kept connections into dense blocks, and consistent permutations."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .. import _validate
from .. import targets as tg

__all__ = ["curve_order", "rcm_order", "inverse_permutation", "permute_neurons", "block_stats"]


def _hilbert_index(x: Tensor, y: Tensor, bits: int) -> Tensor:
    """Index along the Hilbert curve of the ``2^bits x 2^bits`` grid cells ``(x, y)`` (integer tensors)."""
    n = 1 << bits
    d = torch.zeros_like(x)
    x, y = x.clone(), y.clone()
    s = n >> 1
    while s > 0:
        rx = ((x & s) > 0).to(x.dtype)
        ry = ((y & s) > 0).to(x.dtype)
        d += s * s * ((3 * rx) ^ ry)
        # rotate the quadrant so the sub-curve is in standard position
        flip = (ry == 0) & (rx == 1)
        x = torch.where(flip, s - 1 - x, x)
        y = torch.where(flip, s - 1 - y, y)
        swap = ry == 0
        x, y = torch.where(swap, y, x), torch.where(swap, x, y)
        s >>= 1
    return d


def curve_order(points: Tensor, period: float = 1.0, bits: Optional[int] = None) -> Tensor:
    """Order points of a flat torus ``[0, period)^dim`` along a space-filling curve.

    Dimension 1 sorts the angle; dimension 2 follows the Hilbert curve over
    the fundamental domain, cut into ``2^bits x 2^bits`` tiles (consecutive
    points stay in small squares, so ``b`` consecutive neurons are near each
    other); higher dimensions follow the Morton (Z-order) curve.

    Parameters
    ----------
    points : Tensor, shape=[n, dim]
        Coordinates in ``[0, period)`` (taken modulo ``period``).
    period : float
    bits : int, optional
        Tiles per side ``2^bits``; default about ``n^(1/dim)`` tiles per side.

    Returns
    -------
    Tensor of int64, shape=[n]
        A permutation: ``points[order]`` is in curve order.
    """
    if not isinstance(points, Tensor) or points.ndim != 2:
        raise ValueError(f"points must be a [n, dim] tensor; got {getattr(points, 'shape', type(points).__name__)}")
    period = _validate.positive(period, "period")
    n, dim = points.shape
    u = torch.remainder(points.detach().to(torch.float64), period) / period
    if dim == 1:
        return torch.argsort(u[:, 0], stable=True)
    if bits is None:
        bits = max(1, math.ceil(math.log2(max(2.0, n ** (1.0 / dim)))))
    bits = _validate.integer(bits, "bits", minimum=1)
    cells = torch.clamp((u * (1 << bits)).long(), 0, (1 << bits) - 1)
    if dim == 2:
        key = _hilbert_index(cells[:, 0], cells[:, 1], bits)
    else:
        key = torch.zeros(n, dtype=torch.long)
        for b in range(bits):
            for d in range(dim):
                key |= ((cells[:, d] >> b) & 1) << (b * dim + d)
    # ties (points in one cell) by the first coordinate, so the order is deterministic
    order = torch.argsort(u[:, 0], stable=True)
    return order[torch.argsort(key[order], stable=True)]


def rcm_order(weight: Tensor) -> Tensor:
    """Reverse Cuthill--McKee order of the kept-connection graph of a square matrix.

    The graph has an edge ``i -- j`` where ``weight[i, j]`` or
    ``weight[j, i]`` is nonzero; the order reduces its bandwidth, so kept
    entries move toward the diagonal (a general fallback when the neurons
    have no embedding to follow). Uses ``scipy.sparse.csgraph``.
    """
    if not isinstance(weight, Tensor) or weight.ndim != 2 or weight.shape[0] != weight.shape[1]:
        raise ValueError(f"weight must be a square matrix; got {getattr(weight, 'shape', type(weight).__name__)}")
    import numpy as np
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    pattern = (weight.detach().cpu() != 0)
    pattern = (pattern | pattern.t()).numpy()
    perm = reverse_cuthill_mckee(csr_matrix(pattern.astype(np.int8)), symmetric_mode=True)
    return torch.as_tensor(np.asarray(perm, dtype=np.int64))


def inverse_permutation(perm: Tensor) -> Tensor:
    """``inv`` with ``inv[perm] = arange(n)``."""
    perm = _as_perm(perm, None, "perm")
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return inv


def _as_perm(perm, n: Optional[int], name: str) -> Tensor:
    perm = torch.as_tensor(perm, dtype=torch.long).reshape(-1)
    if n is not None and perm.numel() != n:
        raise ValueError(f"{name} has {perm.numel()} entries; expected {n}")
    if not torch.equal(torch.sort(perm).values, torch.arange(perm.numel())):
        raise ValueError(f"{name} is not a permutation of 0..{perm.numel() - 1}")
    return perm


@torch.no_grad()
def permute_neurons(model: nn.Module, perm: Tensor, *, rows: Sequence[str] = (), cols: Sequence[str] = (),
                    vectors: Sequence[str] = ()) -> nn.Module:
    """Renumber one group of neurons in place: neuron ``perm[i]`` becomes neuron ``i``.

    Every weight that produces the neurons gets its rows permuted (``rows``),
    every weight that reads them its columns (``cols``), every per-neuron
    vector (a bias) its entries (``vectors``). A weight whose rows are ``k``
    gate blocks of the neurons (LSTM/GRU) is permuted within each block. If
    every producer and reader of the group is listed, the model computes the
    same function, with the group's hidden states permuted.

    Examples
    --------
    For the navigation RNN (encoder -> RNN -> decoder), the hidden units::

        permute_neurons(model, perm, rows=["encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0"],
                        cols=["rnn.weight_hh_l0", "decoder.weight"])

    Raises
    ------
    ValueError
        If a name is no parameter of ``model``, a listed weight is still
        pruned (:func:`moduli.pruning.finalize` first), its size does not
        match ``perm``, or ``perm`` is not a permutation.
    """
    perm = _as_perm(perm, None, "perm")
    n = perm.numel()

    def param(name):
        module, attr = tg.resolve(model, name)
        if tg.is_pruned(module, attr):
            raise ValueError(f"{name} is pruned; finalize the model (moduli.pruning.finalize) before permuting")
        return tg.stored_parameter(module, attr)

    for name in rows:
        p = param(name)
        if p.shape[0] % n:
            raise ValueError(f"{name} has {p.shape[0]} rows, not a multiple of the {n} neurons of perm")
        k = p.shape[0] // n
        idx = torch.cat([perm + b * n for b in range(k)]).to(p.device)
        p.copy_(p.index_select(0, idx))
    for name in cols:
        p = param(name)
        if p.ndim < 2 or p.shape[1] != n:
            raise ValueError(f"{name} has shape {tuple(p.shape)}; its columns must be the {n} neurons of perm")
        p.copy_(p.index_select(1, perm.to(p.device)))
    for name in vectors:
        p = param(name)
        if p.shape[0] % n:
            raise ValueError(f"{name} has {p.shape[0]} entries, not a multiple of the {n} neurons of perm")
        k = p.shape[0] // n
        p.copy_(p.index_select(0, torch.cat([perm + b * n for b in range(k)]).to(p.device)))
    return model


def block_stats(weight: Tensor, block: int, order: Optional[Tensor] = None,
                col_order: Optional[Tensor] = None) -> dict:
    """How much of a sparse matrix's kept mass dense ``block x block`` tiles capture.

    Parameters
    ----------
    weight : Tensor, shape=[rows, cols]
    block : int
        Tile side (rows and columns are padded with zeros to a multiple).
    order, col_order : Tensor, optional
        Renumber rows by ``order`` and columns by ``col_order`` (default:
        ``order`` for a square matrix) before tiling.

    Returns
    -------
    dict
        ``nnz``; ``blocks`` (tiles holding a kept entry) of ``total_blocks``;
        ``fill``: kept entries per stored entry of those tiles (the density a
        BSR layout computes with); ``capture``: fraction of ``|w|`` mass in the
        best ``ceil(nnz / block^2)`` tiles -- what a block layout storing as
        many values as CSR would keep (1 for a perfectly block-shaped matrix).
    """
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ValueError("weight must be a 2-D tensor")
    block = _validate.integer(block, "block", minimum=1)
    w = weight.detach().abs().to(torch.float64)
    if order is not None:
        order = _as_perm(order, w.shape[0], "order")
        w = w[order]
        if col_order is None and w.shape[0] == w.shape[1]:
            col_order = order
    if col_order is not None:
        w = w[:, _as_perm(col_order, w.shape[1], "col_order")]
    r, c = -(-w.shape[0] // block) * block, -(-w.shape[1] // block) * block
    w = torch.nn.functional.pad(w, (0, c - w.shape[1], 0, r - w.shape[0]))
    tiles = w.reshape(r // block, block, c // block, block)
    mass = tiles.sum(dim=(1, 3)).reshape(-1)
    count = (tiles != 0).sum(dim=(1, 3)).reshape(-1)
    nnz = int(count.sum())
    used = int((count > 0).sum())
    k = max(1, math.ceil(nnz / block ** 2))
    total = float(mass.sum())
    capture = float(torch.topk(mass, min(k, mass.numel())).values.sum() / total) if total > 0 else 0.0
    return {"block": block, "nnz": nnz, "blocks": used, "total_blocks": int(mass.numel()),
            "fill": nnz / (used * block ** 2) if used else 0.0, "capture": capture}
