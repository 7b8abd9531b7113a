"""moduli: geometry and topology as sparsity priors for neural networks.

Every subpackage (``targets``, ``manifolds``, ``regularizers``, ``pruning``,
``analysis``, ``geodesic``, ``experiments``, ``sparse`` and the deprecated
``backends`` shim) loads on first access (``moduli.manifolds`` or ``from moduli
import manifolds``), so ``import moduli`` and ``moduli --help`` import neither
torch nor anything else heavy.
"""

import importlib as _importlib

__version__ = "0.2.0"

_LAZY = ("targets", "manifolds", "regularizers", "pruning", "analysis", "geodesic", "experiments", "sparse",
         "backends")

__all__ = ["targets", "manifolds", "regularizers", "pruning", "analysis", "geodesic", "experiments", "sparse",
           "__version__"]


def __getattr__(name):
    if name in _LAZY:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
