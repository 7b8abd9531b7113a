"""Sparsity from proximal steps: exact zeros of a weighted L1 prior, its strength raised to reach a target.

The moduli penalty with exponent 1 is a weighted L1, whose proximal operator is
a soft threshold (:meth:`moduli.regularizers.PriorSet.prox_`). Applied after
every optimizer step it zeroes the entries whose loss gradient cannot hold them
against their threshold ``lr * lam * c``; :class:`ProximalSparsifier` raises
``lam`` until the zeros reach a target sparsity, following the ramp of
:class:`~moduli.pruning.GradualMagnitudePruning`, and then fixes the mask.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .. import _validate
from ..targets import sparsity
from .gradual import GradualMagnitudePruning

__all__ = ["ProximalSparsifier"]


class ProximalSparsifier:
    """Reach ``target_sparsity`` with the soft threshold of a weighted L1 prior, raising its factor on a schedule.

    Call :meth:`after_step` after every ``optimizer.step()`` (on the loss
    alone: the prior enters through the threshold, not the gradient) and
    :meth:`step` at the start of every epoch, as with
    :class:`~moduli.pruning.GradualMagnitudePruning`.

    * Each :meth:`after_step` soft-thresholds the prior's targets by ``lr *
      lam_t * c`` (``lr`` read from the optimizer's first parameter group).
    * Every ``adjust_every`` steps the exact-zero fraction ``s`` of the targets
      is compared with the ramp ``s*(t) = p * min(1, t / t_end)``, ``t_end``
      the first step of the last epoch (where gradual magnitude pruning reaches
      ``p``): ``lam_t`` is multiplied by ``growth`` when ``s < s*`` and divided
      by it otherwise, never below the base ``lam``.
    * At the start of the last epoch (:meth:`step` called for the ``epochs``-th
      time) the mask is fixed: one-shot magnitude pruning to exactly ``p``
      (scope ``scope``), which keeps the exact zeros pruned first. The zero
      fraction the thresholds reached is kept in :attr:`reached`; the last
      epoch trains on the mask with the threshold at the base ``lam``.

    With ``epochs = 1`` the mask is fixed at the first :meth:`step`: that is
    one-shot magnitude pruning.

    Parameters
    ----------
    model : nn.Module
    priors : moduli.regularizers.PriorSet
        A prior with exponent 1 on exactly the weights to sparsify (``priors.terms``).
    target_sparsity : float
        ``p`` in ``[0, 1)``.
    epochs : int
        Epochs of the phase (``>= 1``).
    steps : int
        Optimizer steps of the phase (``>= epochs``).
    lam : float
        The base factor (``> 0``), where ``lam_t`` starts.
    scope : {"global", "tensor"}
        Of the final magnitude step.
    adjust_every : int
        Steps between adjustments of ``lam_t`` (default 10).
    growth : float
        Factor of each adjustment (``> 1``, default 1.25: a factor of 10 in about 100 steps).

    Attributes
    ----------
    lam : float
        The current factor ``lam_t``.
    reached : float or None
        The exact-zero fraction of the targets when the mask was fixed (None before).
    names : list of str
        The sparsified weights.
    """

    def __init__(self, model: nn.Module, priors, target_sparsity: float, *, epochs: int, steps: int, lam: float,
                 scope: str = "global", adjust_every: int = 10, growth: float = 1.25):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
        terms = getattr(priors, "terms", None)
        if not isinstance(terms, dict) or not hasattr(priors, "prox_"):
            raise TypeError(f"priors must be a moduli.regularizers.PriorSet (from attach); got {type(priors).__name__}")
        if any(t.exponent != 1.0 for t in terms.values()):
            raise ValueError("the proximal sparsifier needs a weighted L1 prior (exponent 1)")
        p = _validate.real(target_sparsity, "target_sparsity")
        if not 0 <= p < 1:
            raise ValueError(f"target_sparsity must be in [0, 1); got {target_sparsity}")
        for name, value in (("epochs", epochs), ("steps", steps), ("adjust_every", adjust_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if epochs > steps:
            raise ValueError(f"epochs ({epochs}) cannot exceed steps ({steps})")
        lam = _validate.real(lam, "lam")
        if lam <= 0:
            raise ValueError(f"lam must be positive (the threshold starts there and grows by factors); got {lam}")
        growth = _validate.real(growth, "growth")
        if growth <= 1:
            raise ValueError(f"growth must be > 1; got {growth}")
        self.model, self.priors = model, priors
        self.names = list(terms)
        self.target_sparsity, self.epochs, self.steps = p, epochs, steps
        self.base_lam = self.lam = lam
        self.adjust_every, self.growth = adjust_every, growth
        self.t_end = round((epochs - 1) * steps / epochs)
        self.reached: Optional[float] = None
        self._pruner = GradualMagnitudePruning(model, target_sparsity=p, epochs=1, scope=scope, targets=self.names)
        self._epoch = 0
        self._taken = 0

    def ramp(self, t: int) -> float:
        """The sparsity the thresholds aim at after ``t`` steps: ``p * min(1, t / t_end)``."""
        if self.t_end == 0:
            return self.target_sparsity
        return self.target_sparsity * min(1.0, t / self.t_end)

    @property
    def zero_fraction(self) -> float:
        """The exact-zero fraction of the sparsified weights now."""
        return sparsity(self.model, names=self.names)

    @property
    def fixed(self) -> bool:
        """Whether the mask has been fixed (the last epoch has begun)."""
        return self.reached is not None

    def step(self) -> None:
        """Start the next epoch; at the start of the last one, fix the mask at exactly ``target_sparsity``."""
        self._epoch += 1
        if self._epoch == self.epochs and not self.fixed:
            self.reached = self.zero_fraction
            self._pruner.step()
            self.lam = self.base_lam

    @torch.no_grad()
    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        """The soft threshold after ``optimizer.step()``, and every ``adjust_every`` steps the factor's adjustment."""
        lr = float(optimizer.param_groups[0]["lr"])
        self.priors.prox_(lr, self.lam)
        self._taken += 1
        if not self.fixed and self._taken % self.adjust_every == 0:
            if self.zero_fraction < self.ramp(self._taken):
                self.lam *= self.growth
            else:
                self.lam = max(self.base_lam, self.lam / self.growth)
            if not math.isfinite(self.lam):
                raise ValueError("the proximal sparsifier's factor overflowed: the loss holds the weights against "
                                 "any threshold (is the learning rate zero?)")
