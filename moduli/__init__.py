"""moduli: geometry and topology as sparsity priors for neural networks.

``targets``, ``manifolds``, ``regularizers`` and ``pruning`` are imported with
the package; ``analysis``, ``geodesic`` and ``experiments`` (which pull in
gudhi, networkx, matplotlib and scikit-learn) load on first access, as does
the deprecated ``backends`` shim.
"""

import importlib as _importlib

__version__ = "0.2.0"

from . import manifolds, pruning, regularizers, targets  # noqa: E402

_LAZY = ("analysis", "geodesic", "experiments", "backends")

__all__ = ["targets", "manifolds", "regularizers", "pruning", "analysis", "geodesic", "experiments",
           "__version__"]


def __getattr__(name):
    if name in _LAZY:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
