"""The stateless math of Eq. 6: penalties, their gradients and the trained-embedding pass.

Everything here takes tensors and plain numbers and returns tensors; nothing
holds state or knows a prior kind. :mod:`moduli.regularizers.state` calls it.

Coefficients broadcast against a weight viewed as ``(blocks, n_out, cols)``:

* shape ``(n_out, cols)`` -- one coefficient per pair of neurons, shared by
  the gate blocks of an LSTM/GRU recurrent matrix of shape
  ``(blocks * n_out, cols)``;
* shape ``(blocks, n_out, cols)`` -- one per entry (per kernel slice for a
  convolution);
* a 0-d tensor ``c`` -- every entry weighs ``c``, kernel entries included
  (``c * sum |w|^l``, elementwise: the L1 control).

Convolutions with a neuron-pair coefficient penalise the L2 norm of each
kernel slice (``slice_norm``, Appendix I.2.1).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from ..manifolds import FlatTorus, KleinBottle, Sphere
from ..manifolds.base import safe_sqrt

__all__ = [
    "magnitude", "weighted_penalty", "penalty_gradient", "coefficient_matrix", "group_gather",
    "as_coefficients", "FixedPenalty", "LivePenalty", "live_pass", "KeptPairs", "kept_pairs", "sparse_pass",
    "SparseFixedPenalty", "kept_entry_gradient",
    "REDUCTIONS", "SPARSE_DENSITY",
]

REDUCTIONS = ("sum", "mean")

# Entries per row chunk when recomputing trained coefficients: small enough for
# the chunk's temporaries to stay in cache, large enough to amortize Python.
CHUNK_ENTRIES = 2**18

# A pruned trained term takes the sparse pass (one distance per kept neuron
# pair) while at most this fraction of its neuron pairs is kept. Per pair the
# sparse pass cost 2-2.5x the dense one (gathers and scatters; torus, Klein
# bottle and sphere at n = 1024), so it wins below about 0.4.
SPARSE_DENSITY = 0.4


def magnitude(weight: Tensor, exponent: float, slice_norm: bool) -> Tensor:
    """``|w|^l`` per entry, or ``||T_{c,c'}||_2^l`` per kernel slice.

    Parameters
    ----------
    weight : Tensor, shape ``[out, in]`` or ``[out, in, *kernel]``
    slice_norm : bool
        Reduce trailing kernel axes with the L2 norm (convolutions).

    Returns
    -------
    Tensor, shape=[out, in] (``weight``'s shape when ``slice_norm`` is false)
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

    Parameters
    ----------
    weight : Tensor, shape ``[blocks * n_out, cols, *kernel]``
    coefficients : Tensor, shape=[n_out, cols], [blocks, n_out, cols] or []
        See the module docstring; a 0-d coefficient ignores ``slice_norm``.
    exponent : float
    slice_norm : bool
        Use the L2 norm of each kernel slice (convolutions).
    reduction : {"sum", "mean"}
        ``"mean"`` divides by the number of (broadcast) coefficients, or by
        ``weight.numel()`` for a 0-d coefficient.
    workspace : Tensor, optional
        Scratch memory shaped like ``weight`` (used when ``exponent == 1``
        and no slice norm applies, to avoid a fresh allocation). Not for
        autograd: pass it only under ``torch.no_grad()``.

    Returns
    -------
    Tensor, shape=[]
    """
    if coefficients.ndim == 0:
        if workspace is not None and exponent == 1.0:
            mag = torch.abs(weight, out=workspace)
        else:
            mag = magnitude(weight, exponent, False)
        total = mag.sum() * coefficients
        return total / weight.numel() if reduction == "mean" else total
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
    uniform = coefficients.ndim == 0
    if uniform:
        if reduction == "mean":
            scale = scale / weight.numel()
        slice_norm = False
    else:
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
    if uniform:
        g.mul_(coefficients)
    else:
        g.view(-1, n_out, n_in).mul_(coefficients)
    if scale != 1.0:
        g.mul_(scale)
    return g


def coefficient_matrix(manifold, inhibitor, points_out: Tensor, points_in: Optional[Tensor] = None, *,
                       validate: bool = True) -> Tensor:
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
    return inhibitor(manifold.cdist(points_out, points_in, validate=validate))


def group_gather(c: Tensor, groups: int, *, row0: int = 0, n_out: Optional[int] = None) -> Tensor:
    """``(out, in)`` neuron-pair coefficients -> ``(out, in // groups)`` for a grouped convolution.

    ``c`` may hold the rows ``row0 : row0 + len(c)`` of ``n_out`` output
    channels; output channel ``o`` sees input channels
    ``(o // (n_out // groups)) * (in // groups) + j``.
    """
    if groups == 1:
        return c
    rows, cin = c.shape
    n_out = rows if n_out is None else n_out
    ipg, opg = cin // groups, n_out // groups
    out_idx = torch.arange(row0, row0 + rows, device=c.device)
    idx = (out_idx // opg)[:, None] * ipg + torch.arange(ipg, device=c.device)
    return torch.gather(c, 1, idx)


def as_coefficients(c, layout, owner: str) -> Tensor:
    """Check a prior's coefficients for ``layout`` and bring them to a broadcastable shape.

    Accepts a 0-d tensor, ``(n_out, cols)``, ``layout.coefficient_shape``
    (``(blocks * n_out, cols)``, returned as ``(blocks, n_out, cols)``) or
    ``(blocks, n_out, cols)``.

    Raises
    ------
    TypeError
        If ``c`` is not a floating tensor.
    ValueError
        If its shape fits none of those, or it has negative or non-finite entries.
    """
    if not isinstance(c, Tensor) or not c.is_floating_point():
        raise TypeError(f"{owner}.coefficients must return a floating torch.Tensor; got "
                        f"{type(c).__name__ if not isinstance(c, Tensor) else c.dtype}")
    blocks, n_out, cols = layout.blocks, layout.n_out, layout.cols
    shapes = {(), (n_out, cols), (blocks, n_out, cols), (blocks * n_out, cols)}
    if tuple(c.shape) not in shapes:
        raise ValueError(
            f"{owner}.coefficients for {layout.name} must have shape (), ({n_out}, {cols}), "
            f"({blocks * n_out}, {cols}) or ({blocks}, {n_out}, {cols}); got {tuple(c.shape)}"
        )
    if not bool(torch.isfinite(c).all()) or bool((c < 0).any()):
        raise ValueError(f"{owner}.coefficients for {layout.name} must be finite and non-negative")
    if c.ndim == 2 and blocks > 1 and c.shape[0] == blocks * n_out:
        c = c.reshape(blocks, n_out, cols)
    return c.contiguous()


class FixedPenalty(torch.autograd.Function):
    """``sum C |W|^l`` with a hand-written backward (no autograd temporaries).

    ``FixedPenalty.apply(weight, coefficients, exponent, slice_norm, reduction, workspace)``.
    When ``weight`` requires a gradient, forward computes it and the value
    from it; backward only scales it, so it supports a single backward pass
    (``retain_graph`` re-use raises), like :class:`LivePenalty`.
    """

    @staticmethod
    def forward(ctx, weight, coeff, exponent, slice_norm, reduction, workspace):
        if not weight.requires_grad:
            ctx.grad = None
            return weighted_penalty(weight, coeff, exponent, slice_norm=slice_norm, reduction=reduction,
                                    workspace=workspace)
        # The gradient g is computed here, and the value from it: g . W = l * sum C |W|^l entry by
        # entry (and per kernel slice), so one pass over W and C serves both, and backward only scales g.
        g = penalty_gradient(weight, coeff, exponent, slice_norm=slice_norm, reduction=reduction)
        ctx.grad = g
        value = torch.dot(g.reshape(-1), weight.detach().reshape(-1))
        return value / exponent if exponent != 1.0 else value

    @staticmethod
    def backward(ctx, grad_out):
        g = ctx.grad
        if g is None:
            raise RuntimeError("the fixed penalty supports one backward pass per penalty() call")
        ctx.grad = None
        return g.mul_(grad_out), None, None, None, None, None


def _distance_partials(manifold, x: Tensor, y: Tensor):
    """Distances and a closed-form chain rule for the flat torus, the Klein bottle and the sphere.

    Returns ``(d, chain)`` with ``d = manifold.dist(x, y)`` (the same
    operations, so the same values) and ``chain(g)`` giving, for an upstream
    gradient ``g`` shaped like ``d``, the lists ``gx[k] = g * dd/dx_k`` and
    ``gy[k] = g * dd/dy_k`` (``gy`` None where it is ``-gx``), entry by
    entry, or with ``reduce=True`` (for ``x[:, None]`` against ``y[None]``)
    their sums over ``y`` and over ``x``, shape=[len(x), k] and [len(y), k];
    or None for every other space, whose distance is differentiated with
    autograd. Only the exact built-in classes qualify (a subclass may
    redefine ``_dist``). Without the autograd graph of the distance a trained
    term needs about half the elementwise passes. Derivatives are those
    autograd gives for the same formula (zero where ``d = 0``; where the
    Klein bottle's two branches tie, the first branch's, where autograd
    splits).
    """
    kind = type(manifold)
    if kind is FlatTorus or kind is KleinBottle:
        if kind is FlatTorus:
            p = manifold.period
            res, sq = [], None
            for k in range(manifold.dim):
                t = x[..., k] - y[..., k]
                r = t - p * torch.round(t / p)  # signed; |r| is wrap(t, p)
                res.append(r)
                sq = r * r if sq is None else sq + r * r
            jy = None
        else:
            side = manifold.side
            t0 = x[..., 0] - y[..., 0]
            ra = t0 - (2 * side) * torch.round(t0 / (2 * side))
            t1 = x[..., 1] - y[..., 1]
            rb = t1 - side * torch.round(t1 / side)
            c = side - ra.abs()
            t2 = x[..., 1] + y[..., 1]
            re = t2 - side * torch.round(t2 / side)
            first = ra * ra + rb * rb
            second = c * c + re * re
            near = first <= second
            sq = torch.minimum(first, second)
            res = [torch.where(near, ra, -c * torch.sign(ra)), torch.where(near, rb, re)]
            jy = [None, torch.where(near, -rb, re)]
        d = torch.sqrt(sq)

        def chain(g, reduce=False):
            h = torch.where(d > 0, g / d, 0.0)
            gx = [h * r for r in res]
            gy = None if jy is None else [-gx[0], h * jy[1]]
            if not reduce:
                return gx, gy
            return (torch.stack([t.sum(1) for t in gx], 1),
                    torch.stack([t.sum(0).neg_() for t in gx] if gy is None else [t.sum(0) for t in gy], 1))

        return d, chain
    if kind is Sphere:
        # d = 2 r atan2(A, B), A = |x - y|, B = |x + y|: dd/dA = 2 r B / (A^2 + B^2),
        # dd/dB = -2 r A / (A^2 + B^2), dA/dx = (x - y) / A, dB/dx = (x + y) / B
        diff = [x[..., k] - y[..., k] for k in range(manifold.coord_dim)]
        plus = [x[..., k] + y[..., k] for k in range(manifold.coord_dim)]
        a2 = b2 = None
        for u, v in zip(diff, plus):
            a2 = u * u if a2 is None else a2 + u * u
            b2 = v * v if b2 is None else b2 + v * v
        a, b = safe_sqrt(a2), safe_sqrt(b2)
        d = (2.0 * manifold.radius) * torch.atan2(a, b)

        def chain(g, reduce=False):
            h = g * (2.0 * manifold.radius) / (a2 + b2)
            pa = torch.where(a > 0, h * b / a, 0.0)
            pb = torch.where(b > 0, h * a / b, 0.0)
            if reduce:  # x[:, None], y[None]: sum_j pa (x_i - y_j) - pb (x_i + y_j) as two products
                xi, yj = x[:, 0, :], y[0]
                minus, both = pa - pb, pa + pb
                return (xi * minus.sum(1, keepdim=True) - both @ yj,
                        yj * minus.sum(0)[:, None] - both.T @ xi)
            gx, gy = [], []
            for u, v in zip(diff, plus):
                pu, pv = pa * u, pb * v
                gx.append(pu - pv)
                gy.append(-pu - pv)
            return gx, gy

        return d, chain
    return None


def kept_entry_gradient(w: Tensor, c: Tensor, exponent: float) -> Tensor:
    """``d (c * |w|^l) / dw`` for gathered entries ``w`` (``c`` broadcasts against ``w``)."""
    if exponent == 1.0:
        g = torch.sign(w)
    elif exponent == 2.0:
        g = 2.0 * w
    else:
        g = w.sign() * w.abs().pow(exponent - 1.0) * exponent
    return g.mul_(c)


class SparseFixedPenalty(torch.autograd.Function):
    """``sum C |W|^l`` over the kept entries of a pruned weight (no slice norms).

    ``SparseFixedPenalty.apply(weight, index, mask_kept, c_kept, exponent, divisor)``: ``weight``
    is the stored ``<name>_orig``; ``index`` the flat indices of the entries
    whose mask is nonzero, ``mask_kept`` and ``c_kept`` the mask and
    coefficients there (``c_kept`` may be 0-d); ``divisor`` is 1 for
    ``reduction="sum"``, the number of coefficients for ``"mean"``. Equal
    to :class:`FixedPenalty` on ``weight * mask``, at a cost proportional to
    the kept entries (the backward still writes a dense, mostly zero,
    gradient, as autograd needs one for ``weight``).
    """

    @staticmethod
    def forward(ctx, weight, index, mask_kept, c_kept, exponent, divisor):
        w = weight.detach().reshape(-1).index_select(0, index).mul_(mask_kept)
        mag = magnitude(w, exponent, False)
        value = (mag.sum() * c_kept) if c_kept.ndim == 0 else torch.dot(c_kept, mag)
        ctx.save_for_backward(w, index, mask_kept, c_kept)
        ctx.args = (exponent, divisor, weight.shape)
        return value / divisor if divisor != 1 else value

    @staticmethod
    def backward(ctx, grad_out):
        w, index, mask_kept, c_kept = ctx.saved_tensors
        exponent, divisor, shape = ctx.args
        g = kept_entry_gradient(w, c_kept, exponent).mul_(mask_kept).mul_(grad_out)
        if divisor != 1:
            g.div_(divisor)
        out = torch.zeros(shape, dtype=w.dtype, device=w.device)
        out.view(-1).index_copy_(0, index, g)
        return out, None, None, None, None, None


def live_pass(layout, manifold, inhibitor, exponent: float, reduction: str, p_out: Tensor,
              p_in: Optional[Tensor], weight: Tensor, *, weight_grad: Optional[Tensor] = None,
              alpha: float = 1.0, accumulate: bool = False):
    """Value, point gradients and (optionally) weight gradient of a trained-embedding term.

    One sweep over row chunks of output neurons: for each chunk the
    distances are built for ``chunk x n_in`` entries, ``f`` and ``f'`` come in
    closed form, the distance graph is differentiated at once, and the
    chunk's rows of ``dR/dW`` are written. No ``(n, n)`` autograd temporaries
    and no ``(n, n, k)`` ones; no full coefficient matrix is stored.

    Parameters
    ----------
    layout : moduli.targets.TargetLayout
    manifold, inhibitor
        The coefficients are ``inhibitor(manifold.cdist(p_out, p_in))``.
    p_in : Tensor or None
        None when rows and columns are the same neurons.
    weight_grad : Tensor, optional
        Shaped like ``weight``: receives ``alpha * dR/dW`` (added to it when
        ``accumulate``, else overwritten).

    Returns
    -------
    value : Tensor, shape=[]
    g_out : Tensor, shape=[n_out, coord_dim]
    g_in : Tensor or None, shape=[n_in, coord_dim] (None when shared)
    """
    n_out, cols, blocks = layout.n_out, layout.cols, layout.blocks
    scale = 1.0 / (blocks * n_out * cols) if reduction == "mean" else 1.0
    w = weight.detach()
    wv = w.view(blocks, n_out, *w.shape[1:])
    gv = None if weight_grad is None else weight_grad.view(blocks, n_out, *w.shape[1:])
    x = p_out.detach()
    y = x if p_in is None else p_in.detach()
    g_out = torch.zeros_like(x)
    g_in = None if p_in is None else torch.zeros_like(y)
    value = torch.zeros((), dtype=w.dtype, device=w.device)
    step = max(1, CHUNK_ENTRIES // max(1, y.shape[0] * blocks))
    with torch.enable_grad():
        yl = y.detach().requires_grad_(True)
        for r0 in range(0, n_out, step):
            r1 = min(n_out, r0 + step)
            rows = r1 - r0
            w_chunk = wv[:, r0:r1].reshape(blocks * rows, *w.shape[1:])
            with torch.no_grad():
                a = magnitude(w_chunk, exponent, layout.slice_norm).reshape(blocks, rows, cols).sum(0)
            closed = _distance_partials(manifold, x[r0:r1, None, :], y[None, :, :]) if layout.groups == 1 else None
            if closed is not None:
                with torch.no_grad():
                    d, chain = closed
                    c, fprime = inhibitor.value_and_derivative(d)
                    s = torch.dot(c.reshape(-1), a.reshape(-1))
                    gx, gy = chain(fprime.mul_(a), reduce=True)
                    g_out[r0:r1] += gx
                    (g_out if g_in is None else g_in).add_(gy)
                    value += s
                    if gv is not None:
                        g = penalty_gradient(w_chunk, c, exponent, slice_norm=layout.slice_norm,
                                             scale=alpha * scale).view(blocks, rows, *w.shape[1:])
                        if accumulate:
                            gv[:, r0:r1] += g
                        else:
                            gv[:, r0:r1] = g
                continue
            xl = x[r0:r1].detach().requires_grad_(True)
            d = manifold.cdist(xl, yl, validate=False)
            if layout.groups > 1:
                c = group_gather(inhibitor.forward(d), layout.groups, row0=r0, n_out=n_out)
                s = (c * a).sum()
                gx, gy = torch.autograd.grad(s, (xl, yl))
                c = c.detach()
            else:
                # closed-form f' (no autograd graph through the inhibitor)
                c, fprime = inhibitor.value_and_derivative(d.detach())
                with torch.no_grad():
                    s = torch.dot(c.reshape(-1), a.reshape(-1))
                    fprime.mul_(a)
                gx, gy = torch.autograd.grad(d, (xl, yl), grad_outputs=fprime)
            with torch.no_grad():
                g_out[r0:r1] += gx
                if g_in is None:
                    g_out += gy
                else:
                    g_in += gy
                value += s.detach()
                if gv is not None:
                    g = penalty_gradient(w_chunk, c, exponent, slice_norm=layout.slice_norm,
                                         scale=alpha * scale).view(blocks, rows, *w.shape[1:])
                    if accumulate:
                        gv[:, r0:r1] += g
                    else:
                        gv[:, r0:r1] = g
    if scale != 1.0:
        value *= scale
        g_out *= scale
        if g_in is not None:
            g_in *= scale
    return value, g_out, g_in


class KeptPairs(NamedTuple):
    """The neuron pairs of a pruned weight that keep at least one entry (see :func:`kept_pairs`).

    Attributes
    ----------
    index : Tensor, shape=[P], int64
        Flat indices into the ``(n_out, cols)`` coefficient grid, ascending.
    rows : Tensor, shape=[P], int64
        Output neuron of each pair (a row of ``points_out``).
    cols : Tensor, shape=[P], int64
        Input neuron of each pair (a row of ``points_in``; for a grouped
        convolution the channel, not the group-local column).
    density : float
        ``P / (n_out * cols)``.
    """

    index: Tensor
    rows: Tensor
    cols: Tensor
    density: float


def kept_pairs(layout, mask: Tensor) -> KeptPairs:
    """The neuron pairs whose coefficient still meets a nonzero mask entry.

    A pair ``(j, k)`` is kept when any gate block's row ``j`` (any kernel
    entry of slice ``(j, k)`` for a convolution) has a nonzero mask at
    column ``k``. Pairs outside this set meet only zero weights, so they add
    nothing to the penalty nor to any gradient.

    Parameters
    ----------
    layout : moduli.targets.TargetLayout
    mask : Tensor, shape=layout.shape
        The pruning mask (``0`` where pruned).

    Returns
    -------
    KeptPairs
    """
    n_out, cols = layout.n_out, layout.cols
    kept = (mask.detach().reshape(layout.blocks, n_out, cols, -1) != 0).any(-1).any(0).reshape(-1)
    index = kept.nonzero().squeeze(1)
    rows = torch.div(index, cols, rounding_mode="floor")
    col = index - rows * cols
    if layout.groups > 1:
        col = torch.div(rows, n_out // layout.groups, rounding_mode="floor") * cols + col
    return KeptPairs(index, rows, col, index.numel() / max(1, n_out * cols))


def _pair_gradient(w: Tensor, c: Tensor, exponent: float, slice_norm: bool) -> Tensor:
    """``d (c * magnitude(w)) / dw`` for gathered entries ``w``, shape=[blocks, P, kk], ``c`` shape=[P]."""
    if slice_norm:
        sq = (w * w).sum(-1)
        if exponent == 2.0:
            factor = 2.0 * c
        else:
            positive = sq > 0
            safe = torch.where(positive, sq, torch.ones_like(sq))
            factor = torch.where(positive, exponent * c * safe.pow(0.5 * exponent - 1.0), torch.zeros_like(sq))
        return factor.unsqueeze(-1) * w
    return kept_entry_gradient(w, c[:, None], exponent)


def sparse_pass(layout, manifold, inhibitor, exponent: float, reduction: str, p_out: Tensor,
                p_in: Optional[Tensor], weight: Tensor, mask: Tensor, pairs: KeptPairs, *,
                weight_grad: Optional[Tensor] = None, alpha: float = 1.0, accumulate: bool = False,
                point_grads: bool = True):
    """:func:`live_pass` over the kept neuron pairs of a pruned weight only.

    For each chunk of kept pairs the weights are gathered from ``weight``
    (the stored ``<name>_orig``) times ``mask``, the distances of the pairs'
    points are computed with ``manifold.dist``, ``f`` and ``f'`` come in
    closed form, and the distance graph of the chunk is differentiated at
    once. The cost is proportional to the number of kept pairs, not to
    ``n_out * n_in``; pruned entries contribute nothing, exactly as in the
    dense pass.

    Parameters
    ----------
    weight : Tensor, shape=layout.shape
        The stored parameter (not the effective weight).
    mask : Tensor, shape=layout.shape
        Its pruning mask; the effective weight is ``weight * mask``.
    pairs : KeptPairs
        From :func:`kept_pairs` of ``mask``.
    weight_grad : Tensor, optional
        Shaped like ``weight``: receives ``alpha * dR/d weight`` (that is
        ``mask * dR/dW``) at the kept entries, added to it when
        ``accumulate``; else it is zeroed first.
    point_grads : bool
        Compute the embeddings' gradients (False: value and weight gradient only).

    Returns
    -------
    value : Tensor, shape=[]
    g_out : Tensor or None, shape=[n_out, coord_dim]
    g_in : Tensor or None, shape=[n_in, coord_dim] (None when shared)
    """
    n_out, cols, blocks = layout.n_out, layout.cols, layout.blocks
    scale = 1.0 / (blocks * n_out * cols) if reduction == "mean" else 1.0
    # Everything is gathered and scattered through flat 1-d indices: index_select and
    # index_add_ along dim 0 of a 1-d tensor are many times faster on CPU than along
    # an inner dimension of a strided view.
    w = weight.detach().reshape(-1)
    m = mask.detach().reshape(-1)
    kk = w.numel() // (blocks * n_out * cols)
    gv = None
    if weight_grad is not None:
        if not accumulate:
            weight_grad.zero_()
        gv = weight_grad.view(-1)
    x = p_out.detach()
    y = x if p_in is None else p_in.detach()
    xt, yt = x.T.contiguous(), (None if p_in is None else y.T.contiguous())
    g_out = torch.zeros_like(x) if point_grads else None
    g_in = None if p_in is None or not point_grads else torch.zeros_like(y)
    value = torch.zeros((), dtype=w.dtype, device=w.device)
    total = pairs.index.numel()
    step = max(1, CHUNK_ENTRIES // max(1, blocks * kk))
    offsets = None
    if blocks > 1 or kk > 1:  # entry (b, pair, k) of the flat weight: (b * n_out * cols + pair) * kk + k
        offsets = ((torch.arange(blocks, device=w.device) * (n_out * cols * kk))[:, None, None]
                   + torch.arange(kk, device=w.device)[None, None, :])
    for q0 in range(0, total, step):
        q1 = min(total, q0 + step)
        idx = pairs.index[q0:q1]
        flat = idx if offsets is None else (offsets + (idx * kk)[None, :, None]).reshape(-1)
        mk = m.index_select(0, flat)
        wk = w.index_select(0, flat).mul_(mk).view(blocks, q1 - q0, kk)
        a = magnitude(wk, exponent, layout.slice_norm)
        a = a.sum(0) if layout.slice_norm else a.sum((0, 2))
        rows, col = pairs.rows[q0:q1], pairs.cols[q0:q1]
        xs = torch.stack([c.index_select(0, rows) for c in xt], 1)
        ys = torch.stack([c.index_select(0, col) for c in (xt if yt is None else yt)], 1)
        closed = _distance_partials(manifold, xs, ys) if point_grads else None
        if closed is not None:
            d, chain = closed
            c, fprime = inhibitor.value_and_derivative(d)
            gx, gy = chain(fprime.mul_(a))
            gin = g_out if g_in is None else g_in
            for k, gk in enumerate(gx):
                g_out[:, k].index_add_(0, rows, gk)
                if gy is None:
                    gin[:, k].index_add_(0, col, gk, alpha=-1.0)
                else:
                    gin[:, k].index_add_(0, col, gy[k])
        elif point_grads:
            with torch.enable_grad():
                xs.requires_grad_(True)
                ys.requires_grad_(True)
                d = manifold.dist(xs, ys, validate=False)
                c, fprime = inhibitor.value_and_derivative(d.detach())
                gx, gy = torch.autograd.grad(d, (xs, ys), grad_outputs=fprime.mul_(a))
            gin = g_out if g_in is None else g_in
            for k in range(x.shape[1]):
                g_out[:, k].index_add_(0, rows, gx[:, k])
                gin[:, k].index_add_(0, col, gy[:, k])
        else:
            c = inhibitor.forward(manifold.dist(xs, ys, validate=False))
        value += torch.dot(c, a)
        if gv is not None:
            g = _pair_gradient(wk, c, exponent, layout.slice_norm).reshape(-1).mul_(mk)
            gv.index_add_(0, flat, g, alpha=alpha * scale)
    if scale != 1.0:
        value *= scale
        if g_out is not None:
            g_out *= scale
        if g_in is not None:
            g_in *= scale
    return value, g_out, g_in


class LivePenalty(torch.autograd.Function):
    """A trained term: forward computes the value and every gradient in one sweep.

    ``LivePenalty.apply(p_out, p_in, weight, layout, manifold, inhibitor, exponent, reduction, mask, pairs)``:
    the dense pass (:func:`live_pass`) on the effective weight when ``pairs``
    is None, else the sparse pass (:func:`sparse_pass`) on the stored
    parameter ``weight`` and its ``mask``.
    Backward only scales the stored gradients, so it supports a single
    backward pass (``retain_graph`` re-use raises).
    """

    @staticmethod
    def forward(ctx, p_out, p_in, weight, layout, manifold, inhibitor, exponent, reduction, mask=None, pairs=None):
        gw = torch.empty_like(weight, memory_format=torch.contiguous_format) if weight.requires_grad else None
        if pairs is None:
            value, g_out, g_in = live_pass(layout, manifold, inhibitor, exponent, reduction, p_out, p_in, weight,
                                           weight_grad=gw)
        else:
            value, g_out, g_in = sparse_pass(layout, manifold, inhibitor, exponent, reduction, p_out, p_in, weight,
                                             mask, pairs, weight_grad=gw)
        ctx.grads = (g_out, g_in, gw)
        ctx.shared = g_in is None
        return value

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.grads is None:
            raise RuntimeError("the trained-embedding penalty supports one backward pass per penalty() call")
        g_out, g_in, gw = ctx.grads
        ctx.grads = None
        if gw is not None:
            gw.mul_(grad_out)
        return (g_out.mul_(grad_out), (None if ctx.shared else g_in.mul_(grad_out)), gw,
                None, None, None, None, None, None, None)
