"""The built-in spaces by name: one table used by regimes, ``moduli topology`` and ``moduli demo``.

Each name maps to the parameterization of the moduli-regularization paper's
Appendix D: the circle and 2-sphere of radius 5, the flat torus
``R^2/10Z^2``, the Klein bottle on ``[0, 10]^2``, the 6-torus ``R^6/10Z^6`` and
``R^3`` with embeddings drawn in ``[0, 10]^3``.

>>> from moduli.manifolds import catalog
>>> catalog.NAMES
('circle', 'sphere', 'torus', 'klein', 'torus6', 'r3')
>>> catalog.build("klein")
KleinBottle(side=10)
"""

from __future__ import annotations

from typing import Callable

from .base import Manifold
from .euclidean import Euclidean
from .klein import KleinBottle
from .sphere import Circle, Sphere
from .torus import FlatTorus

__all__ = ["SPACES", "NAMES", "build"]

#: name -> a factory of the Appendix D space.
SPACES: dict[str, Callable[[], Manifold]] = {
    "circle": lambda: Circle(5.0),
    "sphere": lambda: Sphere(2, 5.0),
    "torus": lambda: FlatTorus(2, 10.0),
    "klein": lambda: KleinBottle(10.0),
    "torus6": lambda: FlatTorus(6, 10.0),
    "r3": lambda: Euclidean(3, extent=10.0),
}

NAMES: tuple[str, ...] = tuple(SPACES)


def build(name: str) -> Manifold:
    """The Appendix D space called ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not in :data:`NAMES`.
    """
    if name not in SPACES:
        raise ValueError(f"manifold must be one of {list(NAMES)}; got {name!r}")
    return SPACES[name]()
