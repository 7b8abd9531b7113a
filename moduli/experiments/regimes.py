"""Regularization regimes: the paper's controls and the moduli priors, by name.

A regime is written on the command line as ``NAME[:OPTION...]``:

* ``none`` -- no prior (plain magnitude pruning);
* ``l1`` -- the L1 prior (every coefficient 1);
* ``shuffled`` or ``shuffled:MANIFOLD`` -- the moduli prior's coefficients
  randomly permuted (default manifold: the torus);
* a manifold name of :data:`moduli.manifolds.catalog.NAMES` -- ``circle``,
  ``sphere``, ``torus``, ``klein``, ``torus6``, ``r3`` -- the moduli prior on
  that space with the parameterizations of Appendix D.

Options: ``trained`` / ``fixed`` (embeddings learned by gradient descent or
not) and an inhibitor name of :data:`moduli.regularizers.INHIBITORS`
(``dog``, ``ricker``, ``diffusion``, ``sinusoid``, ``diagonal``), optionally
with arguments in parentheses, e.g. ``torus:trained``, ``klein:diffusion``,
``torus:ricker(sigma=1.5)``, ``r3:trained:dog(sigma1=0.7,sigma2=3)``.

Option ``zeromin`` shifts the inhibitor down by its minimum on the space
(:class:`moduli.regularizers.ZeroMinimum`), and ``authors`` is the
coefficient of the authors' public navigation code: ``dog(c=100,sigma1=0.5)``
with ``zeromin``, i.e. ``81.14 - 100 (exp(-d^2/5) - exp(-4 d^2))`` on the
torus, 0 near ``d = 0.89`` (``docs/protocol.md``); ``torus:authors`` is
written ``torus:dog(c=100,sigma1=0.5):zeromin``.

An inhibitor's arguments default to its class defaults, except where
:data:`REGIME_DEFAULTS` says otherwise (the runner's difference of Gaussians
has ``sigma1 = 1``, the shape of the paper's Figure 6b). Arguments equal to
these defaults are dropped, so every setting has one canonical label; the
others appear in it, sorted by name (``torus:dog(sigma1=0.7)``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from ..manifolds import catalog
from ..regularizers import (
    INHIBITORS, L1Prior, ModuliPrior, ShuffledPrior, ZeroMinimum, inhibitor_arguments, make_inhibitor,
)

__all__ = ["Regime", "parse_regime", "parse_inhibitor_args", "REGIME_DEFAULTS", "INHIBITOR_ALIASES",
           "MANIFOLD_NAMES", "INHIBITOR_NAMES", "build_manifold", "build_inhibitor", "build_prior"]

MANIFOLD_NAMES = catalog.NAMES
INHIBITOR_NAMES = tuple(INHIBITORS)
#: The Appendix D space of a manifold name (an alias of :func:`moduli.manifolds.catalog.build`).
build_manifold = catalog.build

#: The one place where the runner's inhibitor constants differ from the classes' defaults.
#: Changing a value here changes the numbers and labels of every run that relies on it.
REGIME_DEFAULTS: dict[str, dict[str, float]] = {"dog": {"sigma1": 1.0}}

#: Regime options that stand for an inhibitor with arguments and ``zeromin``:
#: ``authors`` is the inverted difference of Gaussians of the authors' navigation
#: code (regularizer.py:57-58 and 93-95 at commit ab32906, docs/protocol.md).
INHIBITOR_ALIASES: dict[str, tuple[str, dict[str, float], bool]] = {
    "authors": ("dog", {"c": 100.0, "sigma1": 0.5, "sigma2": 5**0.5}, True),
}

_DEFAULT_INHIBITOR = "dog"
_ARGS = re.compile(r"^([a-z_][a-z0-9_]*)\((.*)\)$")


def _defaults(inhibitor: str) -> dict[str, Any]:
    """The regime layer's arguments of ``inhibitor``: class defaults, then :data:`REGIME_DEFAULTS`."""
    return inhibitor_arguments(inhibitor) | REGIME_DEFAULTS.get(inhibitor, {})


