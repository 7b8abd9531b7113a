"""Cost of the weight-dependent priors against the fused moduli prior, on one n x n recurrent matrix.

For each n (default 256, 1024, 4096) one ``nn.RNN(1, n)`` (float32, CPU, one
thread) gets, in turn,

- ``moduli``: ``ModuliPrior`` on the 2-torus with the difference of Gaussians
  (the baseline: its closed-form fused step);
- ``comm``: ``CommunicabilityPrior`` on R^3 (seRNN; ``matrix_exp`` forward,
  autograd through it backward);
- ``topo``: ``TopoLossPrior`` on the 2-torus, Gaussian kernel of width 1
  (one ``K @ W`` product forward and backward);

and times one ``priors.add_penalty_grad_(lam)`` call ("fused") and one
``priors.penalty()`` forward plus ``backward()`` ("autograd"), with the
gradient already allocated. Times are minima over ``--repeats`` (default 3;
the n = 4096 communicability rows are run ``--big-repeats`` times, default 1,
since one call takes seconds). Ratios are to the moduli prior's fused step
at the same n.

Usage::

    PYTHONPATH=. nice -n 5 python benchmarks/prior_cost.py [--sizes 256 1024 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moduli import manifolds as mf  # noqa: E402
from moduli import regularizers as rg  # noqa: E402


def _priors():
    torus = mf.FlatTorus(2, 10.0)
    return {
        "moduli": rg.ModuliPrior(torus, rg.DifferenceOfGaussians()),
        "comm": rg.CommunicabilityPrior(mf.Euclidean(3)),
        "topo": rg.TopoLossPrior(torus, sigma=1.0),
    }


def _best(fn, repeats: int) -> float:
    """Minimum wall time of ``fn()`` in ms over ``repeats`` calls (every call timed, the first included)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-repeats", type=int, default=1,
                        help="repeats of the communicability rows at n >= 4096")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    start = time.time()
    print(f"one add_penalty_grad_ ('fused') and one penalty()+backward() ('autograd') on an n x n recurrent "
          f"matrix, float32, {torch.get_num_threads()} thread(s), torch {torch.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} cores; minima over repeats; ratio = time / moduli fused at the same n")
    print(f"{'n':>5}  {'prior':7} {'fused ms':>10} {'autograd ms':>12} {'fused ratio':>12} {'autograd ratio':>15}")
    for n in args.sizes:
        model = nn_rnn(n)
        base = None
        for label, prior in _priors().items():
            priors = rg.attach(model, prior, generator=torch.Generator().manual_seed(0))
            priors.check_finite = False  # time the penalty, not a device sync
            w = model.weight_hh_l0
            w.grad = torch.zeros_like(w)
            repeats = args.big_repeats if (label == "comm" and n >= 4096) else args.repeats

            def fused():
                priors.add_penalty_grad_(1e-3)

            def auto():
                (1e-3 * priors.penalty()).backward()

            t_fused = _best(fused, repeats)
            t_auto = _best(auto, repeats)
            if label == "moduli":
                base = t_fused
            print(f"{n:>5}  {label:7} {t_fused:>10.2f} {t_auto:>12.2f} {t_fused / base:>11.1f}x {t_auto / base:>14.1f}x",
                  flush=True)
    print(f"load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end; {time.time() - start:.0f} s")


def nn_rnn(n: int):
    torch.manual_seed(0)
    return torch.nn.RNN(1, n)


if __name__ == "__main__":
    main()
