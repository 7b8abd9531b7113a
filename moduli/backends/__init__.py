"""The seam between moduli and the neural-network framework (PyTorch).

Device and dtype always follow the data: helpers here read them from tensors
and modules instead of naming a device.
"""

from __future__ import annotations

import torch

__all__ = ["module_device_dtype"]


def module_device_dtype(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a module's first floating parameter or buffer.

    Falls back to the CPU and torch's default dtype for modules without any.
    """
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()
