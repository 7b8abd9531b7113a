"""Lottery-ticket retraining: keep the masks, reset the kept weights."""

from __future__ import annotations

import copy
import warnings
from typing import Optional

import torch
from torch import nn
from torch.nn.utils import parametrize as _pz

from .. import targets as tg

__all__ = ["lottery_reset"]

_MODES = ("reinit", "rewind")


def _fresh_values(module: nn.Module) -> Optional[dict]:
    """New random values for the direct parameters of ``module`` from its own
    ``reset_parameters`` (run on a copy with pruning and parametrizations removed), keyed by
    pruning-free name; a parametrized weight by the layer's attribute (``weight``)."""
    if not hasattr(module, "reset_parameters"):
        return None
    for _, attr, _ in tg.direct_parameters(module):
        if tg.is_pruned(module, attr):
            # the computed weight is a graph node, which deepcopy refuses
            setattr(module, attr, tg.effective_weight(module, attr).detach())
    # drawn on the CPU (with the CPU generator): the same values on every device
    fresh = copy.deepcopy(module)
    if _pz.is_parametrized(fresh):
        for attr in list(fresh.parametrizations.keys()):
            tg.remove_parametrizations(fresh, attr)
    fresh = tg.strip_pruning(fresh).to("cpu")
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
        The prior sets attached to ``model`` to freeze: the prior stays
        attached, with frozen embeddings (the paper's lottery phase). Prior
        sets not passed here are left as they are.
    seed : int, optional
        Seed for ``"reinit"``. The fresh values are drawn on the CPU with its
        generator, whose state is restored afterwards, so a seed gives the same
        values on every device and leaves the CUDA generators alone.

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
    sets = [] if priors is None else list(priors) if isinstance(priors, (list, tuple)) else [priors]
    for i, ps in enumerate(sets):
        if not callable(getattr(ps, "freeze", None)):
            raise TypeError(f"priors[{i}] must be a prior set from moduli.regularizers.attach; got {type(ps).__name__}")
    pruned = tg.pruned_weights(model)
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
            with torch.random.fork_rng(devices=[]):  # the CPU generator only: fresh values are drawn there
                torch.random.default_generator.manual_seed(seed)
                _reinit(model)
        else:
            _reinit(model)
    for _, module, attr in pruned:
        tg.reapply_mask(module, attr)
    for ps in sets:
        ps.freeze()
    return model


def _reinit(model: nn.Module) -> None:
    skipped = []
    for mod_name, module in model.named_modules():
        if isinstance(module, _pz.ParametrizationList):
            continue  # its originals are reset through the layer that owns them
        direct = [n for n, p in module._parameters.items() if p is not None]
        shaped = list(module.parametrizations.keys()) if _pz.is_parametrized(module) else []
        if not direct and not shaped:
            continue
        values = _fresh_values(module)
        if values is None:
            skipped.append(mod_name or type(module).__name__)
            continue
        for pname, attr, param in tg.direct_parameters(module):
            param.copy_(values[attr])
        for attr in shaped:
            # through the chain's right_inverse (identity for the pruning mask): the layer's own
            # initialization mapped to the parametrization's originals (weight norm's g and v, ...)
            try:
                setattr(module, attr, values[attr].to(tg.effective_weight(module, attr).device))
            except (NotImplementedError, RuntimeError, ValueError) as err:
                raise ValueError(
                    f"lottery_reset(mode='reinit') cannot reinitialize {mod_name + '.' if mod_name else ''}{attr}: "
                    f"its parametrization does not accept an assigned value ({err}); use mode='rewind' with the "
                    "initial state_dict"
                ) from None
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
        for pname, attr, param in tg.direct_parameters(module):
            keys = [prefix + pname] if pname == attr else [prefix + attr, prefix + pname]
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
        masks = {id(tg.mask_of(module, attr)) for _, attr, _ in tg.direct_parameters(module)
                 if tg.is_pruned(module, attr)}
        if isinstance(module, tg.PruningMask):  # a parametrized weight's mask stays
            masks.add(id(module.mask))
        for bname, buf in module._buffers.items():
            if buf is None or id(buf) in masks or (prefix + bname) not in state:
                continue
            buf.copy_(state[prefix + bname])
    if missing:
        raise ValueError(f"initial_state lacks parameters: {', '.join(missing[:8])}")
