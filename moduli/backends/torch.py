"""The PyTorch backend: targets in ``nn.Module`` models, prior sets as modules.

Neuron layouts
--------------
- ``nn.RNN``/``nn.LSTM``/``nn.GRU``: ``weight_hh_l{k}[_reverse]`` is
  recurrent; its rows are ``blocks`` gate blocks (1, 4, 3) of the layer's
  ``hidden_size`` units, sharing one embedding (group
  ``"<module>.hidden_l{k}[_reverse]"``). With ``proj_size > 0`` the columns
  are the projected units (their own group). ``weight_ih_l{k}`` (selected by
  name or predicate) maps the layer's input units (own group) to its hidden
  group. ``nn.RNNCell``/``LSTMCell``/``GRUCell`` likewise.
- ``nn.Linear``: rows are output units, columns input units, one group each.
- ``nn.Conv1d/2d/3d``: rows are output channels, columns input channels; the
  penalty uses the L2 norm of each kernel slice.

Pruning
-------
``torch.nn.utils.prune`` replaces parameter ``w`` by ``w_orig`` and a buffer
``w_mask`` and recomputes ``w`` in a forward pre-hook. Terms keep the name
``w``; the effective weight is read as ``w_orig * w_mask`` at every call (so it
is never stale), and fused gradients go to ``w_orig``.
"""

from __future__ import annotations

import re
import weakref
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .base import KINDS, Backend, TargetLayout, TargetSpec, register_backend

__all__ = ["TorchBackend", "PriorSet", "Term", "Embedding", "module_device_dtype", "weight_entries",
           "effective_weight", "priors_of"]

_HH = re.compile(r"^weight_hh_l(\d+)(_reverse)?$")
_IH = re.compile(r"^weight_ih_l(\d+)(_reverse)?$")
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CELLS = (nn.RNNCell, nn.LSTMCell, nn.GRUCell)


