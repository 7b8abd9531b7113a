"""The seam between moduli and the neural-network framework.

:mod:`moduli.backends.base` defines the protocol (:class:`Backend`,
:class:`TargetLayout`) and the registry; :mod:`moduli.backends.torch` is the
PyTorch implementation, registered on import. Device and dtype always follow
the data: helpers read them from tensors and modules instead of naming a
device.
"""

from __future__ import annotations

from .base import (
    KINDS, Backend, PriorSetProtocol, TargetLayout, get_backend, register_backend, registered_backends,
)
from .torch import TorchBackend, module_device_dtype

__all__ = [
    "Backend", "TargetLayout", "PriorSetProtocol", "KINDS", "register_backend", "get_backend",
    "registered_backends", "TorchBackend", "module_device_dtype",
]
