"""One set of argument checks, shared by every layer of :mod:`moduli`.

Each check returns the value converted to its canonical Python type, or raises
``TypeError`` (wrong type) / ``ValueError`` (right type, bad value) with a
message that names the argument. Conventions, one per concept:

* a *positive* or *non-negative* number is a finite real (``bool`` is not a
  number here);
* a *fraction* is a real in ``[0, 1)`` -- a sparsity of 1 would remove every
  weight -- unless ``closed=True`` admits 1;
* an *integer* is an ``int`` (not a ``bool``, not a float with no fraction part)
  at least ``minimum``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Optional

__all__ = ["real", "positive", "nonnegative", "fraction", "integer", "choice"]


def _number(value: Any, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}; got {type(value).__name__}")
    return float(value)


def real(value: Any, name: str) -> float:
    """A finite real number."""
    value = _number(value, name, "a real number")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value}")
    return value


def positive(value: Any, name: str) -> float:
    """A finite number > 0."""
    value = _number(value, name, "a positive real number")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number; got {value}")
    return value


def nonnegative(value: Any, name: str, *, allow_inf: bool = False) -> float:
    """A number >= 0, finite unless ``allow_inf``."""
    value = _number(value, name, "a non-negative real number")
    if math.isnan(value) or (math.isinf(value) and not allow_inf) or value < 0:
        bound = "non-negative" if allow_inf else "finite non-negative"
        raise ValueError(f"{name} must be a {bound} number; got {value}")
    return value


def fraction(value: Any, name: str, *, closed: bool = False) -> float:
    """A number in ``[0, 1)`` (``[0, 1]`` with ``closed=True``)."""
    interval = "[0, 1]" if closed else "[0, 1)"
    value = _number(value, name, f"a number in {interval}")
    if not (0.0 <= value <= 1.0) or (value == 1.0 and not closed):
        raise ValueError(f"{name} must be in {interval} (a fraction, e.g. 0.9); got {value!r}")
    return value


def integer(value: Any, name: str, *, minimum: Optional[int] = None) -> int:
    """An ``int`` (not a bool), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value}")
    return value


def choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """One of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value