def module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a module's first floating parameter or buffer.

    Falls back to the CPU and torch's default dtype for modules without any.
    """
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


# ------------------------------------------------------------ weight access
def _is_pruned(module: nn.Module, attr: str) -> bool:
    return (attr + "_orig") in module._parameters and (attr + "_mask") in module._buffers


def weight_entries(model: nn.Module) -> list[tuple[str, nn.Module, str, str, Tensor]]:
    """Every parameter of ``model`` as ``(name, module, module_name, attr, parameter)``.

    ``name``/``attr`` are pruning-free (``w`` for a pruned ``w_orig``);
    ``parameter`` is the stored leaf (``w_orig`` when pruned). Shared
    parameters are listed once.
    """
    seen: set[int] = set()
    out = []
    for mod_name, module in model.named_modules():
        for pname, param in module._parameters.items():
            if param is None or id(param) in seen:
                continue
            seen.add(id(param))
            attr = pname
            if pname.endswith("_orig") and (pname[:-5] + "_mask") in module._buffers:
                attr = pname[:-5]
            full = f"{mod_name}.{attr}" if mod_name else attr
            out.append((full, module, mod_name, attr, param))
    return out


def effective_weight(module: nn.Module, attr: str) -> Tensor:
    """The weight the layer computes with: ``orig * mask`` if pruned."""
    if _is_pruned(module, attr):
        return module._parameters[attr + "_orig"] * module._buffers[attr + "_mask"]
    return module._parameters[attr]


def stored_parameter(module: nn.Module, attr: str) -> nn.Parameter:
    """The leaf parameter behind ``attr`` (``attr_orig`` if pruned)."""
    if _is_pruned(module, attr):
        return module._parameters[attr + "_orig"]
    return module._parameters[attr]


# ------------------------------------------------------------------ layouts
def _layout(name: str, module: nn.Module, mod_name: str, attr: str, param: Tensor) -> Optional[TargetLayout]:
    """The neuron layout of one parameter, or None if it has none (biases...)."""
    shape = tuple(param.shape)
    prefix = f"{mod_name}." if mod_name else ""
    if isinstance(module, nn.RNNBase):
        gates = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}.get(module.mode, 1)
        h = module.hidden_size
        m = _HH.match(attr)
        if m:
            suffix = f"_l{m.group(1)}{m.group(2) or ''}"
            group = f"{prefix}hidden{suffix}"
            in_group = group if getattr(module, "proj_size", 0) == 0 else f"{prefix}proj{suffix}"
            return TargetLayout(name, "recurrent", shape, h, shape[1], group, in_group, blocks=gates)
        m = _IH.match(attr)
        if m:
            suffix = f"_l{m.group(1)}{m.group(2) or ''}"
            return TargetLayout(name, "linear", shape, h, shape[1], f"{prefix}hidden{suffix}",
                                f"{name}.in", blocks=gates)
    if isinstance(module, _CELLS):
        h = module.hidden_size
        blocks = shape[0] // h
        if attr == "weight_hh":
            return TargetLayout(name, "recurrent", shape, h, shape[1], f"{prefix}hidden", f"{prefix}hidden",
                                blocks=blocks)
        if attr == "weight_ih":
            return TargetLayout(name, "linear", shape, h, shape[1], f"{prefix}hidden", f"{name}.in",
                                blocks=blocks)
    if isinstance(module, nn.Linear) and attr == "weight":
        return TargetLayout(name, "linear", shape, shape[0], shape[1], f"{prefix}out", f"{prefix}in")
    if isinstance(module, _CONV) and attr == "weight":
        return TargetLayout(name, "conv", shape, module.out_channels, module.in_channels, f"{prefix}out",
                            f"{prefix}in", groups=module.groups, slice_norm=True)
    if isinstance(module, (nn.modules.conv._ConvTransposeNd,)):
        return None
    if len(shape) == 2:
        return TargetLayout(name, "linear", shape, shape[0], shape[1], f"{name}.out", f"{name}.in")
    if len(shape) >= 3:
        return TargetLayout(name, "conv", shape, shape[0], shape[1], f"{name}.out", f"{name}.in",
                            slice_norm=True)
    return None


def _kind_matches(kind: str, module: nn.Module, layout: Optional[TargetLayout]) -> bool:
    if layout is None:
        return False
    if kind == "recurrent":
        return layout.kind == "recurrent" and isinstance(module, (nn.RNNBase,) + _CELLS)
    if kind == "linear":
        return isinstance(module, nn.Linear) and layout.name.endswith("weight")
    if kind == "conv":
        return isinstance(module, _CONV) and layout.name.endswith("weight")
    return False


class TorchBackend(Backend):
    """Backend for ``torch.nn.Module`` models (CPU or GPU)."""

    name = "torch"

    def accepts(self, model: Any) -> bool:
        return isinstance(model, nn.Module)

    def find_targets(self, model: nn.Module, targets: TargetSpec = "recurrent") -> list[TargetLayout]:
        entries = weight_entries(model)
        layouts = [(_layout(*e), e) for e in entries]
        by_name = {e[0]: (lay, e) for lay, e in layouts}
        raw_names = {}
        for lay, e in layouts:
            raw_names[e[0]] = e[0]
            raw_names[_raw_name(e)] = e[0]
        chosen: list[str] = []

        def add(name: str):
            if name not in chosen:
                chosen.append(name)

        def describe(kind: str) -> str:
            kinds = {k for lay, ent in layouts for k in KINDS if _kind_matches(k, ent[1], lay)}
            found = ", ".join(sorted(kinds)) or "none"
            return (f"targets={kind!r} matched no weight in {type(model).__name__} (kinds present: {found}; "
                    f"parameters: {', '.join(list(by_name)[:12])}{' ...' if len(by_name) > 12 else ''})")

        if isinstance(targets, str):
            targets_list, single = [targets], True
        elif callable(targets):
            for lay, e in layouts:
                # the predicate only sees weights with a neuron layout (>= 2 dimensions)
                if lay is not None and targets(e[0], effective_weight(e[1], e[3])):
                    add(e[0])
            if not chosen:
                raise ValueError(f"the targets predicate matched no parameter of {type(model).__name__}")
            return [by_name[n][0] for n in chosen]
        elif isinstance(targets, (list, tuple)) and targets and all(isinstance(t, str) for t in targets):
            targets_list, single = list(targets), False
        else:
            raise TypeError(
                "targets must be 'recurrent', 'linear', 'conv', a non-empty list of those and/or "
                f"parameter names, or a predicate (name, weight) -> bool; got {targets!r}"
            )
        for t in targets_list:
            if t in KINDS:
                hits = [e[0] for lay, e in layouts if _kind_matches(t, e[1], lay)]
                if not hits:
                    raise ValueError(describe(t))
                for h in hits:
                    add(h)
            elif t in raw_names:
                name = raw_names[t]
                lay, e = by_name[name]
                if lay is None:
                    raise ValueError(
                        f"target {t!r} has shape {tuple(e[4].shape)} and no neuron layout; a target must "
                        "be a weight with >= 2 dimensions (not a bias)"
                    )
                add(name)
            else:
                if single:
                    raise ValueError(f"targets must be one of {KINDS}, a list of names, or a predicate; got {t!r}")
                raise ValueError(
                    f"target {t!r} is neither a kind {KINDS} nor a parameter of {type(model).__name__} "
                    f"(parameters: {', '.join(list(by_name)[:12])}{' ...' if len(by_name) > 12 else ''})"
                )
        return [by_name[n][0] for n in chosen]

    def read_weight(self, model: nn.Module, name: str) -> Tensor:
        module, attr = _resolve(model, name)
        return effective_weight(module, attr)

    def build(self, model: nn.Module, prior, layouts: list[TargetLayout], *, points: Optional[dict] = None,
              generator: Optional[torch.Generator] = None) -> "PriorSet":
        return PriorSet(model, prior, layouts, points=points, generator=generator)


def _raw_name(entry) -> str:
    full, module, mod_name, attr, param = entry
    stored = attr + "_orig" if _is_pruned(module, attr) else attr
    return f"{mod_name}.{stored}" if mod_name else stored


def _resolve(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    mod_name, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(mod_name) if mod_name else model
    except AttributeError:
        raise ValueError(f"{type(model).__name__} has no submodule {mod_name!r} (from {name!r})") from None
    if attr not in module._parameters and not _is_pruned(module, attr):
        raise ValueError(f"{type(model).__name__} has no parameter {name!r}")
    return module, attr


# ----------------------------------------------------------------- modules
_ATTACHED: "weakref.WeakKeyDictionary[nn.Module, weakref.WeakSet]" = weakref.WeakKeyDictionary()


def priors_of(model: nn.Module) -> list["PriorSet"]:
    """The live prior sets attached to ``model`` (used by ``lottery_reset``)."""
    return list(_ATTACHED.get(model, ()))


def _key(name: str) -> str:
    return name.replace(".", ":")


class Embedding(nn.Module):
    """Points of one neuron group on a manifold.

    Fixed embeddings are a buffer ``points``; trained ones a parameter ``u``
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