def _number(text: str) -> str:
    """Canonical spelling of a number: the shortest round-trip form, ``2`` for ``2.0``."""
    s = repr(float(text))
    return s[:-2] if s.endswith(".0") else s


def _check_args(inhibitor: str, args: Mapping[str, Any]) -> dict[str, float]:
    """``args`` as floats, checked against the arguments of ``inhibitor``."""
    known = _defaults(inhibitor)
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ValueError(f"inhibitor {inhibitor!r} takes the arguments {list(known)}; got {unknown}")
    out = {}
    for name, value in args.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"inhibitor {inhibitor!r}: argument {name} must be a finite number, got {value!r}")
        out[name] = float(value)
    return out


@dataclass(frozen=True)
class Regime:
    """One regularization regime.

    Attributes
    ----------
    kind : {"none", "l1", "shuffled", "moduli"}
    manifold : str or None
        Manifold name (:data:`MANIFOLD_NAMES`) for ``moduli`` and ``shuffled``.
    inhibitor : str or None
        Inhibitor name (:data:`INHIBITOR_NAMES`) for ``moduli`` and ``shuffled``.
    trained : bool
        Embeddings trained by gradient descent (``moduli`` only).
    inhibitor_args : tuple of (str, float)
        The inhibitor's arguments that differ from the regime defaults, sorted
        by name. A mapping may be given; it is checked and made canonical
        (arguments at their default are dropped).
    zero_min : bool
        Shift the inhibitor down by its minimum on the space, so that its
        smallest coefficient is 0 (option ``zeromin``; ``moduli`` and
        ``shuffled`` only).
    """

    kind: str
    manifold: Optional[str] = None
    inhibitor: Optional[str] = None
    trained: bool = False
    inhibitor_args: tuple = field(default=())
    zero_min: bool = False

    def __post_init__(self):
        if self.kind not in ("none", "l1", "shuffled", "moduli"):
            raise ValueError(f"kind must be one of ['none', 'l1', 'shuffled', 'moduli'], got {self.kind!r}")
        args = dict(self.inhibitor_args)
        if not isinstance(self.zero_min, bool):
            raise TypeError(f"zero_min must be a bool, got {self.zero_min!r}")
        if self.kind in ("none", "l1"):
            if self.manifold is not None or self.inhibitor is not None or self.trained or args or self.zero_min:
                raise ValueError(f"regime {self.kind!r} takes no manifold, inhibitor, arguments, zeromin or training")
            object.__setattr__(self, "inhibitor_args", ())
            return
        if self.manifold not in MANIFOLD_NAMES:
            raise ValueError(f"manifold must be one of {list(MANIFOLD_NAMES)}, got {self.manifold!r}")
        if self.inhibitor not in INHIBITORS:
            raise ValueError(f"inhibitor must be one of {list(INHIBITOR_NAMES)}, got {self.inhibitor!r}")
        defaults = _defaults(self.inhibitor)
        args = {k: v for k, v in _check_args(self.inhibitor, args).items() if v != defaults[k]}
        object.__setattr__(self, "inhibitor_args", tuple(sorted(args.items())))

    @property
    def inhibitor_spelling(self) -> str:
        """The inhibitor with its non-default arguments, e.g. ``"ricker(sigma=1.5)"``."""
        if not self.inhibitor_args:
            return self.inhibitor
        return f"{self.inhibitor}({','.join(f'{k}={_number(v)}' for k, v in self.inhibitor_args)})"

    @property
    def label(self) -> str:
        """Canonical name, e.g. ``"torus"``, ``"r3:trained"``, ``"shuffled:klein"``, ``"torus:ricker(sigma=1.5)"``."""
        if self.kind in ("none", "l1"):
            return self.kind
        parts = ["shuffled"] if self.kind == "shuffled" else []
        if self.kind == "moduli" or self.manifold != "torus":
            parts.append(self.manifold)
        if self.trained:
            parts.append("trained")
        if self.inhibitor != _DEFAULT_INHIBITOR or self.inhibitor_args:
            parts.append(self.inhibitor_spelling)
        if self.zero_min:
            parts.append("zeromin")
        return ":".join(parts)

    def arguments(self) -> dict[str, float]:
        """Every argument the inhibitor is built with (defaults included); ``{}`` without one."""
        if self.inhibitor is None:
            return {}
        return _defaults(self.inhibitor) | dict(self.inhibitor_args)

    def to_dict(self) -> dict:
        """The record's ``regime_spec``: the fields (``inhibitor_args`` as a dict) and the label.

        ``zero_min`` appears only when true, so the specs of other regimes are
        what they were before the option existed.
        """
        out = {"kind": self.kind, "manifold": self.manifold, "inhibitor": self.inhibitor, "trained": self.trained,
               "inhibitor_args": dict(self.inhibitor_args), "label": self.label}
        if self.zero_min:
            out["zero_min"] = True
        return out

    @classmethod
    def from_dict(cls, spec: Mapping) -> "Regime":
        """The regime of a record's ``regime_spec`` (``inhibitor_args``, ``zero_min`` may be absent: older records)."""
        return cls(spec["kind"], spec.get("manifold"), spec.get("inhibitor"), bool(spec.get("trained", False)),
                   dict(spec.get("inhibitor_args") or {}), bool(spec.get("zero_min", False)))


