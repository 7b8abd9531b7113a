"""moduli: geometry and topology as sparsity priors for neural networks.

``manifolds``, ``regularizers``, ``pruning`` and ``backends`` are imported with
the package; ``analysis``, ``geodesic`` and ``experiments`` (which pull in
gudhi, networkx, matplotlib and scikit-learn) load on first access.
"""

import importlib as _importlib

__version__ = "0.1.0"

from . import backends, manifolds, pruning, regularizers  # noqa: E402

_LAZY = ("analysis", "geodesic", "experiments")

__all__ = ["manifolds", "regularizers", "pruning", "backends", *_LAZY, "__version__"]


def __getattr__(name):
    if name in _LAZY:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
