"""Gradual magnitude pruning (paper, Section 4) on ``torch.nn.utils.prune``."""

from __future__ import annotations

import numbers
from typing import Any, Iterable

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from ..backends.torch import effective_weight, weight_entries

__all__ = ["GradualMagnitudePruning", "sparsity", "default_weights", "schedule"]

_SKIP = (nn.Embedding, nn.EmbeddingBag, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_SCOPES = ("global", "tensor")


def default_weights(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """The weight matrices pruning acts on by default.

    Every parameter whose name starts with ``weight`` and that has at least two
    dimensions (``nn.Linear``, ``nn.Conv*``, ``weight_ih``/``weight_hh`` of
    RNN/LSTM/GRU layers and cells, ...), excluding embedding tables and
    normalization layers.

    Returns
    -------
    list of (name, module, attr)
        ``name`` as in ``model.named_parameters()`` before pruning.
    """
    out = []
    for name, module, _, attr, param in weight_entries(model):
        if attr.startswith("weight") and param.ndim >= 2 and not isinstance(module, _SKIP):
            out.append((name, module, attr))
    return out


def _resolve_targets(model_or_params: Any, targets=None) -> list[tuple[str, nn.Module, str]]:
    if isinstance(model_or_params, nn.Module):
        if targets is None:
            found = default_weights(model_or_params)
        else:
            from ..backends.torch import TorchBackend, _resolve

            layouts = TorchBackend().find_targets(model_or_params, targets)
            found = [(lay.name,) + _resolve(model_or_params, lay.name) for lay in layouts]
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
        if attr not in module._parameters and (attr + "_orig") not in module._parameters:
            raise ValueError(f"model_or_params[{i}]: {type(module).__name__} has no parameter {attr!r}")
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
                 targets=None):
        if isinstance(target_sparsity, bool) or not isinstance(target_sparsity, numbers.Real):
            raise TypeError(f"target_sparsity must be a number in [0, 1]; got {type(target_sparsity).__name__}")
        if not 0.0 <= float(target_sparsity) <= 1.0:
            raise ValueError(f"target_sparsity must be in [0, 1]; got {target_sparsity}")
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral):
            raise TypeError(f"epochs must be an int >= 1; got {type(epochs).__name__}")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {epochs}")
        scope = {"per-tensor": "tensor", "per_tensor": "tensor", "local": "tensor"}.get(scope, scope)
        if scope not in _SCOPES:
            raise ValueError(f"scope must be 'global' or 'tensor'; got {scope!r}")
        self.entries = _resolve_targets(model_or_params, targets)
        self.target_sparsity = float(target_sparsity)
        self.epochs = int(epochs)
        self.scope = scope
        self.epoch = 0

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
        for _, module, attr in self.entries:
            w = effective_weight(module, attr).detach()
            if not bool(torch.isfinite(w).all()):
                raise ValueError(f"cannot prune {attr} of {type(module).__name__}: it has NaN/inf entries")
            s = w.abs().to(torch.float64 if w.dtype == torch.float64 else torch.float32)
            if (attr + "_mask") in module._buffers:
                s = torch.where(module._buffers[attr + "_mask"] == 0, torch.full_like(s, -1.0), s)
            scores.append(s.reshape(-1))
        if self.scope == "global":
            flat = torch.cat([s.to(scores[0].device) for s in scores])
            masks = _lowest_mask(flat, round(fraction * flat.numel())).split([s.numel() for s in scores])
        else:
            masks = [_lowest_mask(s, round(fraction * s.numel())) for s in scores]
        for (_, module, attr), mask in zip(self.entries, masks):
            _install_mask(module, attr, mask)

    def sparsity(self) -> float:
        """Fraction of zero entries over the chosen (effective) weights."""
        return sparsity([(module, attr) for _, module, attr in self.entries])

    def state_dict(self) -> dict:
        """The schedule position (masks live in the model's own ``state_dict``)."""
        return {"epoch": self.epoch, "epochs": self.epochs, "target_sparsity": self.target_sparsity,
                "scope": self.scope}

    def load_state_dict(self, state: dict) -> None:
        """Restore the schedule position saved by :meth:`state_dict`."""
        if not isinstance(state, dict) or "epoch" not in state:
            raise ValueError("state must be a dict from GradualMagnitudePruning.state_dict()")
        self.epoch = int(state["epoch"])

    def __repr__(self) -> str:
        return (f"GradualMagnitudePruning(target_sparsity={self.target_sparsity:g}, epochs={self.epochs}, "
                f"scope={self.scope!r}, epoch={self.epoch}, weights={len(self.entries)})")


def _lowest_mask(scores: Tensor, k: int) -> Tensor:
    """Mask with zeros at the ``k`` smallest scores (ties broken by position)."""
    mask = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        idx = torch.topk(scores, k, largest=False, sorted=False).indices
        mask[idx] = False
    return mask


def _install_mask(module: nn.Module, attr: str, mask: Tensor) -> None:
    if (attr + "_mask") in module._buffers and (attr + "_orig") in module._parameters:
        buf = module._buffers[attr + "_mask"]
        buf.mul_(mask.reshape(buf.shape).to(buf.dtype))  # never unprune
    else:
        param = module._parameters[attr]
        prune.custom_from_mask(module, attr, mask.reshape(param.shape).to(param.device))
    orig = module._parameters[attr + "_orig"]
    buf = module._buffers[attr + "_mask"]
    orig.mul_(buf)
    with torch.enable_grad():
        setattr(module, attr, orig * buf)


def sparsity(model_or_params) -> float:
    """Fraction of exactly-zero entries.

    Parameters
    ----------
    model_or_params : nn.Module, Tensor, GradualMagnitudePruning, or iterable
        A model (its default weight matrices, see :func:`default_weights`,
        read as effective weights under pruning), a tensor, a pruner, or an
        iterable of tensors or ``(module, parameter_name)`` pairs.

    Returns
    -------
    float
    """
    if isinstance(model_or_params, GradualMagnitudePruning):
        return model_or_params.sparsity()
    if isinstance(model_or_params, Tensor):
        tensors = [model_or_params]
    elif isinstance(model_or_params, nn.Module):
        tensors = [effective_weight(m, a) for _, m, a in default_weights(model_or_params)]
        if not tensors:
            raise ValueError(f"{type(model_or_params).__name__} has no weight matrices")
    elif isinstance(model_or_params, Iterable) and not isinstance(model_or_params, str):
        tensors = []
        for i, item in enumerate(model_or_params):
            if isinstance(item, Tensor):
                tensors.append(item)
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], nn.Module):
                tensors.append(effective_weight(*item))
            else:
                raise TypeError(f"model_or_params[{i}] must be a Tensor or a (module, name) pair; got {item!r}")
        if not tensors:
            raise ValueError("model_or_params is empty")
    else:
        raise TypeError(f"model_or_params must be a model, tensor or iterable; got {type(model_or_params).__name__}")
    with torch.no_grad():
        zeros = sum(int((t == 0).sum()) for t in tensors)
        total = sum(t.numel() for t in tensors)
    if total == 0:
        raise ValueError("no weights to measure (all tensors are empty)")
    return zeros / total
