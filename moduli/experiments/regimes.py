"""Regularization regimes: the paper's controls and the moduli priors, by name.

A regime is written on the command line as ``NAME[:OPTION...]``:

* ``none`` -- no prior (plain magnitude pruning);
* ``l1`` -- the L1 prior (every coefficient 1);
* ``shuffled`` or ``shuffled:MANIFOLD`` -- the moduli prior's coefficients
  randomly permuted (default manifold: the torus);
* a manifold name -- ``circle``, ``sphere``, ``torus``, ``klein``, ``torus6``,
  ``r3`` -- the moduli prior on that space with the parameterizations of
  Appendix D (circle and 2-sphere of radius 5, ``R^2/10Z^2``, the Klein
  bottle on ``[0,10]^2``, ``R^6/10Z^6``, ``R^3`` initialised in ``[0,10]^3``).

Options: ``trained`` / ``fixed`` (embeddings learned by gradient descent or
not) and an inhibitor name ``dog`` / ``diffusion`` / ``sinusoid``, e.g.
``torus:trained``, ``r3:trained:dog``, ``klein:diffusion``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

__all__ = ["Regime", "parse_regime", "MANIFOLD_NAMES", "INHIBITOR_NAMES", "build_manifold", "build_inhibitor", "build_prior"]

MANIFOLD_NAMES = ("circle", "sphere", "torus", "klein", "torus6", "r3")
INHIBITOR_NAMES = ("dog", "diffusion", "sinusoid")


@dataclass(frozen=True)
class Regime:
    """One regularization regime.

    Attributes
    ----------
    kind : {"none", "l1", "shuffled", "moduli"}
    manifold : str or None
        Manifold name for ``moduli`` and ``shuffled``.
    inhibitor : str or None
        Inhibitor name for ``moduli`` and ``shuffled``.
    trained : bool
        Embeddings trained by gradient descent (``moduli`` only).
    """

    kind: str
    manifold: Optional[str] = None
    inhibitor: Optional[str] = None
    trained: bool = False

    @property
    def label(self) -> str:
        """Canonical name, e.g. ``"torus"``, ``"r3:trained"``, ``"shuffled:klein"``."""
        if self.kind in ("none", "l1"):
            return self.kind
        parts = ["shuffled"] if self.kind == "shuffled" else []
        if self.kind == "moduli" or self.manifold != "torus":
            parts.append(self.manifold)
        if self.trained:
            parts.append("trained")
        if self.inhibitor != "dog":
            parts.append(self.inhibitor)
        return ":".join(parts)

    def to_dict(self) -> dict:
        return asdict(self) | {"label": self.label}


def parse_regime(spec: str, *, inhibitor: str = "dog", trained: bool = False) -> Regime:
    """Parse ``NAME[:OPTION...]``.

    Parameters
    ----------
    spec : str
    inhibitor : str
        Inhibitor used when the spec names none.
    trained : bool
        Trained embeddings when the spec says neither ``trained`` nor ``fixed``.

    Examples
    --------
    >>> parse_regime("torus:trained").label
    'torus:trained'
    >>> parse_regime("shuffled").manifold
    'torus'
    >>> parse_regime("klein", inhibitor="diffusion").label
    'klein:diffusion'
    """
    if not isinstance(spec, str):
        raise TypeError(f"regime must be a string, got {type(spec).__name__}")
    if inhibitor not in INHIBITOR_NAMES:
        raise ValueError(f"inhibitor must be one of {list(INHIBITOR_NAMES)}, got {inhibitor!r}")
    name, *options = spec.strip().lower().split(":")
    valid = ("none", "l1", "shuffled") + MANIFOLD_NAMES
    if name not in valid:
        raise ValueError(f"regime {spec!r}: name must be one of {list(valid)}, got {name!r}")
    if name in ("none", "l1"):
        if options:
            raise ValueError(f"regime {spec!r}: {name} takes no options")
        return Regime(name)
    manifold = "torus" if name == "shuffled" else name
    for opt in options:
        if opt in ("trained", "fixed"):
            if name == "shuffled" and opt == "trained":
                raise ValueError(f"regime {spec!r}: a shuffled prior has no embedding to train")
            trained = opt == "trained"
        elif opt in INHIBITOR_NAMES:
            inhibitor = opt
        elif name == "shuffled" and opt in MANIFOLD_NAMES:
            manifold = opt
        else:
            raise ValueError(
                f"regime {spec!r}: unknown option {opt!r}; expected 'trained', 'fixed', an inhibitor "
                f"{list(INHIBITOR_NAMES)}" + (f" or a manifold {list(MANIFOLD_NAMES)}" if name == "shuffled" else "")
            )
    if name == "shuffled":
        return Regime("shuffled", manifold, inhibitor, False)
    return Regime("moduli", manifold, inhibitor, bool(trained))


def build_manifold(name: str):
    """The Appendix D parameterization of a manifold name."""
    from .. import manifolds as mf

    factories = {
        "circle": lambda: mf.Circle(5.0),
        "sphere": lambda: mf.Sphere(2, 5.0),
        "torus": lambda: mf.FlatTorus(2, 10.0),
        "klein": lambda: mf.KleinBottle(10.0),
        "torus6": lambda: mf.FlatTorus(6, 10.0),
        "r3": lambda: mf.Euclidean(3, extent=10.0),
    }
    if name not in factories:
        raise ValueError(f"manifold must be one of {list(factories)}, got {name!r}")
    return factories[name]()


def build_inhibitor(name: str, cfg):
    """The inhibitor ``name`` with the constants of ``cfg`` (a :class:`TrainConfig`)."""
    from .. import regularizers as rg

    if name == "dog":
        return rg.DifferenceOfGaussians(cfg.inhibitor_c, cfg.sigma1, cfg.sigma2)
    if name == "diffusion":
        return rg.Diffusion(cfg.inhibitor_c, cfg.power)
    if name == "sinusoid":
        return rg.Sinusoid(cfg.inhibitor_c, cfg.mu)
    raise ValueError(f"inhibitor must be one of {list(INHIBITOR_NAMES)}, got {name!r}")


def build_prior(regime: Regime, cfg):
    """The prior object of a regime, or ``None`` for ``none``."""
    if regime.kind == "none":
        return None
    from .. import regularizers as rg

    if regime.kind == "l1":
        return rg.L1Prior(reduction=cfg.reduction)
    prior = rg.ModuliPrior(
        build_manifold(regime.manifold),
        build_inhibitor(regime.inhibitor, cfg),
        trainable=regime.trained,
        reduction=cfg.reduction,
    )
    return rg.ShuffledPrior(prior) if regime.kind == "shuffled" else prior
