"""An endless, seeded stream of input batches for the metric."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

__all__ = ["Batches"]


class Batches:
    """Endless stream of input batches from a tensor, a pair or a DataLoader.

    Parameters
    ----------
    data : Tensor or (Tensor, Tensor) or iterable
        Inputs ``[N, ...]``, an ``(inputs, targets)`` pair (targets are only
        checked for their length) or an iterable of batches (``x`` or
        ``(x, y)``), cycled.
    batch_size : int or None
        For tensor data: rows drawn without replacement at each call of
        :meth:`next` (``None`` or ``>= N``: the whole tensor).  Validated by
        the caller.
    seed : int
        Seed of the row sampler.
    name : str
        The public argument name of ``data``, used in error messages.
    """

    def __init__(self, data, batch_size: int | None, seed: int, name: str = "data"):
        self.name = name
        self.loader = None
        if isinstance(data, Tensor):
            x = data
        elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, Tensor) for d in data):
            x, y = data
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"{name}: inputs have {x.shape[0]} rows but targets have {y.shape[0]}")
        elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
            self.loader = data
            self._it = iter(())
            x = None
        else:
            raise TypeError(
                f"{name} must be an input tensor, an (inputs, targets) pair of tensors or a DataLoader, "
                f"got {type(data).__name__}"
            )
        if x is not None:
            self.x = self._check(x)
            self.batch_size = batch_size
            self.gen = torch.Generator().manual_seed(seed)

    def _check(self, x) -> Tensor:
        name = self.name
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: batch inputs must be tensors, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"{name}: inputs must have a non-empty leading batch dimension, got shape {tuple(x.shape)}")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}: inputs of shape {tuple(x.shape)} contain NaN or inf")
        return x

    def next(self) -> Tensor:
        """The next batch of inputs."""
        if self.loader is None:
            n = self.x.shape[0]
            if self.batch_size is None or self.batch_size >= n:
                return self.x
            idx = torch.randperm(n, generator=self.gen)[: self.batch_size].to(self.x.device)
            return self.x[idx]
        for _ in range(2):
            try:
                b = next(self._it)
                break
            except StopIteration:
                self._it = iter(self.loader)
        else:
            raise ValueError(f"{self.name}: the DataLoader yielded no batches")
        if isinstance(b, (tuple, list)):
            b = b[0]
        return self._check(b)
