"""Time one training step of each task at the smoke and cpu presets (one thread).

Prints a table: milliseconds per step (median of timed steps after warm-up) with
no prior and with the torus prior (fused gradient), and the implied minutes per
training phase. Run: ``PYTHONPATH=. python benchmarks/experiments_step_time.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from moduli.experiments import get_preset, make_task, parse_regime
from moduli.experiments.regimes import build_prior


def time_steps(task_name: str, preset: str, regime: str, steps: int) -> float:
    cfg = get_preset(task_name, preset)
    task = make_task(task_name, cfg, seed=0)
    torch.manual_seed(0)
    model = task.build_model()
    prior = build_prior(parse_regime(regime), cfg)
    priors = None
    if prior is not None:
        from moduli import regularizers as rg

        priors = rg.attach(model, prior, targets=task.recurrent, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(1)
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        loss = task.loss(model, task.sample(gen))
        opt.zero_grad()
        loss.backward()
        if priors is not None:
            priors.add_penalty_grad_(cfg.lam)
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), cfg.steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--presets", nargs="+", default=["smoke", "cpu"])
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"{'task':11s} {'preset':6s} {'regime':7s} {'ms/step':>8s} {'steps':>6s} {'min/phase':>9s}")
    for preset in args.presets:
        for task in ("navigation", "adding"):
            for regime in ("none", "torus"):
                ms, n = time_steps(task, preset, regime, args.steps)
                print(f"{task:11s} {preset:6s} {regime:7s} {ms:8.2f} {n:6d} {ms * n / 60e3:9.2f}")


if __name__ == "__main__":
    main()
