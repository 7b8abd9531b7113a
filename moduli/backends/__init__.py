"""Deprecated: the names of ``moduli.backends`` 0.1, kept for one release.

The framework seam now lives in :mod:`moduli.targets` (target layouts,
effective weights, pruning masks) and :mod:`moduli.regularizers.state` (prior
sets). Import from there; this module warns on import and will be removed.
"""

from __future__ import annotations

import warnings

from torch import nn

from ..regularizers.state import PriorSet
from ..targets import KINDS, TargetLayout, TargetSpec, effective_weight, find_targets, module_device_dtype

__all__ = ["KINDS", "TargetLayout", "TargetSpec", "TorchBackend", "get_backend", "module_device_dtype",
           "PriorSetProtocol"]

warnings.warn("moduli.backends is deprecated: use moduli.targets and moduli.regularizers",
              DeprecationWarning, stacklevel=2)

#: The type ``attach`` returns (there is one implementation, for torch).
PriorSetProtocol = PriorSet


class TorchBackend:
    """The 0.1 adapter object, now three calls into :mod:`moduli.targets` and :func:`attach`."""

    name = "torch"

    def accepts(self, model) -> bool:
        return isinstance(model, nn.Module)

    def find_targets(self, model, targets: TargetSpec = "recurrent") -> list[TargetLayout]:
        return find_targets(model, targets)

    def read_weight(self, model, name: str):
        return effective_weight(model, name)

    def build(self, model, prior, layouts, *, points=None, generator=None) -> PriorSet:
        return PriorSet(model, prior, layouts, points=points, generator=generator)


def get_backend(model) -> TorchBackend:
    """The torch adapter; ``TypeError`` for anything that is not a ``torch.nn.Module``."""
    backend = TorchBackend()
    if not backend.accepts(model):
        raise TypeError(f"no moduli backend accepts a model of type {type(model).__name__}; pass a torch.nn.Module")
    return backend
