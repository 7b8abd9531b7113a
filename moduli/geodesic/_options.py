"""The settings of a geodesic walk: one frozen, validated dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

from torch import nn

from .. import _validate
from ._metric import METRICS

__all__ = ["GeodesicOptions"]


@dataclass(frozen=True)
class GeodesicOptions:
    """How a walk of :func:`sparsify` or :func:`transfer` runs.

    Every field can also be passed to those functions as a keyword argument,
    which overrides the same field of their ``options``.  Values are checked
    on construction: a bad one raises ``TypeError`` (wrong type) or
    ``ValueError`` (bad value) naming the field.

    Every length and weight of the walk is measured on the model and data
    at hand, so the defaults carry over to networks they were not tuned on:
    the trust radius is a fraction of the initial distance ``|v_0|`` to the
    hyperplane (or the target network) per step, and ``beta`` is read in
    units of the metric along the projection direction.  The paper's
    absolute parameters stay available as ``eps`` and ``beta_absolute``.

    Attributes
    ----------
    steps : int, default 100
        Maximum number of steps (>= 0); exactly this many for
        ``mode="compensate"``.
    trust : float, default 3.0
        Trust radius relative to the average step to the target: each step
        has ``|θ| <= trust · |v_0| / steps`` (> 0, dimensionless).  With
        ``mode="compensate"`` it bounds the compensating move of the kept
        weights; with Eq. 7 a walk whose path is at most ``trust`` times
        the straight line reaches the hyperplane within ``steps``.  Unused
        when ``eps`` is given.
    eps : float or None, default None
        The paper's absolute squared radius (0.01 in Eq. 7), in squared
        weight units: every step has ``|θ|² <= eps``.  > 0.  Overrides
        ``trust``.
    beta : float, default 0.03
        Weight of the linear term ``β θᵀv`` of Eq. 7 in units of the metric
        along ``v`` (> 0, dimensionless): the weight used at each step is
        ``beta · 2 ρ_v · r / |v|``, with ``ρ_v = vᵀ g v / |v|²`` the metric's
        Rayleigh quotient along ``v`` and ``r`` the radius.  At ``beta = 1``
        a metric equal to ``ρ_v`` in every direction would take a full step
        along ``v``; smaller values let the metric bend the step away from
        ``v`` more, larger ones make the walk more Euclidean (0.03 was the
        best of 0.03, 0.1, 0.3 and 1 on the validation split of the tuning
        network, see ``docs/geodesic.md``).  Unused with
        ``mode="compensate"`` or when ``beta_absolute`` is given.
    beta_absolute : float or None, default None
        The paper's ``β`` in the units of the metric (> 0); overrides
        ``beta``.  Its good values depend on the network (on the digits MLP
        ``1`` is essentially the straight line and ``0.01`` bends).
    metric : {"output", "fisher"}, default "output"
        ``g = JᵀJ / B`` or ``g = Jᵀ H J / B`` with ``H = diag(p) − ppᵀ`` of
        the softmax of each example.
    restore : float or None, default None
        Strength (>= 0, dimensionless) of the Gauss-Newton pull back towards
        the starting network's outputs, an extension beyond Eq. 7: the linear
        term becomes ``β v + 2 · restore · Jᵀ H (f(w_0) − f(w)) / B``.  For
        :func:`sparsify` it is masked to the weights the current projection
        keeps.  0 is the paper's step.  ``None``: 1 for
        :func:`sparsify` with ``mode="compensate"`` (the full Gauss-Newton
        correction), 0 otherwise.
    evaluate : callable or None, default None
        ``evaluate(model) -> dict of float`` (or one float, stored as
        ``"metric"``), called under ``no_grad`` at the start, every
        ``eval_every`` steps and at the end; results go into the history rows.
    eval_every : int, default 10
        Steps between calls of ``evaluate`` (>= 1).
    batch_size : int or None, default None
        For tensor data: size of the random batch drawn at each step
        (>= 1; ``None``: the whole tensor at every step).
    lanczos_iters : int, default 40
        Most products with ``g`` (Lanczos vectors) per step (>= 1); memory
        is ``lanczos_iters`` × the number of parameters.
    lanczos_tol : float or None, default 0.05
        Stop a step's Lanczos process once its solution solves the step's
        KKT system to this relative residual (> 0); ``None`` always uses
        ``lanczos_iters`` products.
    tol : float, default 0.01
        Relative distance ``|v| / |v_0|`` (> 0) at which an Eq. 7 walk stops.
    keep_every : int or None, default None
        Keep a copy of the flat weights every that many steps (>= 1) in
        ``path.points``; ``None`` keeps none.  :func:`transfer` uses 10 when
        it is given no ``options``.
    seed : int, default 0
        Seed of the batch sampler.
    progress : bool, default True
        Show a tqdm progress bar.

    Examples
    --------
    >>> from moduli.geodesic import GeodesicOptions
    >>> opts = GeodesicOptions(eps=0.04, lanczos_iters=20, progress=False)
    >>> opts.steps, opts.eps
    (100, 0.04)
    >>> GeodesicOptions(eps=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: eps must be a finite positive number; got -1.0
    """

    steps: int = 100
    trust: float = 3.0
    eps: Optional[float] = None
    beta: float = 0.03
    beta_absolute: Optional[float] = None
    metric: str = "output"
    restore: Optional[float] = None
    evaluate: Optional[Callable[[nn.Module], dict]] = None
    eval_every: int = 10
    batch_size: Optional[int] = None
    lanczos_iters: int = 40
    lanczos_tol: Optional[float] = 0.05
    tol: float = 1e-2
    keep_every: Optional[int] = None
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        # each number is stored as the Python int/float its check returns, so
        # numpy scalars (np.float32(0.01), np.int64(300)) behave exactly like
        # the Python numbers they convert to
        def put(field, value):
            object.__setattr__(self, field, value)

        put("steps", _validate.integer(self.steps, "steps", minimum=0))
        put("trust", _validate.positive(self.trust, "trust"))
        if self.eps is not None:
            put("eps", _validate.positive(self.eps, "eps"))
        put("beta", _validate.positive(self.beta, "beta"))
        if self.beta_absolute is not None:
            put("beta_absolute", _validate.positive(self.beta_absolute, "beta_absolute"))
        _validate.choice(self.metric, "metric", METRICS)
        if self.restore is not None:
            put("restore", _validate.nonnegative(self.restore, "restore"))
        if self.evaluate is not None and not callable(self.evaluate):
            raise TypeError(f"evaluate must be callable or None; got {type(self.evaluate).__name__}")
        put("eval_every", _validate.integer(self.eval_every, "eval_every", minimum=1))
        if self.batch_size is not None:
            put("batch_size", _validate.integer(self.batch_size, "batch_size", minimum=1))
        put("lanczos_iters", _validate.integer(self.lanczos_iters, "lanczos_iters", minimum=1))
        if self.lanczos_tol is not None:
            put("lanczos_tol", _validate.positive(self.lanczos_tol, "lanczos_tol"))
        put("tol", _validate.positive(self.tol, "tol"))
        if self.keep_every is not None:
            put("keep_every", _validate.integer(self.keep_every, "keep_every", minimum=1))
        put("seed", _validate.integer(self.seed, "seed"))
        if not isinstance(self.progress, bool):
            raise TypeError(f"progress must be a bool; got {type(self.progress).__name__}")


_FIELDS = tuple(f.name for f in dataclasses.fields(GeodesicOptions))


def resolve_options(caller: str, options: Optional[GeodesicOptions], overrides: dict,
                    default: GeodesicOptions) -> GeodesicOptions:
    """``options`` (or ``default`` when None) with the keyword ``overrides`` applied.

    Raises
    ------
    TypeError
        If ``options`` is not a :class:`GeodesicOptions` or an override is not
        one of its fields (the message lists the valid ones).
    """
    if options is None:
        options = default
    elif not isinstance(options, GeodesicOptions):
        raise TypeError(f"{caller}: options must be a GeodesicOptions or None; got {type(options).__name__}")
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"valid options: {', '.join(_FIELDS)}")
    return dataclasses.replace(options, **overrides) if overrides else options
