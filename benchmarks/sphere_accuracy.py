"""Where the sphere's pairwise time goes, and what its fast path buys in accuracy.

Prints the single-threaded time of ``torch.acos`` on a 4096 x 4096 float32 Gram
matrix, and the largest error against float64 distances of (a) ``Sphere.cdist``
in float32 and (b) a plain float32 ``r acos(<x, y> / r^2)``.

Usage::

    python benchmarks/sphere_accuracy.py
"""

import time

import torch

from moduli import manifolds as mf


def main(n: int = 4096, radius: float = 5.0) -> None:
    torch.set_num_threads(1)
    S = mf.Sphere(2, radius)
    x = S.random_uniform(n, generator=torch.Generator().manual_seed(0))
    G = torch.mm(x / radius, (x / radius).T).clamp_(-1, 1)
    best = min(_time(lambda: torch.acos(G)) for _ in range(5))
    print(f"torch.acos on {n}x{n} float32: {1e3 * best:.1f} ms, {1e9 * best / n**2:.2f} ns per entry")
    ref = S.cdist(x.double())
    plain = radius * torch.acos(G)
    print(f"max |error| vs float64, Sphere.cdist float32: {(S.cdist(x).double() - ref).abs().max():.2e}")
    print(f"max |error| vs float64, plain float32 acos:   {(plain.double() - ref).abs().max():.2e}")


def _time(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
