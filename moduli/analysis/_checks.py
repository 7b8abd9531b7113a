"""Input validation shared by the analysis functions (raise, never assert)."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch

from .. import _validate

__all__ = [
    "as_numpy_2d", "check_int", "check_nonnegative", "check_prime", "to_numpy",
]


def to_numpy(x: Any, name: str) -> np.ndarray:
    """A float64 numpy copy of a tensor or array-like, or a TypeError naming ``name``."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must be real; got dtype {x.dtype}")
        return x.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - numpy raises many kinds
        raise TypeError(f"{name} must be a tensor or array; got {type(x).__name__}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric tensor or array; got {type(x).__name__} "
                        f"with dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real; got dtype {arr.dtype}")
    return arr.astype(np.float64)


def as_numpy_2d(x: Any, name: str, *, square: bool = False) -> np.ndarray:
    """Validate a finite 2-D array (optionally square) and return it as float64."""
    arr = to_numpy(x, name)
    if arr.ndim != 2:
        want = "(n, n)" if square else "(n, d)"
        raise ValueError(f"{name} must be 2-D with shape {want}; got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must contain at least one row; got shape {arr.shape}")
    if square and arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} of shape {arr.shape} contains {bad} NaN or infinite entries")
    return arr


def check_int(value: Any, name: str, minimum: int = 0, maximum: Optional[int] = None) -> int:
    """Return ``value`` if it is an int in ``[minimum, maximum]`` (:func:`moduli._validate.integer`)."""
    value = _validate.integer(value, name, minimum=minimum)
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be >= {minimum} and <= {maximum}; got {value}")
    return value


def check_nonnegative(value: Any, name: str, *, allow_inf: bool = False, positive: bool = False) -> float:
    """Return ``value`` as a float if it is a non-negative (or, with ``positive``, a
    non-zero) number, infinite only if ``allow_inf`` (:mod:`moduli._validate`)."""
    if positive and not allow_inf:
        return _validate.positive(value, name)
    value = _validate.nonnegative(value, name, allow_inf=allow_inf)
    if positive and value == 0:
        raise ValueError(f"{name} must be positive; got {value}")
    return value


def check_prime(value: Any, name: str = "coeff") -> int:
    """Return ``value`` if it is a prime int (the characteristic of a finite field)."""
    p = check_int(value, name, minimum=2)
    if any(p % q == 0 for q in range(2, int(math.isqrt(p)) + 1)):
        raise ValueError(f"{name} must be a prime p (homology over the field Z/p); got {p}")
    return p
