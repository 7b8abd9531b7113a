"""Neuron swaps: the time of one ``swap_neurons_`` pass, and how much swaps lower the prior's cost.

One ReLU RNN per hidden size n (default 256 and 1024), float32, the recurrent
matrix under the doc's torus prior (``FlatTorus(2, 10.0)``, difference of
Gaussians, random uniform embedding), one torch thread. Three recurrent
matrices:

- ``random``: i.i.d. Gaussian entries, scale 1/sqrt(n) (no structure to find);
- ``low-rank``: rank 8 plus i.i.d. noise of a tenth of its entries' scale
  (the spectrum of a trained recurrent matrix, no geometry);
- ``hidden-local``: entries ``exp(-d^2 / 2)`` of the neurons' distances on a
  hidden torus embedding (the prior's own space) unrelated to the attached
  one, plus noise: a network whose geometry the swaps can find.

For each: the time of one pass (a call with ``passes=1``; least of
``--repeats`` on a fresh copy), the cost lowered by that pass, and by passes
until one applies no swap (at most ``--max-passes``), in percent of the cost
before, with the passes and swaps it took. Rows for ``candidates=16`` (the
default) and, at the smallest n, every partner (``n - 1``).

Usage::

    PYTHONPATH=. python benchmarks/swap_cost.py [--sizes 256 1024] [--repeats 3] [--max-passes 100]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time

import torch
from torch import nn

from moduli import manifolds as mf
from moduli import regularizers as rg


def matrix(kind: str, n: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "random":
        return torch.randn(n, n, generator=gen) / math.sqrt(n)
    if kind == "low-rank":
        r = 8
        u, v = torch.randn(n, r, generator=gen), torch.randn(n, r, generator=gen)
        w = u @ v.t() / math.sqrt(n * r)
        return w + 0.1 * w.std() * torch.randn(n, n, generator=gen)
    if kind == "hidden-local":
        torus = mf.FlatTorus(2, 10.0)
        hidden = torus.random_uniform(n, generator=gen)
        w = torch.exp(-0.5 * torus.cdist(hidden) ** 2)
        return w * torch.randn(n, n, generator=gen).sign() + 0.05 * torch.randn(n, n, generator=gen)
    raise ValueError(kind)


def build(kind: str, n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    model = nn.RNN(4, n, nonlinearity="relu")
    with torch.no_grad():
        model.weight_hh_l0.copy_(matrix(kind, n, gen))
    prior = rg.ModuliPrior(mf.FlatTorus(2, 10.0), rg.DifferenceOfGaussians())
    return model, rg.attach(model, prior, generator=gen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-passes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; torch threads 1")
    head = (f"{'n':>5} {'matrix':>12} {'cand':>5} {'1 pass ms':>10} {'1 pass %':>9} {'conv. %':>8} "
            f"{'passes':>6} {'swaps':>6} {'conv. s':>8}")
    print(head)
    for n in args.sizes:
        for kind in ("random", "low-rank", "hidden-local"):
            for cand in ([16, n - 1] if n == min(args.sizes) else [16]):
                model, priors = build(kind, n, args.seed)
                times = []
                one = None
                for _ in range(args.repeats):
                    trial = copy.deepcopy((model, priors))[1]
                    t0 = time.perf_counter()
                    res = rg.swap_neurons_(trial, candidates=cand, passes=1)
                    times.append(time.perf_counter() - t0)
                    one = res
                t0 = time.perf_counter()
                res = rg.swap_neurons_(priors, candidates=cand, passes=args.max_passes)
                conv_s = time.perf_counter() - t0
                rec = res.groups["hidden_l0"]
                before = one.cost_before
                print(f"{n:>5} {kind:>12} {cand:>5} {1e3 * min(times):>10.1f} "
                      f"{100 * (before - one.cost_after) / before:>9.2f} "
                      f"{100 * (before - res.cost_after) / before:>8.2f} {rec.passes:>6} {rec.swaps:>6} "
                      f"{conv_s:>8.1f}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