# Entries per row chunk when recomputing trained coefficients: small enough for
# the chunk's temporaries to stay in cache, large enough to amortize Python.
_CHUNK_ENTRIES = 2**18


class _FixedPenalty(torch.autograd.Function):
    """``sum C |W|^l`` with a hand-written backward (no autograd temporaries)."""

    @staticmethod
    def forward(ctx, weight, coeff, term):
        from ..regularizers.priors import weighted_penalty

        ctx.save_for_backward(weight, coeff)
        ctx.term = term
        return weighted_penalty(weight, coeff, term.exponent, slice_norm=term.layout.slice_norm,
                                reduction=term.reduction, workspace=term._workspace(weight))

    @staticmethod
    def backward(ctx, grad_out):
        from ..regularizers.priors import penalty_gradient

        weight, coeff = ctx.saved_tensors
        term = ctx.term
        g = penalty_gradient(weight, coeff, term.exponent, slice_norm=term.layout.slice_norm,
                             reduction=term.reduction)
        return g.mul_(grad_out), None, None


def _live_pass(term, p_out: Tensor, p_in: Optional[Tensor], weight: Tensor, *,
               weight_grad: Optional[Tensor] = None, alpha: float = 1.0, accumulate: bool = False):
    """Value, point gradients and (optionally) weight gradient of a trained term.

    One sweep over row chunks of output neurons: for each chunk the
    distances are built for ``chunk x n_in`` entries, ``f`` and ``f'`` come in
    closed form, the distance graph is differentiated at once, and the
    chunk's rows of ``dR/dW`` are written. No ``(n, n)`` autograd temporaries
    and no ``(n, n, k)`` ones; no full coefficient matrix is stored.

    Parameters
    ----------
    weight_grad : Tensor, optional
        Shaped like ``weight``: receives ``alpha * dR/dW`` (added to it when
        ``accumulate``, else overwritten).

    Returns
    -------
    value : Tensor, shape=[]
    g_out : Tensor, shape=[n_out, coord_dim]
    g_in : Tensor or None, shape=[n_in, coord_dim] (None when shared)
    """
    from ..regularizers.priors import magnitude, penalty_gradient

    lay = term.layout
    prior = term.prior
    n_out, cols, blocks = lay.n_out, lay.n_in // lay.groups, lay.blocks
    scale = 1.0 / (blocks * n_out * cols) if term.reduction == "mean" else 1.0
    w = weight.detach()
    wv = w.view(blocks, n_out, *w.shape[1:])
    gv = None if weight_grad is None else weight_grad.view(blocks, n_out, *w.shape[1:])
    x = p_out.detach()
    y = x if p_in is None else p_in.detach()
    g_out = torch.zeros_like(x)
    g_in = None if p_in is None else torch.zeros_like(y)
    value = torch.zeros((), dtype=w.dtype, device=w.device)
    step = max(1, _CHUNK_ENTRIES // max(1, y.shape[0] * blocks))
    with torch.enable_grad():
        yl = y.detach().requires_grad_(True)
        for r0 in range(0, n_out, step):
            r1 = min(n_out, r0 + step)
            rows = r1 - r0
            w_chunk = wv[:, r0:r1].reshape(blocks * rows, *w.shape[1:])
            with torch.no_grad():
                a = magnitude(w_chunk, term.exponent, lay.slice_norm).reshape(blocks, rows, cols).sum(0)
            xl = x[r0:r1].detach().requires_grad_(True)
            d = prior.manifold.cdist(xl, yl, validate=False)
            if lay.groups > 1:
                c = _group_gather(prior.inhibitor(d), lay.groups, row0=r0, n_out=n_out)
                s = (c * a).sum()
                gx, gy = torch.autograd.grad(s, (xl, yl))
                c = c.detach()
            else:
                # closed-form f' (no autograd graph through the inhibitor)
                c, fprime = prior.inhibitor.value_and_derivative(d.detach())
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
                    g = penalty_gradient(w_chunk, c, term.exponent, slice_norm=lay.slice_norm,
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


class _LivePenalty(torch.autograd.Function):
    """A trained term: forward computes the value and every gradient in one sweep.

    Backward only scales the stored gradients, so it supports a single
    backward pass (``retain_graph`` re-use raises).
    """

    @staticmethod
    def forward(ctx, p_out, p_in, weight, term):
        gw = torch.empty_like(weight, memory_format=torch.contiguous_format) if weight.requires_grad else None
        value, g_out, g_in = _live_pass(term, p_out, p_in, weight, weight_grad=gw)
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
        return g_out.mul_(grad_out), (None if ctx.shared else g_in.mul_(grad_out)), gw, None


class Term(nn.Module):
    """The prior on one weight.

    Attributes
    ----------
    name : str
        The weight's name in ``model.named_parameters()`` (before pruning).
    layout : TargetLayout
    kind : str
    """

    def __init__(self, layout: TargetLayout, module: nn.Module, attr: str, prior, emb_out, emb_in,
                 coeff: Optional[Tensor], live: bool):
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
        self.register_buffer("coeff", coeff if coeff is not None else torch.empty(0))

    # ----------------------------------------------------------- geometry
    @property
    def points_out(self) -> Optional[Tensor]:
        """Embedding of the rows' neurons, shape=[n_out, coord_dim] (None for L1)."""
        return None if self._emb_out is None else self._emb_out.points

    @property
    def points_in(self) -> Optional[Tensor]:
        """Embedding of the columns' neurons, shape=[n_in, coord_dim]; the same
        tensor object as ``points_out`` for a recurrent matrix with fixed
        embedding."""
        return None if self._emb_in is None else self._emb_in.points

    def weight(self) -> Tensor:
        """The effective weight (``orig * mask`` if pruned)."""
        return effective_weight(self._module, self._attr)

    def parameter(self) -> nn.Parameter:
        """The stored leaf that receives gradients (``<name>_orig`` if pruned)."""
        return stored_parameter(self._module, self._attr)

    def _base(self) -> Optional[Tensor]:
        """Coefficients broadcastable to ``(blocks, n_out, n_in // groups)``; None for L1."""
        if self._emb_out is None:
            return None
        if not self.live:
            return self.coeff
        return self._live_base()

    def _live_base(self) -> Tensor:
        """Coefficients recomputed from the (trained) embeddings, shape=[n_out, n_in // groups]."""
        p_out = self._emb_out.points
        p_in = None if self._emb_in is self._emb_out else self._emb_in.points
        c = self.prior.coefficients(p_out, p_in, validate=False)
        return _group_gather(c, self.layout.groups)

    def coefficients(self) -> Tensor:
        """``f(d(i(j), i(k)))`` with the weight's shape for matrices (gate
        blocks repeat the neurons' coefficients) and ``(out_channels,
        in_channels // groups)`` for convolutions. All ones for L1."""
        lay = self.layout
        base = self._base()
        rows, cols = lay.coefficient_shape
        if base is None:
            dev, dt = self.weight().device, self.weight().dtype
            return torch.ones(rows, cols, device=dev, dtype=dt)
        return base.expand(lay.blocks, lay.n_out, cols).reshape(rows, cols)

    # ------------------------------------------------------------ penalty
    def penalty(self) -> Tensor:
        """This term of Eq. 6, shape=[]."""
        w = self.weight()
        base = None if self.live else self._base()
        if self._emb_out is None:  # L1 on every entry, exactly sum |w|
            total = w.abs().sum()
            return total / w.numel() if self.reduction == "mean" else total
        if self.live and not torch.is_grad_enabled():
            from ..regularizers.priors import weighted_penalty

            return weighted_penalty(w, self._live_base(), self.exponent, slice_norm=self.layout.slice_norm,
                                    reduction=self.reduction)
        if self.live:
            shared = self._emb_in is self._emb_out
            return _LivePenalty.apply(self._emb_out.points, None if shared else self._emb_in.points, w, self)
        return _FixedPenalty.apply(w, base, self)

    def _workspace(self, like: Tensor) -> Tensor:
        """Scratch memory shaped like the weight, reused across calls."""
        ws = self.__dict__.get("_ws")
        if ws is None or ws.shape != like.shape or ws.dtype != like.dtype or ws.device != like.device:
            ws = torch.empty_like(like, memory_format=torch.contiguous_format)
            self.__dict__["_ws"] = ws
        return ws

    def extra_repr(self) -> str:
        return f"name={self.name!r}, kind={self.kind}, shape={self.layout.shape}, live={self.live}"


def _group_gather(c: Tensor, groups: int, *, row0: int = 0, n_out: Optional[int] = None) -> Tensor:
    """(out, in) coefficients -> (out, in // groups) for a grouped convolution.

    ``c`` may hold the rows ``row0 : row0 + len(c)`` of ``n_out`` output channels.
    """
    if groups == 1:
        return c
    rows, cin = c.shape
    n_out = rows if n_out is None else n_out
    ipg, opg = cin // groups, n_out // groups
    out_idx = torch.arange(row0, row0 + rows, device=c.device)
    idx = (out_idx // opg)[:, None] * ipg + torch.arange(ipg, device=c.device)
    return torch.gather(c, 1, idx)


class PriorSet(nn.Module):
    """The priors attached to one model (returned by :func:`moduli.regularizers.attach`).

    Holds the embeddings (buffers, or parameters when trained) and the
    coefficient matrices of every target; the model itself is not changed.

    Attributes
    ----------
    terms : dict of str to Term
        One term per target weight, keyed by its name in
        ``model.named_parameters()`` (the name before pruning).
    embeddings : dict of str to Embedding
        One embedding per neuron group.
    check_finite : bool
        ``penalty()`` raises ``ValueError`` on a NaN/inf result, naming the
        weight (one scalar device sync per call). Set False to skip.
    """

    def __init__(self, model: nn.Module, prior, layouts: list[TargetLayout], *, points: Optional[dict] = None,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        from ..regularizers.priors import L1Prior, ModuliPrior, Prior, ShuffledPrior

        if not isinstance(prior, Prior):
            raise TypeError(
                f"prior must be a ModuliPrior, L1Prior or ShuffledPrior; got {type(prior).__name__}"
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        if points is not None and not isinstance(points, dict):
            raise TypeError(f"points must be a dict from neuron group or weight name to a tensor; got "
                            f"{type(points).__name__}")
        self.prior = prior
        self.check_finite = True
        self._frozen = False
        object.__setattr__(self, "_model", weakref.ref(model))
        device, dtype = module_device_dtype(model)
        self.emb = nn.ModuleDict()
        self.term = nn.ModuleDict()
        moduli = prior.prior if isinstance(prior, ShuffledPrior) else prior
        gen = generator if generator is not None else getattr(prior, "generator", None)
        groups = _group_sizes(layouts)
        points = _expand_points(points or {}, layouts, groups)
        if isinstance(moduli, ModuliPrior):
            for group, n in groups.items():
                pts = points.get(group)
                if pts is None:
                    pts = moduli.manifold.random_uniform(
                        n, generator=gen, dtype=dtype,
                        device=gen.device if gen is not None else device,
                    ).to(device=device, dtype=dtype)
                else:
                    pts = _check_points(moduli.manifold, pts, group, n).to(device=device, dtype=dtype)
                self.emb[_key(group)] = Embedding(moduli.manifold, pts, moduli.trainable)
        for lay in layouts:
            module, attr = _resolve(model, lay.name)
            if isinstance(prior, L1Prior):
                term = Term(lay, module, attr, prior, None, None, None, live=False)
            else:
                e_out = self.emb[_key(lay.out_group)]
                e_in = self.emb[_key(lay.in_group)]
                live = moduli.trainable
                coeff = None
                if not live or isinstance(prior, ShuffledPrior):
                    with torch.no_grad():
                        c = moduli.coefficients(e_out.points, None if lay.shared else e_in.points)
                        c = _group_gather(c, lay.groups)
                        if isinstance(prior, ShuffledPrior):
                            full = c.expand(lay.blocks, *c.shape).reshape(-1)
                            perm = torch.randperm(full.numel(), generator=gen,
                                                  device=gen.device if gen is not None else "cpu")
                            c = full[perm.to(full.device)].reshape(lay.blocks, *c.shape)
                        coeff = c.contiguous()
                else:
                    with torch.no_grad():
                        coeff = torch.zeros(lay.n_out, lay.n_in // lay.groups, device=device, dtype=dtype)
                term = Term(lay, module, attr, moduli, e_out, e_in, coeff, live=live)
                term.prior = moduli
            term.reduction = prior.reduction
            self.term[_key(lay.name)] = term
        self.terms: dict[str, Term] = {t.name: t for t in self.term.values()}
        self.embeddings: dict[str, Embedding] = {k.replace(":", "."): v for k, v in self.emb.items()}
        _ATTACHED.setdefault(model, weakref.WeakSet()).add(self)

    # --------------------------------------------------------------- main
    def _follow_model(self) -> None:
        """Move buffers/embeddings to the model's device and dtype if it moved."""
        if not self.terms:
            return
        w = next(iter(self.terms.values())).parameter()  # the stored leaf: no computation
        for t in self.term.values():
            if t.coeff.numel() and (t.coeff.device != w.device or t.coeff.dtype != w.dtype):
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
            w = term.weight().detach()
            if not bool(torch.isfinite(w).all()):
                bad = int((~torch.isfinite(w)).sum())
                raise ValueError(
                    f"weight {term.name} of shape {tuple(w.shape)} has {bad} NaN/inf entries; the prior "
                    "penalty is not finite"
                )
        raise ValueError("the prior penalty is not finite (the embeddings or coefficients contain NaN/inf)")

    def add_penalty_grad_(self, lam: float) -> Optional[Tensor]:
        """Fused gradient step: add ``lam * d penalty / dW`` to each weight's ``.grad``.

        Like decoupled weight decay, this skips the autograd graph of the
        penalty: ``grad += lam * l * C * sign(W) * |W|^(l-1)`` per entry (per
        kernel slice ``lam * l * C * ||T||^(l-2) * T`` for convolutions). Call
        it after ``loss.backward()`` and before ``optimizer.step()``, instead
        of adding ``lam * penalty()`` to the loss. Pruned weights receive the
        gradient on ``<name>_orig`` (zero where the mask is zero). Trained
        embeddings receive ``lam * d penalty / d u`` as well (coefficients
        recomputed in row chunks, as in :meth:`penalty`).

        Parameters
        ----------
        lam : float
            The regularizing factor.

        Returns
        -------
        Tensor or None
            The penalty value (detached) when ``check_finite`` is true, else None.
        """
        from ..regularizers.priors import penalty_gradient, weighted_penalty

        if isinstance(lam, bool) or not isinstance(lam, (int, float)):
            raise TypeError(f"lam must be a real number; got {type(lam).__name__}")
        lam = float(lam)
        self._follow_model()
        value = None
        points, point_grads = [], []
        for term in self.terms.values():
            with torch.no_grad():
                w = term.weight().detach()
                param = term.parameter()
                v = None
                if term._emb_out is None:  # L1
                    g = torch.sign(w, out=term._workspace(w))
                    scale = lam / w.numel() if term.reduction == "mean" else lam
                    if self.check_finite:
                        v = w.abs().sum() / (w.numel() if term.reduction == "mean" else 1)
                else:
                    scale = lam
                    if term.live:
                        shared = term._emb_in is term._emb_out
                        with torch.enable_grad():
                            p_out = term._emb_out.points
                            p_in = None if shared else term._emb_in.points
                        if param.grad is None:
                            param.grad = torch.zeros_like(param)
                        v, g_out, g_in = _live_pass(term, p_out, p_in, w, weight_grad=param.grad,
                                                    alpha=lam, accumulate=True)
                        points.append(p_out)
                        point_grads.append(g_out.mul_(lam))
                        if not shared:
                            points.append(p_in)
                            point_grads.append(g_in.mul_(lam))
                        if v is not None:
                            value = v if value is None else value + v
                        continue
                    else:
                        base = term._base()
                        if self.check_finite:
                            v = weighted_penalty(w, base, term.exponent, slice_norm=term.layout.slice_norm,
                                                 reduction=term.reduction, workspace=term._workspace(w))
                    g = penalty_gradient(w, base, term.exponent, slice_norm=term.layout.slice_norm,
                                         reduction=term.reduction, out=term._workspace(w))
                if param.grad is None:
                    param.grad = g.mul(scale)
                else:
                    param.grad.add_(g, alpha=scale)
                if v is not None:
                    value = v if value is None else value + v
        if points:
            torch.autograd.backward(points, point_grads)
        if not self.check_finite:
            return None
        if not bool(torch.isfinite(value)):
            self._raise_not_finite()
        return value

    # ------------------------------------------------------------- freezing
    @property
    def frozen(self) -> bool:
        """Whether trained embeddings are frozen."""
        return self._frozen

    def freeze(self) -> "PriorSet":
        """Stop training the embeddings (the lottery phase).

        Sets ``requires_grad=False`` on every embedding parameter and caches
        the coefficients once, so later penalties cost as much as a fixed
        embedding's. Returns ``self``.
        """
        for emb in self.emb.values():
            if emb.trainable:
                emb.u.requires_grad_(False)
        with torch.no_grad():
            for term in self.term.values():
                if term.live:
                    term.live = False
                    term._was_live = True
                    term.coeff = term._live_base().detach().clone()
        self._frozen = True
        return self

    def unfreeze(self) -> "PriorSet":
        """Undo :meth:`freeze`: embeddings train again. Returns ``self``."""
        for emb in self.emb.values():
            if emb.trainable:
                emb.u.requires_grad_(True)
        for term in self.term.values():
            if getattr(term, "_was_live", False):
                term.live = True
        self._frozen = False
        return self

    def get_extra_state(self) -> dict:
        return {"frozen": self._frozen}

    def set_extra_state(self, state: dict) -> None:
        if state.get("frozen", False):
            self._frozen = True
            for emb in self.emb.values():
                if emb.trainable:
                    emb.u.requires_grad_(False)
            for term in self.term.values():
                if term.live:
                    term.live = False
                    term._was_live = True
        else:
            self.unfreeze()

    def extra_repr(self) -> str:
        return f"prior={self.prior!r}, targets={list(self.terms)}, frozen={self._frozen}"



def _group_sizes(layouts: list[TargetLayout]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for lay in layouts:
        for group, n in ((lay.out_group, lay.n_out), (lay.in_group, lay.n_in)):
            if sizes.setdefault(group, n) != n:
                raise ValueError(f"neuron group {group!r} has inconsistent sizes {sizes[group]} and {n}")
    return sizes


def _expand_points(points: dict, layouts: list[TargetLayout], groups: dict) -> dict:
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


register_backend(TorchBackend())
