"""Matrix-free pull-back metrics ``g = JᵀJ / B`` and ``g = Jᵀ H J / B``.

``J`` is the Jacobian of the network's outputs on a batch of ``B`` inputs with
respect to the flattened parameter vector.  Products ``g x`` are one
Jacobian-vector product (forward mode, :func:`torch.func.jvp`) followed by one
vector-Jacobian product (reverse mode, :func:`torch.func.vjp`); neither ``J``
nor ``g`` is ever built, so memory stays that of a forward/backward pass.

The ``1/B`` makes the metric the *mean* squared output change per example, so
step sizes do not depend on the batch size.  The ``"fisher"`` variant weights
the output change by the softmax Hessian ``H = diag(p) - p pᵀ`` of each
example (the Fisher information of the categorical output distribution).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp, vjp

__all__ = ["FunctionalMetric", "METRICS"]

METRICS = ("output", "fisher")


class FunctionalMetric:
    """The pull-back metric of a model at given weights on one batch.

    Parameters
    ----------
    model : nn.Module
        Evaluated with :func:`torch.func.functional_call`; put it in the mode
        you want (``eval()`` for BatchNorm running statistics and no dropout).
    names : list of str
        Parameter names that form the flat vector (in this order).
    shapes : list of torch.Size
        Their shapes.
    buffers : dict of str to Tensor
        Buffers passed unchanged to ``functional_call``.
    x : Tensor, shape=[B, ...]
        The batch of inputs.
    w : Tensor, shape=[n]
        Flat weights at which the metric is taken.
    kind : {"output", "fisher"}
        Which metric.

    Attributes
    ----------
    products : int
        Number of ``g x`` products computed so far.
    """

    def __init__(self, model: nn.Module, names, shapes, buffers, x: Tensor, w: Tensor, kind: str = "output"):
        if kind not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {kind!r}")
        self.model, self.names, self.shapes, self.buffers = model, list(names), list(shapes), buffers
        self.sizes = [math.prod(s) for s in self.shapes]
        self.x, self.kind = x, kind
        self.batch = x.shape[0]
        self.products = 0
        self._w = self.unflatten(w.detach())
        out, self._vjp = vjp(self._f, self._w)
        self.out = out
        if kind == "fisher":
            self.p = torch.softmax(out, dim=-1)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, flat.split(self.sizes), self.shapes)}

    def _f(self, params: dict[str, Tensor]) -> Tensor:
        out = functional_call(self.model, (params, self.buffers), (self.x,))
        if not isinstance(out, Tensor):
            raise TypeError(f"the model must return a single Tensor, got {type(out).__name__}")
        return out.reshape(out.shape[0], -1)

    def jvp(self, t: Tensor) -> Tensor:
        """``J t`` as a tensor of shape ``[B, m]``."""
        _, jt = jvp(self._f, (self._w,), (self.unflatten(t),))
        return jt

    def _hess(self, u: Tensor) -> Tensor:
        if self.kind == "output":
            return u
        p = self.p
        return p * u - p * (p * u).sum(dim=-1, keepdim=True)

    def matvec(self, t: Tensor) -> Tensor:
        """``g t``, shape ``[n]``."""
        self.products += 1
        u = self._hess(self.jvp(t))
        (grads,) = self._vjp(u)
        return torch.cat([grads[n].reshape(-1) for n in self.names]) / self.batch

    def sq_norm(self, t: Tensor) -> float:
        """``tᵀ g t`` (one Jacobian-vector product)."""
        u = self.jvp(t)
        return float((u * self._hess(u)).sum()) / self.batch

