"""The one module that knows how torch models store their weights.

Everything else in :mod:`moduli` -- priors, pruning, geodesic sparsification,
analysis and the experiment runner -- reads and changes a model's weights only
through the functions here:

* **which weights, and which neurons they connect**: :class:`TargetLayout`,
  :func:`find_targets` (the target specs ``"recurrent"``, ``"linear"``,
  ``"conv"``, names or a predicate), :func:`weight_names`,
  :func:`weight_entries`, :func:`resolve`;
* **what a layer computes with**: :func:`effective_weight` (``orig * mask``
  after pruning) and :func:`stored_parameter` (the leaf receiving gradients);
* **the pruning reparametrization** of ``torch.nn.utils.prune`` -- parameter
  ``w`` becomes ``w_orig`` and a buffer ``w_mask``, and ``w`` is recomputed as
  their product before each forward: :func:`is_pruned`, :func:`pruned_weights`,
  :func:`install_mask`, :func:`reapply_mask`, :func:`masks`,
  :func:`restore_masks`, :func:`direct_parameters`, :func:`strip_pruning`,
  :func:`finalize_pruning`, :func:`effective_from_state`, :func:`plain_state`;
* **measurements**: :func:`sparsity` and :func:`module_device_dtype`.

Names are always *pruning-free*: ``"rnn.weight_hh_l0"``, never
``"rnn.weight_hh_l0_orig"``. Functions taking ``(module, name)`` accept the
owning module and an attribute name, or any ancestor and a dotted path.

Neuron layouts found by :func:`find_targets`
--------------------------------------------
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
- ``nn.MultiheadAttention`` (kind ``"attention"``): the packed
  ``in_proj_weight`` ``[3E, E]`` has 3 blocks (q, k, v) of ``E`` rows, the
  attention units, ordered by head (head ``h`` owns rows ``h * E / heads`` to
  ``(h + 1) * E / heads - 1`` of each block). One embedding of the ``E``
  units (group ``"<module>.heads"``) serves the three blocks, as gate blocks
  share one; the ``E`` input columns are group ``"<module>.in"``.
  ``out_proj.weight`` reads the same units: its columns are group
  ``"<module>.heads"``. With ``kdim``/``vdim`` set, ``q/k/v_proj_weight``
  map groups ``"<module>.in"``, ``"<module>.key_in"``, ``"<module>.value_in"``
  to ``"<module>.heads"``.

Parametrized weights
--------------------
A weight registered with ``torch.nn.utils.parametrize`` (weight norm,
spectral norm, orthogonal, or a constraint of your own) is a target by the
layer's attribute (``"0.weight"``; ``"0.parametrizations.weight.original"``
is accepted as an alias): :func:`effective_weight` is the weight the layer
computes with, gradients reach the parametrization's originals through it,
and :func:`install_mask` prunes it with a :class:`PruningMask` appended to
its chain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize as _pz
from torch.nn.utils import prune

__all__ = [
    "KINDS", "TargetSpec", "TargetLayout", "WeightEntry", "find_targets", "weight_entries", "weight_names",
    "resolve", "effective_weight", "stored_parameter", "stored_parameters", "weight_shape", "is_pruned",
    "is_parametrized", "PruningMask", "remove_parametrizations", "mask_of", "pruned_weights",
    "install_mask", "reapply_mask", "masks", "restore_masks", "direct_parameters", "strip_pruning",
    "finalize_pruning", "plain_state", "effective_from_state", "sparsity", "module_device_dtype",
]

KINDS = ("recurrent", "linear", "conv", "attention")

#: What ``attach(..., targets=...)`` accepts: a kind, a list of kinds and/or
#: parameter names, or a predicate ``(name, weight) -> bool``.
TargetSpec = Union[str, Sequence[str], Callable[[str, Any], bool]]

_ORIG, _MASK = "_orig", "_mask"


@dataclass(frozen=True)
class TargetLayout:
    """How one weight's entries map to pairs of neurons.

    A weight of shape ``(blocks * n_out, n_in // groups, *kernel)`` connects
    ``n_in`` input neurons (columns) to ``n_out`` output neurons (rows); the
    ``blocks`` gate blocks of an LSTM/GRU recurrent matrix all connect the
    same neurons. Neurons are named by *groups*: two weights with the same
    ``out_group`` share one embedding of their rows.

    Attributes
    ----------
    name : str
        The parameter's name in the model, as before any pruning
        (``"rnn.weight_hh_l0"``, never ``"rnn.weight_hh_l0_orig"``).
    kind : {"recurrent", "linear", "conv"}
    shape : tuple of int
        The weight's shape.
    n_out, n_in : int
        Number of output (row) and input (column) neurons.
    out_group, in_group : str
        Embedding keys; equal for a square recurrent matrix.
    blocks : int
        Gate blocks stacked along the rows (4 for LSTM, 3 for GRU, else 1).
    groups : int
        Convolution groups: output channel ``o`` sees input channels
        ``(o // (n_out // groups)) * (n_in // groups) + j``.
    slice_norm : bool
        Penalize the L2 norm of each kernel slice ``T[o, i]`` (convolutions).
    """

    name: str
    kind: str
    shape: tuple
    n_out: int
    n_in: int
    out_group: str
    in_group: str
    blocks: int = 1
    groups: int = 1
    slice_norm: bool = False

    @property
    def shared(self) -> bool:
        """Rows and columns are the same neurons (one embedding)."""
        return self.out_group == self.in_group

    @property
    def coefficient_shape(self) -> tuple:
        """Shape of a term's coefficients: the weight's shape for matrices,
        ``(out_channels, in_channels // groups)`` for convolutions."""
        return (self.blocks * self.n_out, self.n_in // self.groups)

    @property
    def rows(self) -> int:
        """Rows of the coefficients: ``blocks * n_out``."""
        return self.blocks * self.n_out

    @property
    def cols(self) -> int:
        """Columns of the coefficients: ``n_in // groups``."""
        return self.n_in // self.groups


class WeightEntry(NamedTuple):
    """One parameter of a model, see :func:`weight_entries`."""

    name: str            # pruning-free qualified name
    module: nn.Module    # the module owning it
    module_name: str     # that module's qualified name ("" for the model itself)
    attr: str            # pruning-free attribute name
    parameter: Tensor    # the stored leaf (``attr_orig`` when pruned)


# ------------------------------------------------------------ the reparametrization
def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    return resolve(module, name)


class PruningMask(nn.Module):
    """The pruning mask of a parametrized weight: a parametrization ``X -> X * mask``.

    :func:`install_mask` appends it to the chain of a weight registered with
    ``torch.nn.utils.parametrize`` (weight norm, spectral norm, orthogonal,
    ...), so the mask applies to the weight the layer computes with. The mask
    is the buffer ``mask`` (saved in the model's ``state_dict`` as
    ``<module>.parametrizations.<attr>.<index>.mask``). Assigning to the
    weight passes the value through unchanged (``right_inverse`` is the
    identity): the parametrizations before it receive it.
    """

    def __init__(self, mask: Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, X: Tensor) -> Tensor:
        return X * self.mask

    def right_inverse(self, X: Tensor) -> Tensor:
        return X


def _parametrized(owner: nn.Module, attr: str) -> bool:
    return _pz.is_parametrized(owner, attr)


def _mask_module(owner: nn.Module, attr: str) -> Optional[PruningMask]:
    """The :class:`PruningMask` in the parametrization chain of ``attr``, or None."""
    if not _parametrized(owner, attr):
        return None
    for p in owner.parametrizations[attr]:
        if isinstance(p, PruningMask):
            return p
    return None


def _torch_pruned(owner: nn.Module, attr: str) -> bool:
    """Reparametrized by ``torch.nn.utils.prune`` (``attr_orig`` and ``attr_mask``)."""
    return (attr + _ORIG) in owner._parameters and (attr + _MASK) in owner._buffers


def _pruned(owner: nn.Module, attr: str) -> bool:
    """:func:`is_pruned` for an attribute of ``owner`` itself (no name resolution)."""
    return _torch_pruned(owner, attr) or _mask_module(owner, attr) is not None


def is_pruned(module: nn.Module, name: str) -> bool:
    """Whether ``name`` has a pruning mask: ``torch.nn.utils.prune``'s ``name_orig`` and
    ``name_mask``, or a :class:`PruningMask` in its parametrization chain."""
    return _pruned(*_owner(module, name))


def is_parametrized(module: nn.Module, name: str) -> bool:
    """Whether ``name`` is computed by ``torch.nn.utils.parametrize`` (weight norm, spectral norm, ...)."""
    return _parametrized(*_owner(module, name))


def mask_of(module: nn.Module, name: str) -> Optional[Tensor]:
    """The pruning mask buffer of ``name`` (the live buffer, not a copy), or None."""
    module, attr = _owner(module, name)
    if _torch_pruned(module, attr):
        return module._buffers[attr + _MASK]
    pm = _mask_module(module, attr)
    return None if pm is None else pm.mask


def effective_weight(module: nn.Module, name: str) -> Tensor:
    """The weight the layer computes with: ``orig * mask`` when pruned, the output of the
    parametrization chain when parametrized (mask included), else the parameter.

    Computed afresh at each call (never stale, differentiable in ``orig`` or in
    the parametrization's originals).
    """
    module, attr = _owner(module, name)
    if _torch_pruned(module, attr):
        return module._parameters[attr + _ORIG] * module._buffers[attr + _MASK]
    if _parametrized(module, attr):
        return getattr(module, attr)
    return module._parameters[attr]


def stored_parameters(module: nn.Module, name: str) -> tuple:
    """Every leaf parameter behind ``name``: ``(name_orig,)`` when pruned, the originals of a
    parametrization (``(original,)``, or ``(original0, original1)`` for weight norm), else ``(name,)``."""
    module, attr = _owner(module, name)
    if _parametrized(module, attr):
        plist = module.parametrizations[attr]
        if "original" in plist._parameters:
            return (plist.original,)
        return tuple(p for key, p in sorted(plist._parameters.items()) if key.startswith("original"))
    return (stored_parameter(module, attr),)


def stored_parameter(module: nn.Module, name: str) -> nn.Parameter:
    """The leaf parameter behind ``name`` (``name_orig`` when pruned, ``.original`` of a
    parametrized weight): what optimizers update.

    Raises
    ------
    ValueError
        If ``name`` is parametrized from several tensors (weight norm's
        ``original0`` and ``original1``): use :func:`stored_parameters`.
    """
    module, attr = _owner(module, name)
    if _torch_pruned(module, attr):
        return module._parameters[attr + _ORIG]
    if _parametrized(module, attr):
        leaves = stored_parameters(module, attr)
        if len(leaves) != 1:
            raise ValueError(f"{attr} of {type(module).__name__} is parametrized from {len(leaves)} tensors "
                             "(original0, original1, ...); use moduli.targets.stored_parameters")
        return leaves[0]
    return module._parameters[attr]


def weight_shape(module: nn.Module, name: str) -> tuple:
    """The shape of the weight the layer computes with (of a parametrization's output when parametrized)."""
    module, attr = _owner(module, name)
    if _parametrized(module, attr):
        with torch.no_grad():
            return tuple(getattr(module, attr).shape)
    return tuple(stored_parameter(module, attr).shape)


def resolve(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """``(module, attr)`` owning the pruning-free parameter name ``name``.

    Raises
    ------
    ValueError
        If there is no such submodule or parameter.
    """
    mod_name, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(mod_name) if mod_name else model
    except AttributeError:
        raise ValueError(f"{type(model).__name__} has no submodule {mod_name!r} (from {name!r})") from None
    if attr not in module._parameters and not _pruned(module, attr) and not _parametrized(module, attr):
        raise ValueError(f"{type(model).__name__} has no parameter {name!r}")
    return module, attr


def direct_parameters(module: nn.Module) -> list[tuple[str, str, Tensor]]:
    """The module's own parameters as ``(stored_name, attr, parameter)``.

    ``attr`` is pruning-free (``w`` for a stored ``w_orig``); ``None`` entries are skipped.
    """
    out = []
    for pname, param in module._parameters.items():
        if param is None:
            continue
        base = pname[: -len(_ORIG)]
        attr = base if pname.endswith(_ORIG) and _torch_pruned(module, base) else pname
        out.append((pname, attr, param))
    return out


def weight_entries(model: nn.Module) -> list[WeightEntry]:
    """Every parameter of ``model`` once (shared ones at their first name), pruning-free names."""
    seen: set[int] = set()
    out = []
    for mod_name, module in model.named_modules():
        for _, attr, param in direct_parameters(module):
            if id(param) in seen:
                continue
            seen.add(id(param))
            out.append(WeightEntry(f"{mod_name}.{attr}" if mod_name else attr, module, mod_name, attr, param))
    return out


def _weights(model: nn.Module) -> list[WeightEntry]:
    """The tensors layers compute with, once each: :func:`weight_entries` with every weight
    registered with ``torch.nn.utils.parametrize`` listed as the layer's own (``"0.weight"``, its
    ``parameter`` the parametrization's output, detached) instead of its originals
    (``"0.parametrizations.weight.original"``)."""
    seen: set[int] = set()
    out = []
    with torch.no_grad():
        for mod_name, module in model.named_modules():
            if isinstance(module, _pz.ParametrizationList):
                continue
            prefix = f"{mod_name}." if mod_name else ""
            for _, attr, param in direct_parameters(module):
                if id(param) not in seen:
                    seen.add(id(param))
                    out.append(WeightEntry(prefix + attr, module, mod_name, attr, param))
            if _pz.is_parametrized(module):
                for attr, plist in module.parametrizations.items():
                    if id(plist) not in seen:
                        seen.add(id(plist))
                        out.append(WeightEntry(prefix + attr, module, mod_name, attr, getattr(module, attr).detach()))
    return out


def _original_aliases(entry: WeightEntry) -> list[str]:
    """The names of a parametrized weight's originals (``"0.parametrizations.weight.original"``...)."""
    if not _parametrized(entry.module, entry.attr):
        return []
    prefix = f"{entry.module_name}." if entry.module_name else ""
    plist = entry.module.parametrizations[entry.attr]
    return [f"{prefix}parametrizations.{entry.attr}.{key}" for key in plist._parameters if key.startswith("original")]


def weight_names(model: nn.Module) -> list[str]:
    """Pruning-free names of every weight with at least two dimensions (no biases); a weight
    registered with ``torch.nn.utils.parametrize`` by the layer's attribute (``"0.weight"``)."""
    return [e.name for e in _weights(model) if e.parameter.ndim >= 2]


def pruned_weights(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """Every weight with a pruning mask (:func:`is_pruned`): ``(name, module, attr)``."""
    return [(e.name, e.module, e.attr) for e in _weights(model) if _pruned(e.module, e.attr)]


@torch.no_grad()
def reapply_mask(module: nn.Module, name: str) -> None:
    """Zero the pruned entries of ``name_orig`` and recompute ``name = orig * mask``.

    Nothing to do for a parametrized weight: its mask applies at every access.
    """
    module, attr = _owner(module, name)
    if not _torch_pruned(module, attr):
        return
    orig, mask = module._parameters[attr + _ORIG], module._buffers[attr + _MASK]
    orig.mul_(mask)
    with torch.enable_grad():
        setattr(module, attr, orig * mask)


def _recompute_out_proj(attention: nn.Module, args) -> None:
    """Forward pre-hook of an ``nn.MultiheadAttention``: recompute its pruned ``out_proj.weight``.

    Attention reads ``out_proj.weight`` directly instead of calling
    ``out_proj``, so the pre-hook ``torch.nn.utils.prune`` puts on ``out_proj``
    never runs and the stale product would be backpropagated twice.
    """
    out = attention.out_proj
    if _torch_pruned(out, "weight"):
        setattr(out, "weight", out._parameters["weight" + _ORIG] * out._buffers["weight" + _MASK])


def _hook_direct_readers(root: nn.Module, module: nn.Module) -> None:
    for parent in root.modules():
        if isinstance(parent, nn.MultiheadAttention) and parent.out_proj is module and not any(
                hook is _recompute_out_proj for hook in parent._forward_pre_hooks.values()):
            parent.register_forward_pre_hook(_recompute_out_proj)


@torch.no_grad()
def install_mask(module: nn.Module, name: str, mask: Tensor) -> None:
    """Prune ``name`` where ``mask`` is zero, keeping earlier masks (a weight never unprunes).

    The first mask reparametrizes ``name`` with ``torch.nn.utils.prune``
    (``name_orig`` is the same parameter object, so optimizers keep working);
    later ones multiply into ``name_mask``. Pruned entries of ``name_orig``
    are set to zero. Pass the whole model and the weight's qualified name
    when a parent module reads the weight directly (``out_proj.weight`` of
    ``nn.MultiheadAttention``): the parent then recomputes it before each
    forward as well.

    A weight registered with ``torch.nn.utils.parametrize`` (weight norm,
    spectral norm, orthogonal...) is pruned by appending a
    :class:`PruningMask` to its parametrization chain instead: the layer
    computes with ``parametrization(originals) * mask``, exactly zero where
    the mask is zero whatever the optimizer does to the originals, which are
    left unchanged (a constraint such as orthogonality then holds for the
    weight before the mask, not after). Register every other
    parametrization before pruning: one appended after the mask would act on
    the masked weight.
    """
    owner, attr = _owner(module, name)
    if _parametrized(owner, attr):
        pm = _mask_module(owner, attr)
        shape = weight_shape(owner, attr)
        if pm is not None:
            pm.mask.mul_(mask.reshape(pm.mask.shape).to(device=pm.mask.device, dtype=pm.mask.dtype))
        else:
            ref = stored_parameters(owner, attr)[0]
            dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
            _pz.register_parametrization(owner, attr, PruningMask(mask.reshape(shape).to(device=ref.device,
                                                                                         dtype=dtype)))
        return
    if _torch_pruned(owner, attr):
        buf = owner._buffers[attr + _MASK]
        buf.mul_(mask.reshape(buf.shape).to(device=buf.device, dtype=buf.dtype))
    else:
        param = owner._parameters[attr]
        prune.custom_from_mask(owner, attr, mask.reshape(param.shape).to(param.device))
        _hook_direct_readers(module, owner)
    reapply_mask(owner, attr)


def masks(model: nn.Module, names: Optional[Iterable[str]] = None) -> dict[str, Tensor]:
    """Copies of the pruning masks: ``{name: mask}`` for every pruned weight (or those of ``names``)."""
    if names is None:
        return {name: mask_of(module, attr).detach().clone() for name, module, attr in pruned_weights(model)}
    out = {}
    for name in names:
        m = mask_of(model, name)
        if m is not None:
            out[name] = m.detach().clone()
    return out


def restore_masks(model: nn.Module, saved: dict[str, Tensor]) -> None:
    """Prune ``model`` with masks saved by :func:`masks` (before loading a pruned ``state_dict``).

    Raises
    ------
    ValueError
        If a name is not a parameter of ``model`` or a mask has the wrong shape.
    """
    for name, mask in saved.items():
        module, attr = resolve(model, name)
        shape = weight_shape(module, attr)
        if tuple(mask.shape) != shape:
            raise ValueError(f"mask of {name} has shape {tuple(mask.shape)}; the weight has shape {shape}")
        install_mask(model, name, mask)


def remove_parametrizations(module: nn.Module, attr: str) -> None:
    """``torch.nn.utils.parametrize.remove_parametrizations(module, attr, leave_parametrized=True)``,
    leaving other instances of the module's parametrized class alone.

    A deep copy of a parametrized module shares its generated class, from
    which torch deletes the weight's property: the module first gets a class
    of its own.
    """
    leaves = stored_parameters(module, attr)
    as_parameter = all(isinstance(p, nn.Parameter) for p in leaves)
    requires_grad = any(p.requires_grad for p in leaves)
    cls = type(module)
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
    with torch.enable_grad():  # under no_grad torch would store a weight of several originals as a buffer
        _pz.remove_parametrizations(module, attr, leave_parametrized=True)
    if as_parameter and attr in module._buffers:
        value = module._buffers.pop(attr)
        module.register_parameter(attr, nn.Parameter(value.detach(), requires_grad=requires_grad))


def strip_pruning(module: nn.Module) -> nn.Module:
    """Make the masks of ``module``'s own pruned weights permanent (``torch.nn.utils.prune.remove``).

    A parametrized weight with a :class:`PruningMask` loses its whole
    parametrization chain (``torch.nn.utils.parametrize.remove_parametrizations``
    with ``leave_parametrized=True``): it becomes a plain parameter holding
    the weight the layer computed, exact zeros included; the constraint
    (norm, orthogonality) is no longer enforced afterwards.
    """
    for _, attr, _ in direct_parameters(module):
        if _torch_pruned(module, attr):
            prune.remove(module, attr)
    if _pz.is_parametrized(module):
        for attr in list(module.parametrizations.keys()):
            if _mask_module(module, attr) is not None:
                remove_parametrizations(module, attr)
    return module


@torch.no_grad()
def finalize_pruning(model: nn.Module) -> dict[str, Tensor]:
    """Make every mask of ``model`` permanent; return the masks it had (:func:`masks`).

    Each pruned weight ``w`` becomes a plain parameter again (the former
    ``w_orig`` object, now holding ``orig * mask`` with exact zeros), the
    ``w_mask`` buffers and the forward pre-hooks of ``torch.nn.utils.prune``
    are removed, and so are the hooks :func:`install_mask` put on parents that
    read a weight directly. Afterwards the ``state_dict`` has the keys of an
    unpruned model of the same class (a pruned parameter comes last among
    its module's parameters; ``load_state_dict`` goes by name).
    """
    saved = masks(model)
    for owner in list(model.modules()):
        strip_pruning(owner)
        if isinstance(owner, nn.MultiheadAttention):
            for key, hook in list(owner._forward_pre_hooks.items()):
                if hook is _recompute_out_proj:
                    del owner._forward_pre_hooks[key]
    return saved


def plain_state(state: dict) -> dict:
    """A model ``state_dict`` with the pruning reparametrization folded in.

    Every ``name_orig`` / ``name_mask`` pair becomes ``name = orig * mask``
    (exact zeros where the mask is zero); other entries are kept as they are.
    The result loads into an unpruned instance of the model's class.
    Weights pruned through a parametrization (:class:`PruningMask`) are kept
    as they are: the state loads into the parametrized model.
    """
    out = {}
    for key, value in state.items():
        if key.endswith(_ORIG) and key[: -len(_ORIG)] + _MASK in state:
            base = key[: -len(_ORIG)]
            out[base] = (value * state[base + _MASK].to(value.dtype)).detach().clone()
        elif key.endswith(_MASK) and key[: -len(_MASK)] + _ORIG in state:
            continue
        else:
            out[key] = value
    return out


def effective_from_state(state: dict, name: str) -> Tensor:
    """The effective weight ``name`` in a model ``state_dict`` (``name_orig * name_mask`` when pruned).

    Raises
    ------
    KeyError
        If the state holds neither ``name`` nor ``name_orig``.
    """
    if name + _ORIG in state and name + _MASK in state:
        return state[name + _ORIG] * state[name + _MASK]
    if name in state:
        return state[name]
    raise KeyError(name)


# ------------------------------------------------------------------ measurements
def module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a module's first floating parameter or buffer.

    Falls back to the CPU and torch's default dtype for modules without any.
    """
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


_SKIP = (nn.Embedding, nn.EmbeddingBag, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def default_weights(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """The weight matrices of a model: ``(name, module, attr)``.

    Every parameter whose name starts with ``weight`` and that has at least
    two dimensions (``nn.Linear``, ``nn.Conv*``, ``weight_ih``/``weight_hh``
    of RNN/LSTM/GRU layers and cells, ...), and the input projections of
    ``nn.MultiheadAttention`` (``in_proj_weight``, or ``q/k/v_proj_weight``),
    excluding embedding tables and normalization layers. Pruning acts on
    these by default; weights registered with ``torch.nn.utils.parametrize``
    count by the layer's attribute (``"0.weight"``).
    """
    return [(e.name, e.module, e.attr) for e in _weights(model)
            if (e.attr.startswith("weight") or (isinstance(e.module, nn.MultiheadAttention) and e.attr in _ATTENTION))
            and e.parameter.ndim >= 2 and not isinstance(e.module, _SKIP)]


def sparsity(weights: Any, names: Optional[Iterable[str]] = None) -> float:
    """Fraction of exactly-zero entries.

    Parameters
    ----------
    weights : nn.Module, Tensor, dict of Tensor, or iterable
        A model (its :func:`default_weights`, or the weights ``names``, read
        as effective weights), a tensor, a dict of tensors, or an iterable of
        tensors and/or ``(module, name)`` pairs (a pruner iterates as such
        pairs).
    names : iterable of str, optional
        With a model: measure these weights instead.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If there is nothing to measure.
    """
    if names is not None and not isinstance(weights, nn.Module):
        raise TypeError("names= is only accepted together with a model (an nn.Module)")
    if isinstance(weights, Tensor):
        tensors = [weights]
    elif isinstance(weights, nn.Module):
        if names is None:
            tensors = [effective_weight(m, a) for _, m, a in default_weights(weights)]
        else:
            tensors = [effective_weight(weights, n) for n in names]
        if not tensors:
            raise ValueError(f"{type(weights).__name__} has no weight matrices")
    elif isinstance(weights, dict):
        tensors = list(weights.values())
    elif isinstance(weights, Iterable) and not isinstance(weights, (str, bytes)):
        tensors = []
        for i, item in enumerate(weights):
            if isinstance(item, Tensor):
                tensors.append(item)
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], nn.Module):
                tensors.append(effective_weight(*item))
            else:
                raise TypeError(f"weights[{i}] must be a Tensor or a (module, name) pair; got {item!r}")
        if not tensors:
            raise ValueError("weights is empty")
    else:
        raise TypeError(f"weights must be a model, tensor, dict or iterable; got {type(weights).__name__}")
    with torch.no_grad():
        zeros = sum(int((t == 0).sum()) for t in tensors)
        total = sum(t.numel() for t in tensors)
    if total == 0:
        raise ValueError("no weights to measure (all tensors are empty)")
    return zeros / total


# ------------------------------------------------------------------ layouts
_HH = re.compile(r"^weight_hh_l(\d+)(_reverse)?$")
_IH = re.compile(r"^weight_ih_l(\d+)(_reverse)?$")
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CELLS = (nn.RNNCell, nn.LSTMCell, nn.GRUCell)
_QKV = {"q_proj_weight": "in", "k_proj_weight": "key_in", "v_proj_weight": "value_in"}
_ATTENTION = ("in_proj_weight",) + tuple(_QKV)


def _attention_out_projs(model: nn.Module) -> dict[int, str]:
    """``{id(out_proj): prefix}`` of every ``nn.MultiheadAttention`` in ``model``."""
    return {id(m.out_proj): f"{name}." if name else "" for name, m in model.named_modules()
            if isinstance(m, nn.MultiheadAttention) and isinstance(m.out_proj, nn.Linear)}


def _layout(entry: WeightEntry) -> Optional[TargetLayout]:
    """The neuron layout of one parameter, or None if it has none (biases...)."""
    name, module, mod_name, attr, param = entry
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
    if isinstance(module, nn.MultiheadAttention):
        # rows: (block q/k/v, head, head_dim); one embedding of the embed_dim attention units
        # (head h owns units h * head_dim ... (h + 1) * head_dim - 1), shared by the q, k and v
        # blocks and read by out_proj's columns
        units = f"{prefix}heads"
        if attr == "in_proj_weight":
            return TargetLayout(name, "linear", shape, module.embed_dim, shape[1], units, f"{prefix}in", blocks=3)
        if attr in _QKV:
            return TargetLayout(name, "linear", shape, module.embed_dim, shape[1], units, prefix + _QKV[attr])
    if isinstance(module, nn.Linear) and attr == "weight":
        return TargetLayout(name, "linear", shape, shape[0], shape[1], f"{prefix}out", f"{prefix}in")
    if isinstance(module, _CONV) and attr == "weight":
        return TargetLayout(name, "conv", shape, module.out_channels, module.in_channels, f"{prefix}out",
                            f"{prefix}in", groups=module.groups, slice_norm=True)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
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
    if kind == "attention":
        return isinstance(module, nn.MultiheadAttention) and layout.name.rpartition(".")[2] in _ATTENTION
    return False


def _listing(names: list[str]) -> str:
    return ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")


def find_targets(model: nn.Module, targets: TargetSpec = "recurrent") -> list[TargetLayout]:
    """Resolve a target spec into layouts, in the model's parameter order.

    Parameters
    ----------
    model : nn.Module
    targets : str, list of str, or callable
        ``"recurrent"``, ``"linear"``, ``"conv"``, ``"attention"`` (the input
        projections of ``nn.MultiheadAttention``; ``out_proj`` is an
        ``nn.Linear``, chosen by ``"linear"``), a list of those kinds and/or
        parameter names (``"<name>_orig"`` of a pruned weight and the
        originals of a parametrized weight are accepted too), or a predicate ``(name, weight) -> bool`` called on every
        parameter with at least two dimensions.

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module`` or ``targets`` is not a spec.
    ValueError
        If nothing matches, a name does not exist, or a selected weight has no
        neuron layout (a bias, say).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    out_projs = _attention_out_projs(model)
    layouts = []
    for e in _weights(model):
        lay = _layout(e)
        if lay is not None and id(e.module) in out_projs and e.attr == "weight":
            # out_proj's columns are the attention units (the heads' concatenated values)
            lay = replace(lay, in_group=f"{out_projs[id(e.module)]}heads")
        layouts.append((lay, e))
    by_name = {e.name: (lay, e) for lay, e in layouts}
    aliases = {}
    for _, e in layouts:
        aliases[e.name] = e.name
        if _torch_pruned(e.module, e.attr):
            aliases[e.name + _ORIG] = e.name
        for alias in _original_aliases(e):
            aliases[alias] = e.name
    chosen: list[str] = []

    def add(name: str):
        if name not in chosen:
            chosen.append(name)

    if callable(targets) and not isinstance(targets, str):
        for lay, e in layouts:
            # the predicate only sees weights with a neuron layout (>= 2 dimensions)
            if lay is not None and targets(e.name, effective_weight(e.module, e.attr)):
                add(e.name)
        if not chosen:
            raise ValueError(f"the targets predicate matched no parameter of {type(model).__name__}")
        return [by_name[n][0] for n in chosen]
    if isinstance(targets, str):
        targets_list, single = [targets], True
    elif isinstance(targets, (list, tuple)) and targets and all(isinstance(t, str) for t in targets):
        targets_list, single = list(targets), False
    else:
        raise TypeError(
            "targets must be 'recurrent', 'linear', 'conv', 'attention', a non-empty list of those and/or "
            f"parameter names, or a predicate (name, weight) -> bool; got {targets!r}"
        )
    for t in targets_list:
        if t in KINDS:
            hits = [e.name for lay, e in layouts if _kind_matches(t, e.module, lay)]
            if not hits:
                kinds = {k for lay, e in layouts for k in KINDS if _kind_matches(k, e.module, lay)}
                raise ValueError(
                    f"targets={t!r} matched no weight in {type(model).__name__} (kinds present: "
                    f"{', '.join(sorted(kinds)) or 'none'}; parameters: {_listing(list(by_name))})"
                )
            for h in hits:
                add(h)
        elif t in aliases:
            lay, e = by_name[aliases[t]]
            if lay is None:
                raise ValueError(
                    f"target {t!r} has shape {tuple(e.parameter.shape)} and no neuron layout; a target must "
                    "be a weight with >= 2 dimensions (not a bias)"
                )
            add(e.name)
        elif single:
            raise ValueError(f"targets must be one of {KINDS}, a list of names, or a predicate; got {t!r}")
        else:
            raise ValueError(
                f"target {t!r} is neither a kind {KINDS} nor a parameter of {type(model).__name__} "
                f"(parameters: {_listing(list(by_name))})"
            )
    return [by_name[n][0] for n in chosen]
