"""Matrix-free pull-back metrics ``g = JᵀJ / B`` and ``g = Jᵀ H J / B``.

``J`` is the Jacobian of the network's outputs on a batch of ``B`` inputs with
respect to the flattened parameter vector.  Products ``g x`` are one
Jacobian-vector product followed by one vector-Jacobian product, both by
reverse-mode automatic differentiation through one cached graph; neither
``J`` nor ``g`` is ever built, so memory stays that of a forward/backward
pass (plus the double-backward graph).

The ``1/B`` makes the metric the *mean* squared output change per example, so
step sizes do not depend on the batch size.  The ``"fisher"`` variant weights
the output change by the softmax Hessian ``H = diag(p) - p pᵀ`` of each
example (the Fisher information of the categorical output distribution).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["FunctionalMetric", "METRICS", "explain_forward_error"]

#: Metric kinds of :class:`FunctionalMetric`: ``"output"`` (``JᵀJ / B``, the outputs'
#: Euclidean metric pulled back) and ``"fisher"`` (the softmax Fisher metric of logits).
METRICS = ("output", "fisher")


class FunctionalMetric:
    """The pull-back metric of a model at given weights on one batch.

    Building the object runs one forward pass and one backward pass with
    ``create_graph=True`` that gives ``u -> Jᵀu`` as a differentiable
    function of a dummy cotangent ``u``; ``J t`` is then the derivative of
    ``(Jᵀu)·t`` with respect to ``u`` (the double-backward trick).  A product
    ``g t`` costs two backward passes through the cached graph.

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
    names : (str, str)
        The public argument names of the model and of the data the batch came
        from, used in error messages.

    Raises
    ------
    TypeError, ValueError
        If the model cannot run on ``x``: the message names the data argument
        and what is wrong (the inputs' dtype against the parameters' dtype,
        their width against the first layer's, see :func:`explain_forward_error`).

    Attributes
    ----------
    out : Tensor, shape=[B, m]
        The (flattened) outputs at ``w``.
    products : int
        Number of ``g x`` products computed so far.

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(2, 1, bias=False)
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> g = FunctionalMetric(lin, ["weight"], [lin.weight.shape], {}, x, lin.weight.detach().reshape(-1))
    >>> g.matvec(torch.tensor([1.0, 1.0]))  # JᵀJ/B = diag(1, 4)/2
    tensor([0.5000, 2.0000])
    """

    def __init__(self, model: nn.Module, names, shapes, buffers, x: Tensor, w: Tensor, kind: str = "output",
                 *, names_for_errors: tuple[str, str] = ("model", "data")):
        if kind not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {kind!r}")
        self.names, self.shapes = list(names), list(shapes)
        self.sizes = [math.prod(s) for s in self.shapes]
        self.kind = kind
        self.batch = x.shape[0]
        self.products = 0
        self._w = [t.view(s).detach().requires_grad_(True) for t, s in zip(w.detach().split(self.sizes), self.shapes)]
        with torch.enable_grad():
            try:
                out = functional_call(model, (dict(zip(self.names, self._w)), buffers), (x,))
            except RuntimeError as err:
                raise explain_forward_error(model, x, w.dtype, err, *names_for_errors) from err
            if not isinstance(out, Tensor):
                raise TypeError(f"the model must return a single Tensor, got {type(out).__name__}")
            if out.ndim == 0 or out.shape[0] != self.batch:
                raise ValueError(f"the model output must have the batch dimension {self.batch} first, got shape {tuple(out.shape)}")
            self.out = out.reshape(self.batch, -1)
            self._u = torch.zeros_like(self.out, requires_grad=True)
            grads = torch.autograd.grad(self.out, self._w, self._u, create_graph=True, allow_unused=True)
        # parameters the output does not depend on have a zero Jacobian block
        self._live = [i for i, gr in enumerate(grads) if gr is not None and gr.requires_grad]
        self._jtu = [grads[i] for i in self._live]
        if kind == "fisher":
            self.p = torch.softmax(self.out.detach(), dim=-1)

    def jvp(self, t: Tensor) -> Tensor:
        """``J t`` as a tensor of shape ``[B, m]``."""
        if not self._live:
            return torch.zeros_like(self.out.detach())
        parts = t.split(self.sizes)
        tangents = [parts[i].view(self.shapes[i]) for i in self._live]
        (jt,) = torch.autograd.grad(self._jtu, self._u, tangents, retain_graph=True)
        return jt

    def vjp(self, u: Tensor) -> Tensor:
        """``Jᵀ u`` flattened, shape ``[n]``."""
        grads = torch.autograd.grad(self.out, self._w, u, retain_graph=True, allow_unused=True)
        return torch.cat([
            (gr if gr is not None else torch.zeros_like(p)).reshape(-1) for gr, p in zip(grads, self._w)
        ])

    def _hess(self, u: Tensor) -> Tensor:
        if self.kind == "output":
            return u
        p = self.p
        return p * u - p * (p * u).sum(dim=-1, keepdim=True)

    def matvec(self, t: Tensor) -> Tensor:
        """``g t``, shape ``[n]``."""
        self.products += 1
        return self.vjp(self._hess(self.jvp(t))) / self.batch

    def sq_norm(self, t: Tensor) -> float:
        """``tᵀ g t`` (one Jacobian-vector product)."""
        u = self.jvp(t)
        return float((u * self._hess(u)).sum()) / self.batch


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def explain_forward_error(model: nn.Module, x: Tensor, param_dtype: torch.dtype, err: Exception,
                          model_name: str = "model", data_name: str = "data") -> Exception:
    """The error to raise when ``model`` fails (with ``err``) on the inputs ``x``.

    Only called after a forward pass has failed, so working models pay
    nothing.  Floating-point inputs of another dtype than the parameters give
    a ``TypeError`` naming both dtypes.  Otherwise a dry forward pass (no
    gradients, the model in the mode the caller set) records the first
    ``Linear``/``Conv`` layer that is reached and the tensor it receives:
    non-floating inputs to it give a ``TypeError``, a width (``in_features``
    or ``in_channels``) that does not match gives a ``ValueError`` stating the
    expected width.  Anything else is a ``ValueError`` quoting torch's message.
    """
    what = f"{data_name}: inputs of shape {tuple(x.shape)} and dtype {x.dtype}"
    if x.is_floating_point() and x.dtype != param_dtype:
        return TypeError(f"{what} do not match the dtype of {model_name}'s parameters, {param_dtype}; "
                         f"convert the inputs with .to({param_dtype})")
    seen: list = []

    def record(module, args):
        if not seen and args and isinstance(args[0], Tensor):
            seen.append((module, args[0]))

    layers = {m: n for n, m in model.named_modules() if isinstance(m, (nn.Linear, *_CONV))}
    hooks = [m.register_forward_pre_hook(record) for m in layers]
    try:
        with torch.no_grad():
            model(x)
    except Exception:  # the failure being explained; only the hooks' record matters
        pass
    finally:
        for h in hooks:
            h.remove()
    if seen:
        layer, inp = seen[0]
        label = f"{model_name}'s first layer {layers[layer] or '(the model itself)'!r} ({type(layer).__name__})"
        if not inp.is_floating_point():
            return TypeError(f"{what} cannot feed {label}, which needs floating-point inputs of dtype "
                             f"{param_dtype}; convert the inputs with .to({param_dtype})")
        if isinstance(layer, nn.Linear):
            got, want, axis = inp.shape[-1] if inp.ndim else None, layer.in_features, "features (last axis)"
        else:
            d = len(layer.kernel_size)
            got = inp.shape[-(d + 1)] if inp.ndim >= d + 1 else None
            want, axis = layer.in_channels, f"channels (axis {-(d + 1)} of a {d}-D convolution input)"
        if got != want:
            via = "" if inp.shape == x.shape else f" (it receives shape {tuple(inp.shape)})"
            return ValueError(f"{what} do not fit {label}: it expects {want} input {axis}, got {got}{via}")
    return ValueError(f"{what}: the forward pass of {model_name} fails on them: {err}")
