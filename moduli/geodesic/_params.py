"""The flat weight vector a walk moves: which parameters, in which order.

The walk moves every trainable floating-point parameter as stored in the
model (``named_parameters``: for a weight pruned with
``torch.nn.utils.prune`` that is ``w_orig``), because
:func:`torch.func.functional_call` takes the stored leaves.  Which *weights*
are sparsified is decided separately, by pruning-free name through
:mod:`moduli.targets` (see :func:`~moduli.geodesic.target_weights`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["walk_parameters", "load_flat", "flat_slices"]


def _movable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and p.is_floating_point()]


def walk_parameters(model: nn.Module, name: str = "model") -> tuple[list[str], list[torch.Size], Tensor]:
    """Names, shapes and a flat copy of the parameters a walk moves.

    ``name`` is the argument the model was passed as, used in error messages.

    Raises
    ------
    ValueError
        If the model has no trainable floating-point parameter, or one holds
        NaN or infinite entries (the message names the parameter).
    TypeError
        If they do not share one dtype.
    """
    movable = _movable(model)
    if not movable:
        raise ValueError(f"{name} has no trainable floating-point parameters to move")
    flats = [p.detach().reshape(-1) for _, p in movable]
    dtypes = {f.dtype for f in flats}
    if len(dtypes) > 1:
        raise TypeError(f"all trainable parameters of {name} must share one dtype, got {sorted(map(str, dtypes))}")
    w = torch.cat(flats).clone()
    if not bool(torch.isfinite(w).all()):
        bad = [(n, int((~torch.isfinite(f)).sum()), f.numel()) for (n, _), f in zip(movable, flats)
               if not bool(torch.isfinite(f).all())]
        listed = ", ".join(f"{n!r} ({k} of {size} entries)" for n, k, size in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ValueError(f"{name} has NaN or infinite weights in parameter(s) {listed}{more}")
    return [n for n, _ in movable], [p.shape for _, p in movable], w


def flat_slices(model: nn.Module) -> dict[str, tuple[int, int, torch.Size]]:
    """``{stored name: (start, stop, shape)}`` of each moved parameter in the flat vector."""
    out, i = {}, 0
    for n, p in _movable(model):
        out[n] = (i, i + p.numel(), p.shape)
        i += p.numel()
    return out


def load_flat(model: nn.Module, names: list[str], w: Tensor) -> None:
    """Copy the flat vector ``w`` into the parameters ``names`` of ``model`` (in place)."""
    params = dict(model.named_parameters())
    i = 0
    with torch.no_grad():
        for n in names:
            p = params[n]
            p.copy_(w[i : i + p.numel()].view_as(p))
            i += p.numel()
