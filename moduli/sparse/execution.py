"""Inference with compressed weights: CSR or BSR copies of a finalized layer's matrices."""

from __future__ import annotations

import copy
import warnings
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .. import _validate
from .. import targets as tg

__all__ = ["LAYOUTS", "SparseLinear", "SparseRNN", "sparse_linear", "sparsify", "compress"]

#: Weight layouts: ``"dense"`` (a strided copy, the reference), ``"csr"``
#: (``torch.sparse_csr``) and ``"bsr"`` (``torch.sparse_bsr`` with ``block``).
LAYOUTS = ("dense", "csr", "bsr")

Block = Union[int, Sequence[int]]


def _block(block: Optional[Block], shape) -> tuple[int, int]:
    if block is None:
        raise ValueError("layout='bsr' needs block= (an int or a (rows, cols) pair)")
    if isinstance(block, int) and not isinstance(block, bool):
        block = (block, block)
    if not (isinstance(block, (tuple, list)) and len(block) == 2):
        raise TypeError(f"block must be an int or a (rows, cols) pair; got {block!r}")
    r, c = (_validate.integer(b, "block", minimum=1) for b in block)
    if r != c:
        raise ValueError(f"block must be square for the BSR layout (torch's CPU kernel needs it); got {(r, c)}")
    if shape[0] % r or shape[1] % c:
        raise ValueError(f"block={(r, c)} does not tile a weight of shape {tuple(shape)}")
    return r, c


def compress(weight: Tensor, layout: str = "csr", block: Optional[Block] = None) -> Tensor:
    """A detached copy of the matrix ``weight`` in ``layout`` (see :data:`LAYOUTS`).

    Raises
    ------
    ValueError
        If ``weight`` is not a matrix, ``layout`` is unknown, or ``block``
        is missing or does not tile the matrix for ``"bsr"``.
    """
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ValueError(f"weight must be a 2-D tensor; got {getattr(weight, 'shape', type(weight).__name__)}")
    layout = _validate.choice(layout, "layout", LAYOUTS)
    w = weight.detach()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse (CSR|BSR) tensor support is in beta.*")
        if layout == "dense":
            return w.contiguous().clone()
        if layout == "csr":
            return w.to_sparse_csr()
        return w.to_sparse_bsr(_block(block, w.shape))


def _matmul(w: Tensor, x_t: Tensor) -> Tensor:
    """``w @ x_t`` for a strided or compressed ``w`` and a strided ``x_t`` of shape ``[in, batch]``."""
    return w @ x_t


class SparseLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored compressed; inference only (no gradients).

    Parameters
    ----------
    weight : Tensor, shape=[out, in]
    bias : Tensor, shape=[out], optional
    layout : {"csr", "bsr", "dense"}
    block : int or (int, int), optional
        The BSR block shape (``layout="bsr"``), square.

    Notes
    -----
    Equal to ``nn.functional.linear`` within float rounding. Whether it is
    faster than dense depends on sparsity, batch and size: see
    ``docs/sparse.md``.
    """

    def __init__(self, weight: Tensor, bias: Optional[Tensor] = None, layout: str = "csr",
                 block: Optional[Block] = None):
        super().__init__()
        self.layout = _validate.choice(layout, "layout", LAYOUTS)
        self.block = None if layout != "bsr" else _block(block, weight.shape)
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.nnz = int(torch.count_nonzero(weight))
        self.weight = compress(weight, layout, block)  # a plain attribute: sparse tensors are no buffers
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def _apply(self, fn, recurse=True):
        self.weight = fn(self.weight)
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features; the layer takes {self.in_features}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        y = _matmul(self.weight, x2.t().contiguous()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        dens = self.nnz / max(1, self.out_features * self.in_features)
        blk = f", block={self.block}" if self.block else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, layout={self.layout!r}{blk}, "
                f"density={dens:.4g}")


def sparse_linear(layer: Union[nn.Linear, Tensor], layout: str = "csr", block: Optional[Block] = None,
                  bias: Optional[Tensor] = None) -> SparseLinear:
    """A :class:`SparseLinear` computing what ``layer`` (an ``nn.Linear`` or a weight matrix) computes.

    A pruned ``nn.Linear`` is read through its effective weight (``orig * mask``),
    so it need not be finalized first.
    """
    if isinstance(layer, nn.Linear):
        weight = tg.effective_weight(layer, "weight")
        bias = layer.bias
    elif isinstance(layer, Tensor):
        weight = layer
    else:
        raise TypeError(f"layer must be an nn.Linear or a weight tensor; got {type(layer).__name__}")
    return SparseLinear(weight, bias, layout, block)


class SparseRNN(nn.Module):
    """A drop-in for an Elman ``nn.RNN`` (tanh or ReLU) at inference, with compressed matrices.

    Called like the ``nn.RNN`` it was made from: ``output, h_n = m(input, h0)``
    with the same shapes, ``batch_first`` and number of layers (unidirectional).
    The input projection of all time steps is one dense product; every
    recurrent step multiplies the compressed ``weight_hh`` with the hidden
    state kept as ``[hidden, batch]`` (no transposes inside the loop).

    Parameters
    ----------
    rnn : nn.RNN
        Finalized or still pruned (its effective weights are read).
    layout : {"csr", "bsr", "dense"}
        Layout of the recurrent matrices.
    block : int or (int, int), optional
        BSR block shape.
    input_layout : {"dense", "csr", "bsr"}
        Layout of ``weight_ih`` (default dense: it is small in most models).
    """

    def __init__(self, rnn: nn.RNN, layout: str = "csr", block: Optional[Block] = None, input_layout: str = "dense"):
        super().__init__()
        if not isinstance(rnn, nn.RNN):
            raise TypeError(f"rnn must be an nn.RNN (tanh or relu); got {type(rnn).__name__}")
        if rnn.bidirectional or getattr(rnn, "proj_size", 0):
            raise ValueError("SparseRNN runs unidirectional RNNs without projections")
        self.layout = _validate.choice(layout, "layout", LAYOUTS)
        self.input_layout = _validate.choice(input_layout, "input_layout", LAYOUTS)
        self.block = None if layout != "bsr" else _block(block, (rnn.hidden_size, rnn.hidden_size))
        self.input_size, self.hidden_size, self.num_layers = rnn.input_size, rnn.hidden_size, rnn.num_layers
        self.batch_first = rnn.batch_first
        self.nonlinearity = rnn.nonlinearity
        self._act = torch.relu if rnn.nonlinearity == "relu" else torch.tanh
        self.w_ih, self.w_hh, self.bias = [], [], []
        for k in range(rnn.num_layers):
            w_ih = tg.effective_weight(rnn, f"weight_ih_l{k}").detach()
            w_hh = tg.effective_weight(rnn, f"weight_hh_l{k}").detach()
            self.w_ih.append(compress(w_ih, input_layout, block) if input_layout != "dense" else w_ih.clone())
            self.w_hh.append(compress(w_hh, layout, block))
            if rnn.bias:
                b = (getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}")).detach().clone()
                self.bias.append(b[:, None])
            else:
                self.bias.append(None)
        self.nnz = sum(int(torch.count_nonzero(tg.effective_weight(rnn, f"weight_hh_l{k}")))
                       for k in range(rnn.num_layers))

    def _apply(self, fn, recurse=True):
        self.w_ih = [fn(w) for w in self.w_ih]
        self.w_hh = [fn(w) for w in self.w_hh]
        self.bias = [None if b is None else fn(b) for b in self.bias]
        return super()._apply(fn, recurse)

    def step(self, layer: int, h_t: Tensor, u_t: Tensor) -> Tensor:
        """One recurrent step of ``layer``: ``act(u_t + W_hh h_t)``, states as ``[hidden, batch]``."""
        return self._act(torch.addmm(u_t, self.w_hh[layer], h_t) if self.layout == "dense"
                         else u_t + _matmul(self.w_hh[layer], h_t))

    @torch.no_grad()
    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        unbatched = input.ndim == 2
        x = input.unsqueeze(0 if self.batch_first else 1) if unbatched else input
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"input must have shape [seq, batch, {self.input_size}] (or batch first); "
                             f"got {tuple(input.shape)}")
        x = x.transpose(0, 1) if self.batch_first else x  # [T, B, in]
        T, B = x.shape[0], x.shape[1]
        if hx is None:
            hx = x.new_zeros(self.num_layers, B, self.hidden_size)
        elif unbatched:
            hx = hx.unsqueeze(1)
        if tuple(hx.shape) != (self.num_layers, B, self.hidden_size):
            raise ValueError(f"hx must have shape {(self.num_layers, B, self.hidden_size)}; got {tuple(hx.shape)}")
        seq = x
        finals = []
        for k in range(self.num_layers):
            flat = seq.reshape(T * B, -1)
            if self.input_layout == "dense":
                u = (flat @ self.w_ih[k].t()).t()
            else:
                u = _matmul(self.w_ih[k], flat.t().contiguous())
            if self.bias[k] is not None:
                u = u + self.bias[k]
            u = u.reshape(self.hidden_size, T, B).permute(1, 0, 2).contiguous()  # [T, H, B]
            h = hx[k].t().contiguous()
            out = torch.empty_like(u)
            for t in range(T):
                h = self.step(k, h, u[t])
                out[t] = h
            finals.append(h.t())
            seq = out.permute(0, 2, 1)  # [T, B, H]
        output = seq.transpose(0, 1) if self.batch_first else seq
        h_n = torch.stack(finals)
        if unbatched:
            output, h_n = output.squeeze(0 if self.batch_first else 1), h_n.squeeze(1)
        return output.contiguous(), h_n

    def extra_repr(self) -> str:
        blk = f", block={self.block}" if self.block else ""
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"nonlinearity={self.nonlinearity!r}, layout={self.layout!r}{blk}")


def sparsify(model: nn.Module, layout: str = "csr", block: Optional[Block] = None, *,
             linear_layout: Optional[str] = None, min_sparsity: float = 0.0) -> nn.Module:
    """A copy of ``model`` whose ``nn.RNN`` and ``nn.Linear`` submodules run compressed (inference only).

    Parameters
    ----------
    model : nn.Module
        Finalized or pruned; it is not changed.
    layout : {"csr", "bsr", "dense"}
        Layout of recurrent matrices.
    block : int or (int, int), optional
        BSR block shape.
    linear_layout : str, optional
        Layout of ``nn.Linear`` weights (default: ``layout``).
    min_sparsity : float
        Replace only layers whose weights have at least this fraction of
        zeros (a dense layer is faster dense).
    """
    linear_layout = layout if linear_layout is None else linear_layout
    min_sparsity = _validate.fraction(min_sparsity, "min_sparsity", closed=True)
    for _, module, attr in tg.pruned_weights(model):
        if tg.is_parametrized(module, attr):
            continue  # computed at each access: nothing stored (assigning would go through right_inverse)
        # the computed weight is a graph node, which deepcopy refuses; the next forward recomputes it
        setattr(module, attr, tg.effective_weight(module, attr).detach())
    out = copy.deepcopy(model)
    tg.finalize_pruning(out)
    if isinstance(out, (nn.RNN, nn.Linear)):
        return _replace(out, layout, linear_layout, block, min_sparsity) or out
    for name, child in list(out.named_modules()):
        new = _replace(child, layout, linear_layout, block, min_sparsity) if name else None
        if new is not None:
            parent_name, _, attr = name.rpartition(".")
            setattr(out.get_submodule(parent_name) if parent_name else out, attr, new)
    return out


def _replace(module, layout, linear_layout, block, min_sparsity):
    if isinstance(module, nn.RNN) and not module.bidirectional:
        if tg.sparsity(module, names=[f"weight_hh_l{k}" for k in range(module.num_layers)]) >= min_sparsity:
            return SparseRNN(module, layout, block)
    elif isinstance(module, nn.Linear):
        if tg.sparsity(module.weight) >= min_sparsity:
            lay = linear_layout
            if lay == "bsr":
                try:
                    _block(block, module.weight.shape)
                except ValueError:
                    lay = "csr"  # a block that does not tile this layer: CSR
            return sparse_linear(module, lay, block)
    return None
