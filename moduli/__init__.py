"""moduli: geometry and topology as sparsity priors for neural networks."""

__version__ = "0.1.0"

from . import manifolds  # noqa: E402

__all__ = ["manifolds", "__version__"]
