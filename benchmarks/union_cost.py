"""Cost of a disjoint union's ``cdist`` against one flat torus of the same n.

Three flat 2-tori of periods 10/sqrt(2), 10 and 10 sqrt(2) (grid-cell modules)
with an infinite cross distance, n points in all, against ``FlatTorus(2, 10)``
with n points. Each is timed best-of ``--reps`` (float32, no autograd, one
thread by default), with the union's points in contiguous module blocks
(``DisjointUnion.assign``) and drawn i.i.d. (``random_uniform``, modules
interleaved). A last pair of rows times ``cdist`` with autograd (the path a
trained embedding's coefficients take), on the same points.

Usage::

    PYTHONPATH=$PWD python benchmarks/union_cost.py            # n = 1024
    PYTHONPATH=$PWD python benchmarks/union_cost.py --n 4096 --reps 5
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from moduli import manifolds as mf


def best_ms(fn, reps: int) -> float:
    fn()  # warm-up
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = args.n
    torus = mf.FlatTorus(2, 10.0)
    union = mf.DisjointUnion(*(mf.FlatTorus(2, 10.0 * r) for r in (2 ** -0.5, 1.0, 2 ** 0.5)))
    g = torch.Generator().manual_seed(0)
    xt = torus.random_uniform(n, generator=g)
    sizes = [n // 3, n // 3, n - 2 * (n // 3)]
    xb = union.assign(sizes, generator=g)
    xr = union.random_uniform(n, generator=g)

    base = best_ms(lambda: torus.cdist(xt), args.reps)
    rows = [("FlatTorus(2, 10)", base)]
    rows.append(("union, module blocks (assign)", best_ms(lambda: union.cdist(xb), args.reps)))
    rows.append(("union, interleaved (random_uniform)", best_ms(lambda: union.cdist(xr), args.reps)))

    def grad_ms(M, x):
        x = x.clone().requires_grad_()
        return best_ms(lambda: M.cdist(x, validate=False), args.reps)

    grad_base = grad_ms(torus, xt)
    grad_rows = [("FlatTorus(2, 10), autograd", grad_base),
                 ("union, module blocks, autograd", grad_ms(union, xb))]

    print(f"cdist of n = {n} points, float32, CPU, {args.threads} thread(s), best of {args.reps}")
    print(f"{'space':40s} {'ms':>8s} {'ratio':>6s}")
    for name, ms in rows:
        print(f"{name:40s} {ms:8.2f} {ms / base:6.2f}")
    for name, ms in grad_rows:
        print(f"{name:40s} {ms:8.2f} {ms / grad_base:6.2f}")


if __name__ == "__main__":
    main()
