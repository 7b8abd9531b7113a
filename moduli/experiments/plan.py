"""What a sweep trains: one :class:`RunSpec` per (regime, lambda, sparsity, seed)."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Sequence

from .._validate import fraction, nonnegative
from .config import TrainConfig
from .regimes import Regime

__all__ = ["RunSpec", "plan_runs", "run_config"]

# A regime label as a file-name-friendly run id part: "torus:ricker(sigma=1.5)" -> "torus-ricker-sigma=1.5".
_ID_CHARS = str.maketrans({":": "-", "(": "-", ")": None, ",": "-"})


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep (both of its phases)."""

    task: str
    preset: str
    regime: Regime
    lam: float
    sparsity: float
    seed: int

    @property
    def run_id(self) -> str:
        """``TASK-PRESET-REGIME-lamL-sS-seedN``; names the run's records and checkpoint."""
        label = self.regime.label.translate(_ID_CHARS)
        return f"{self.task}-{self.preset}-{label}-lam{self.lam:g}-s{self.sparsity:g}-seed{self.seed}"

    def phases(self) -> tuple[str, ...]:
        """``("sparse", "lottery")``, or ``("sparse",)`` for a dense run."""
        return ("sparse", "lottery") if self.sparsity > 0 else ("sparse",)


def plan_runs(task: str, preset: str, regimes: Sequence[Regime], lams: Sequence[float],
              sparsities: Sequence[float], seeds: Sequence[int]) -> list[RunSpec]:
    """Every combination, seeds outermost so a cut-short sweep has whole seeds.

    Regime ``none`` has no lambda: its runs get ``lam = 0`` (once, whatever ``lams`` holds).

    Raises
    ------
    ValueError
        If a sequence is empty, a lambda is negative or not finite, or a
        sparsity is outside ``[0, 1)``.
    """
    if not regimes or not lams or not sparsities or not seeds:
        raise ValueError("regimes, lams, sparsities and seeds must each be non-empty")
    lam_ok = {lam: _canonical(nonnegative(lam, "lam")) for lam in lams}
    runs: dict[str, RunSpec] = {}
    for seed in seeds:
        for sparsity in sparsities:
            for regime in regimes:
                for lam in lams:
                    lam_eff = 0.0 if regime.kind == "none" else lam_ok[lam]
                    spec = RunSpec(task, preset, regime, lam_eff, _canonical(fraction(sparsity, "sparsity")), int(seed))
                    first = runs.setdefault(spec.run_id, spec)
                    if first != spec:
                        warnings.warn(f"{spec.run_id} is planned twice (sparsity {first.sparsity!r} and "
                                      f"{spec.sparsity!r}, lambda {first.lam!r} and {spec.lam!r}); training it once, "
                                      "with the first", UserWarning, stacklevel=2)
    return list(runs.values())


def _canonical(x: float) -> float:
    """``x`` at 12 significant digits: ``99.9%`` (0.9990000000000001) and ``0.999`` are one value."""
    return float(f"{x:.12g}")


def run_config(cfg: TrainConfig, spec: RunSpec) -> TrainConfig:
    """The configuration run ``spec`` trains with: ``cfg`` at the run's lambda."""
    return dataclasses.replace(cfg, lam=spec.lam)