def parse_inhibitor_args(items: Optional[Sequence[str]]) -> dict[str, float]:
    """``["sigma=1.5", "c=2"]`` -> ``{"sigma": 1.5, "c": 2.0}`` (the ``--inhibitor-arg`` values).

    Raises
    ------
    ValueError
        If an item is not ``NAME=NUMBER`` or a name repeats.

    Examples
    --------
    >>> parse_inhibitor_args(["sigma=1.5"])
    {'sigma': 1.5}
    """
    out: dict[str, float] = {}
    for item in items or ():
        name, eq, value = str(item).partition("=")
        name = name.strip().lower()
        try:
            number = float(value)
        except ValueError:
            number = None
        if not eq or not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or number is None or not math.isfinite(number):
            raise ValueError(f"inhibitor argument must be NAME=NUMBER (e.g. sigma=1.5), got {item!r}")
        if name in out:
            raise ValueError(f"inhibitor argument {name} is given twice")
        out[name] = number
    return out


def parse_regime(spec: str, *, inhibitor: str = _DEFAULT_INHIBITOR, trained: bool = False,
                 inhibitor_args: Optional[Mapping[str, float]] = None) -> Regime:
    """Parse ``NAME[:OPTION...]``.

    Parameters
    ----------
    spec : str
    inhibitor : str
        Inhibitor used when the spec names none.
    trained : bool
        Trained embeddings when the spec says neither ``trained`` nor ``fixed``.
    inhibitor_args : mapping, optional
        Arguments of the regime's inhibitor (``--inhibitor-arg``); arguments
        written in the spec, ``ricker(sigma=2)``, take precedence. Ignored by
        ``none`` and ``l1``.

    Raises
    ------
    ValueError
        On an unknown name or option, or an argument the inhibitor does not
        take (the message lists the ones it takes).

    Examples
    --------
    >>> parse_regime("torus:trained").label
    'torus:trained'
    >>> parse_regime("shuffled").manifold
    'torus'
    >>> parse_regime("klein", inhibitor="diffusion").label
    'klein:diffusion'
    >>> parse_regime("torus:ricker(sigma=1.50)").label
    'torus:ricker(sigma=1.5)'
    >>> parse_regime("shuffled:authors").label
    'shuffled:dog(c=100,sigma1=0.5):zeromin'
    """
    if not isinstance(spec, str):
        raise TypeError(f"regime must be a string, got {type(spec).__name__}")
    if inhibitor not in INHIBITORS:
        raise ValueError(f"inhibitor must be one of {list(INHIBITOR_NAMES)}, got {inhibitor!r}")
    name, *options = spec.strip().lower().replace(" ", "").split(":")
    valid = ("none", "l1", "shuffled") + MANIFOLD_NAMES
    if name not in valid:
        raise ValueError(f"regime {spec!r}: name must be one of {list(valid)}, got {name!r}")
    if name in ("none", "l1"):
        if options:
            raise ValueError(f"regime {spec!r}: {name} takes no options")
        return Regime(name)
    manifold = "torus" if name == "shuffled" else name
    inline = None
    zero_min = False
    for opt in options:
        m = _ARGS.match(opt)
        if opt in INHIBITOR_ALIASES:
            inhibitor, alias_args, zero_min = INHIBITOR_ALIASES[opt][0], dict(INHIBITOR_ALIASES[opt][1]), True
            inline = alias_args | (inline or {})
            continue
        if opt == "zeromin":
            zero_min = True
            continue
        if m and m.group(1) in INHIBITORS:
            inhibitor = m.group(1)
            try:
                inline = parse_inhibitor_args([a for a in m.group(2).split(",") if a])
            except ValueError as exc:
                raise ValueError(f"regime {spec!r}: {exc}") from None
        elif opt in ("trained", "fixed"):
            if name == "shuffled" and opt == "trained":
                raise ValueError(f"regime {spec!r}: a shuffled prior has no embedding to train")
            trained = opt == "trained"
        elif opt in INHIBITORS:
            inhibitor = opt
        elif name == "shuffled" and opt in MANIFOLD_NAMES:
            manifold = opt
        else:
            raise ValueError(
                f"regime {spec!r}: unknown option {opt!r}; expected 'trained', 'fixed', 'zeromin', "
                f"{', '.join(repr(a) for a in INHIBITOR_ALIASES)}, an inhibitor "
                f"{list(INHIBITOR_NAMES)} (optionally with arguments, e.g. ricker(sigma=1.5))"
                + (f" or a manifold {list(MANIFOLD_NAMES)}" if name == "shuffled" else "")
            )
    args = dict(inhibitor_args or {}) | (inline or {})
    try:
        regime = Regime("shuffled" if name == "shuffled" else "moduli", manifold, inhibitor,
                        bool(trained) and name != "shuffled", args, zero_min)
        build_inhibitor(regime)  # the inhibitor's own range checks (sigma2 > sigma1, power >= 1, ...)
    except ValueError as exc:
        raise ValueError(f"regime {spec!r}: {exc}") from None
    return regime


def build_inhibitor(regime: Regime):
    """The inhibitor of a ``moduli`` or ``shuffled`` regime, with its arguments (shifted to a zero minimum on
    the regime's space under ``zero_min``)."""
    if regime.inhibitor is None:
        raise ValueError(f"regime {regime.label!r} has no inhibitor")
    f = make_inhibitor(regime.inhibitor, **regime.arguments())
    return ZeroMinimum(f, build_manifold(regime.manifold).diameter) if regime.zero_min else f


def build_prior(regime: Regime, cfg):
    """The prior object of a regime, or ``None`` for ``none``.

    ``cfg`` (a :class:`~moduli.experiments.config.TrainConfig`) gives the reduction.
    """
    if regime.kind == "none":
        return None
    if regime.kind == "l1":
        return L1Prior(reduction=cfg.reduction)
    prior = ModuliPrior(build_manifold(regime.manifold), build_inhibitor(regime), trainable=regime.trained,
                        reduction=cfg.reduction)
    return ShuffledPrior(prior) if regime.kind == "shuffled" else prior
