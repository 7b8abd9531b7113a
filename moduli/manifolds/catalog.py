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

import functools
from dataclasses import dataclass
from typing import Callable

from .base import Manifold
from .euclidean import Euclidean
from .klein import KleinBottle
from .sphere import Circle, Sphere
from .torus import FlatTorus

__all__ = ["Entry", "ENTRIES", "SPACES", "NAMES", "build", "at_scale", "describe"]


@dataclass(frozen=True)
class Entry:
    """A built-in space by name.

    Attributes
    ----------
    description : str
        One line for help texts.
    make : callable
        ``make(scale, coord_dim) -> Manifold``: the space at ``scale`` (radius,
        period, side or sampling extent) for points of ``coord_dim`` coordinates
        (used by spaces whose dimension follows the data: sphere, torus).
    scale : float
        The Appendix D scale.
    coord_dim : int
        The Appendix D points' coordinate count.
    """

    description: str
    make: Callable[[float, int], Manifold]
    scale: float
    coord_dim: int


#: name -> :class:`Entry`; the one table of built-in spaces.
ENTRIES: dict[str, Entry] = {
    "circle": Entry("circle of radius SCALE", lambda s, k: Circle(s), 5.0, 2),
    "sphere": Entry("sphere S^(coord_dim-1) of radius SCALE", lambda s, k: Sphere(k - 1, s), 5.0, 3),
    "torus": Entry("flat torus R^coord_dim / (SCALE Z)^coord_dim", lambda s, k: FlatTorus(k, s), 10.0, 2),
    "klein": Entry("flat Klein bottle on [0, SCALE]^2", lambda s, k: KleinBottle(s), 10.0, 2),
    "torus6": Entry("flat 6-torus R^6 / (SCALE Z)^6", lambda s, k: FlatTorus(6, s), 10.0, 6),
    "r3": Entry("R^3, samples in [0, SCALE)^3", lambda s, k: Euclidean(3, extent=s), 10.0, 3),
}

#: name -> a factory of the Appendix D space.
SPACES: dict[str, Callable[[], Manifold]] = {
    name: functools.partial(e.make, e.scale, e.coord_dim) for name, e in ENTRIES.items()
}

NAMES: tuple[str, ...] = tuple(ENTRIES)


def _entry(name: str) -> Entry:
    if name not in ENTRIES:
        raise ValueError(f"manifold must be one of {list(NAMES)}; got {name!r}")
    return ENTRIES[name]


def build(name: str) -> Manifold:
    """The Appendix D space called ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not in :data:`NAMES`.
    """
    _entry(name)
    return SPACES[name]()


def at_scale(name: str, scale: float, coord_dim: int) -> Manifold:
    """The space called ``name`` at ``scale`` for points of ``coord_dim`` coordinates.

    >>> at_scale("sphere", 1.0, 4)
    Sphere(dim=3, radius=1)

    Raises
    ------
    ValueError
        If ``name`` is not in :data:`NAMES`, or the scale or dimension is invalid.
    """
    return _entry(name).make(scale, coord_dim)


def describe(names=NAMES) -> str:
    """``"circle (circle of radius SCALE), ..."`` for help texts."""
    return ", ".join(f"{n} ({ENTRIES[n].description})" for n in names)
