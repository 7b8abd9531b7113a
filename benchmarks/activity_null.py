"""False-positive rate and power of the nulls of ``moduli.analysis.activity_topology``.

Usage::

    PYTHONPATH=$PWD python benchmarks/activity_null.py              # 40 loop-free data sets per family
    PYTHONPATH=$PWD python benchmarks/activity_null.py --n-null 10 --n-loop 3   # quicker

Loop-free families (none has a loop, so every significant H1 bar is a false
positive, and so is every significant H0 bar beyond the one essential class):

``gaussian blob``
    600 states: a standard 3-D Gaussian latent mapped linearly (random 3 x 32
    matrix) into 32 neurons, plus independent noise of std 0.1 per neuron.
``uniform blob``
    The same with a latent uniform in the cube [-1, 1]^3 (not Gaussian, no loop).
``untrained RNN``
    600 hidden states of a freshly initialised ``nn.RNN(4, 32)`` (PyTorch's
    default initialisation) driven by white Gaussian noise.
``slow AR(1)``
    A 600-step time series: a 3-D latent AR(1) process ``z_t = 0.98 z_{t-1} +
    sqrt(1 - 0.98^2) e_t`` (correlation time ~50 steps, so ~12 independent
    samples) mapped into 32 neurons like the blobs. Gaussian but not i.i.d.

Loop families (power): a noisy circle (600 states; ``(cos t, sin t)`` mapped
linearly into 32 neurons, noise std 0.1) should give 1 significant H1 bar,
and a noisy torus (1000 states; ``(cos t1, sin t1, cos t2, sin t2)`` into 32
neurons, noise std 0.1, 300 landmarks) 2.

Every data set runs through ``activity_topology`` with each null at the
defaults (6 principal components, ``n_surrogates=19``, ``quantile=1``: a nominal
false-alarm rate of 1/20 per dimension), 200 landmarks unless stated; data set
``s`` draws its surrogates with ``seed=s``, so the trials are independent. Each line
prints the fraction of data sets with a false (or, for loops, the wrong count of)
significant bar and the range of counts, so a rate is never printed without the
numbers behind it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

from moduli import analysis as an

N_NEURONS = 32
NOISE = 0.1


def gaussian_blob(seed: int, n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    return z @ rng.standard_normal((3, N_NEURONS)) + NOISE * rng.standard_normal((n, N_NEURONS))


def uniform_blob(seed: int, n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1, 1, (n, 3))
    return z @ rng.standard_normal((3, N_NEURONS)) + NOISE * rng.standard_normal((n, N_NEURONS))


def untrained_rnn(seed: int, n: int = 600) -> np.ndarray:
    torch.manual_seed(seed)
    rnn = torch.nn.RNN(4, N_NEURONS, batch_first=True)
    x = torch.randn(1, n, 4, generator=torch.Generator().manual_seed(seed))
    return an.collect_hidden_states(rnn, x).numpy()


def slow_ar1(seed: int, n: int = 600, rho: float = 0.98) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n, 3))
    z = np.zeros((n, 3))
    z[0] = e[0]
    for t in range(1, n):
        z[t] = rho * z[t - 1] + np.sqrt(1 - rho ** 2) * e[t]
    return z @ rng.standard_normal((3, N_NEURONS)) + NOISE * rng.standard_normal((n, N_NEURONS))


def noisy_circle(seed: int, n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, n)
    A = rng.standard_normal((2, N_NEURONS)) / np.sqrt(2)
    return np.stack([np.cos(t), np.sin(t)], 1) @ A + NOISE * rng.standard_normal((n, N_NEURONS))


def noisy_torus(seed: int, n: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, (n, 2))
    A = rng.standard_normal((4, N_NEURONS)) / np.sqrt(2)
    return np.concatenate([np.cos(t), np.sin(t)], 1) @ A + NOISE * rng.standard_normal((n, N_NEURONS))


LOOP_FREE = [("gaussian blob", gaussian_blob), ("uniform blob", uniform_blob), ("untrained RNN", untrained_rnn),
             ("slow AR(1)", slow_ar1)]
LOOPS = [("noisy circle", noisy_circle, 1, 200), ("noisy torus", noisy_torus, 2, 300)]
NULLS = ("time-shuffle", "gaussian", "phase")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-null", type=int, default=40, help="loop-free data sets per family (seeds 0..n-1)")
    ap.add_argument("--n-loop", type=int, default=10, help="circle / torus data sets (seeds 0..n-1)")
    args = ap.parse_args(argv)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    print(f"{'data':<15} {'null':<13} {'sets':>4} {'H1 false':>9} {'H1 counts':>10} "
          f"{'H0 false':>9} {'H0 extra':>9} {'s':>6}")
    for name, make in LOOP_FREE:
        for null in NULLS:
            t0 = time.perf_counter()
            sig = np.array([an.activity_topology(make(s), null=null, n_points=200, seed=s).significant
                            for s in range(args.n_null)])
            h1, h0 = sig[:, 1], sig[:, 0] - 1
            print(f"{name:<15} {null:<13} {len(sig):>4} {np.mean(h1 > 0):>9.3f} "
                  f"{f'{h1.min()}-{h1.max()}':>10} {np.mean(h0 > 0):>9.3f} {f'{h0.min()}-{h0.max()}':>9} "
                  f"{time.perf_counter() - t0:>6.0f}", flush=True)
    print(f"\n{'data':<15} {'null':<13} {'sets':>4} {'H1 wrong':>9} {'H1 counts':>10} {'H0 counts':>10} {'s':>6}")
    for name, make, want, n_points in LOOPS:
        for null in NULLS:
            t0 = time.perf_counter()
            sig = np.array([an.activity_topology(make(s), null=null, n_points=n_points, seed=s).significant
                            for s in range(args.n_loop)])
            print(f"{name:<15} {null:<13} {len(sig):>4} {np.mean(sig[:, 1] != want):>9.3f} "
                  f"{f'{sig[:, 1].min()}-{sig[:, 1].max()}':>10} {f'{sig[:, 0].min()}-{sig[:, 0].max()}':>10} "
                  f"{time.perf_counter() - t0:>6.0f}", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
