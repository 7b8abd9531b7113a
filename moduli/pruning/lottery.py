"""Lottery-ticket retraining: keep the masks, reset the kept weights."""

from __future__ import annotations

import copy
import warnings
from typing import Optional

import torch
from torch import nn
from torch.nn.utils import prune

from ..backends.torch import priors_of

__all__ = ["lottery_reset", "pruned_weights"]

_MODES = ("reinit", "rewind")


def pruned_weights(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """Every weight reparametrized by ``torch.nn.utils.prune``: ``(name, module, attr)``."""
    out = []
    for mod_name, module in model.named_modules():
        for pname in list(module._parameters):
            if pname.endswith("_orig") and (pname[:-5] + "_mask") in module._buffers:
                attr = pname[:-5]
                out.append((f"{mod_name}.{attr}" if mod_name else attr, module, attr))
    return out


def _fresh_values(module: nn.Module) -> Optional[dict]:
    """New random values for the direct parameters of ``module`` from its own
    ``reset_parameters`` (run on a copy with pruning removed)."""
    if not hasattr(module, "reset_parameters"):
        return None
    for pname in list(module._parameters):
        if pname.endswith("_orig") and (pname[:-5] + "_mask") in module._buffers:
            # the computed weight is a graph node, which deepcopy refuses
            setattr(module, pname[:-5], (module._parameters[pname] * module._buffers[pname[:-5] + "_mask"]).detach())
    fresh = copy.deepcopy(module)
    for pname in list(fresh._parameters):
        if pname.endswith("_orig") and (pname[:-5] + "_mask") in fresh._buffers:
            prune.remove(fresh, pname[:-5])
    fresh.reset_parameters()
    return {name: p.detach() for name, p in fresh._parameters.items() if p is not None}


@torch.no_grad()
def lottery_reset(model: nn.Module, mode: str = "reinit", initial_state: Optional[dict] = None, *,
                  priors=None, seed: Optional[int] = None) -> nn.Module:
    """Reset a pruned model for lottery-ticket retraining, keeping its masks.

    Parameters
    ----------
    model : nn.Module
        A model pruned with :class:`GradualMagnitudePruning` (or any
        ``torch.nn.utils.prune`` method).
    mode : {"reinit", "rewind"}
        ``"reinit"`` (the paper): every parameter of every module that has a
        ``reset_parameters`` method gets fresh random values from it (the
        layer's own initialization); ``"rewind"`` (Frankle & Carbin): every
        parameter returns to its value in ``initial_state``. Pruned entries
        stay exactly zero in both.
    initial_state : dict, optional
        Required for ``"rewind"``: ``copy.deepcopy(model.state_dict())``
        taken at initialization (before or after pruning started; keys ``w``
        or ``w_orig`` are both understood).
    priors : PriorSet or list of PriorSet, optional
        Prior sets to freeze. Every prior set attached to ``model`` with
        :func:`moduli.regularizers.attach` is frozen anyway: the prior stays
        attached, with frozen embeddings (the paper's lottery phase).
    seed : int, optional
        Seed for ``"reinit"`` (the global RNG state is restored afterwards).

    Returns
    -------
    nn.Module
        ``model``, changed in place. Parameter objects are kept, but build a
        new optimizer: the old one's moments belong to the old weights.

    Raises
    ------
    ValueError
        Unknown mode, no pruned weight, ``"rewind"`` without
        ``initial_state`` or with missing/misshapen entries.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    if mode not in _MODES:
        raise ValueError(f"mode must be 'reinit' or 'rewind'; got {mode!r}")
    pruned = pruned_weights(model)
    if not pruned:
        raise ValueError(
            "lottery_reset needs a pruned model (no weight has a torch.nn.utils.prune mask); run "
            "GradualMagnitudePruning first"
        )
    if mode == "rewind":
        if initial_state is None:
            raise ValueError(
                "mode='rewind' needs initial_state: copy.deepcopy(model.state_dict()) taken at initialization"
            )
        if not isinstance(initial_state, dict):
            raise TypeError(f"initial_state must be a state dict; got {type(initial_state).__name__}")
        _rewind(model, initial_state)
    else:
        if seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                _reinit(model)
        else:
            _reinit(model)
    for _, module, attr in pruned:
        orig, mask = module._parameters[attr + "_orig"], module._buffers[attr + "_mask"]
        orig.mul_(mask)
        with torch.enable_grad():
            setattr(module, attr, orig * mask)
    sets = list(priors_of(model))
    if priors is not None:
        sets += list(priors) if isinstance(priors, (list, tuple)) else [priors]
    for ps in sets:
        ps.freeze()
    return model


def _reinit(model: nn.Module) -> None:
    skipped = []
    for mod_name, module in model.named_modules():
        direct = [n for n, p in module._parameters.items() if p is not None]
        if not direct:
            continue
        values = _fresh_values(module)
        if values is None:
            skipped.append(mod_name or type(module).__name__)
            continue
        for pname in direct:
            key = pname[:-5] if (pname.endswith("_orig") and (pname[:-5] + "_mask") in module._buffers) else pname
            module._parameters[pname].copy_(values[key])
    if skipped:
        warnings.warn(
            f"lottery_reset(mode='reinit'): modules without reset_parameters kept their weights: "
            f"{', '.join(skipped)}",
            UserWarning,
            stacklevel=3,
        )


def _rewind(model: nn.Module, state: dict) -> None:
    missing = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for pname, param in module._parameters.items():
            if param is None:
                continue
            keys = [prefix + pname]
            if pname.endswith("_orig") and (pname[:-5] + "_mask") in module._buffers:
                keys.insert(0, prefix + pname[:-5])
            src = next((state[k] for k in keys if k in state), None)
            if src is None:
                missing.append(keys[-1])
                continue
            if tuple(src.shape) != tuple(param.shape):
                raise ValueError(
                    f"initial_state[{keys[0]!r}] has shape {tuple(src.shape)}; the model's parameter has "
                    f"shape {tuple(param.shape)}"
                )
            param.copy_(src)
        for bname, buf in module._buffers.items():
            if buf is None or bname.endswith("_mask") or (prefix + bname) not in state:
                continue
            buf.copy_(state[prefix + bname])
    if missing:
        raise ValueError(f"initial_state lacks parameters: {', '.join(missing[:8])}")
