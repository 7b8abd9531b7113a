"""Time moduli.analysis: Rips persistence and connectivity statistics at 400-4096 points/nodes.

Usage::

    PYTHONPATH=$PWD python benchmarks/bench_analysis.py                # full table
    PYTHONPATH=$PWD python benchmarks/bench_analysis.py --quick        # smaller sizes
    PYTHONPATH=$PWD python benchmarks/bench_analysis.py --out FILE.csv # also write a CSV (--force to overwrite)

Persistence: uniform points on the flat torus R^2 / 10 Z^2 (geodesic distances),
coefficients Z/2. Every row prints the two longest H1 bars and the Betti numbers
counting bars longer than 1.2 (the torus has 1, 2, 1), so speed is never
reported for a wrong answer. Rows marked "exact ref" are the reference for the
bottleneck column of the approximate rows with the same n and maxdim.

Connectivity: a geometrically local pruned matrix on the same torus (keep
``w_jk`` when ``d(j, k)`` is below the radius giving the target density) and a
symmetric random mask of equal density; ``connectivity(..., points, manifold)``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import sys
import time

import numpy as np
import torch


def _torus_points(n: int, seed: int):
    from moduli import manifolds as mf

    T = mf.FlatTorus(2, 10.0)
    return T, T.random_uniform(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def bench_persistence(cases, rows, progress):
    from moduli import analysis as an

    refs = {}
    for n, maxdim, label, kwargs in progress(cases, desc="persistence"):
        T, x = _torus_points(n, seed=0)
        t0 = time.perf_counter()
        r = an.persistence(x, manifold=T, maxdim=maxdim, coeff=2, **kwargs)
        dt = time.perf_counter() - t0
        h1 = np.sort(r.lifetimes(1))[::-1][:2]
        bneck = ""
        if label == "exact ref":
            refs[(n, maxdim)] = r
        elif (n, maxdim) in refs:
            bneck = f"{an.bottleneck_distance(refs[(n, maxdim)], r, dim=1):.3f}"
        rows.append({
            "bench": "persistence", "size": n, "maxdim": maxdim, "method": label,
            "seconds": f"{dt:.2f}", "betti(1.2)": str(r.betti(1.2)),
            "longest H1": f"{h1[0]:.2f} {h1[1]:.2f}", "bottleneck H1 vs exact": bneck,
            "detail": r.method,
        })


def bench_connectivity(cases, rows, progress):
    from moduli import analysis as an

    for n, density in progress(cases, desc="connectivity"):
        T, x = _torus_points(n, seed=1)
        D = T.cdist(x)
        radius = float(torch.quantile(D[torch.triu(torch.ones(n, n, dtype=torch.bool), 1)][:2_000_000], density))
        g = torch.Generator().manual_seed(2)
        Wfull = torch.randn(n, n, generator=g, dtype=torch.float64)
        masks = {
            "local": D < radius,
            "random": torch.triu(torch.rand(n, n, generator=g, dtype=torch.float64) < density, 1),
        }
        masks["random"] = masks["random"] | masks["random"].T  # symmetric like the local mask
        for kind, mask in masks.items():
            W = Wfull * mask
            t0 = time.perf_counter()
            s = an.connectivity(W, points=x, manifold=T)
            dt = time.perf_counter() - t0
            rows.append({
                "bench": "connectivity", "size": n, "maxdim": "", "method": f"{kind}, density {density:g}",
                "seconds": f"{dt:.2f}",
                "betti(1.2)": "",
                "longest H1": "",
                "bottleneck H1 vs exact": "",
                "detail": (f"edges {s.n_edges}, C {s.clustering:.3f}, L {s.path_length:.2f} "
                           f"({s.path_sources} sources), sigma {s.small_world_sigma:.2f}, "
                           f"Q {s.modularity:.3f}, edge-length ratio {s.edge_length_ratio:.3f}"),
            })


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="sizes 400/1024 only")
    p.add_argument("--out", default=None, help="also write the table as CSV here")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    args = p.parse_args(argv)
    if args.out and os.path.exists(args.out) and not args.force:
        raise SystemExit(f"{args.out} exists; choose another --out or pass --force")
    torch.set_num_threads(args.threads)
    from tqdm.auto import tqdm

    if args.quick:
        pcases = [
            (400, 1, "exact ref", dict(sparse=None)),
            (400, 1, "sparse 0.5", dict(sparse=0.5)),
            (400, 2, "auto", {}),
        ]
        ccases = [(1024, 0.01)]
    else:
        pcases = [
            (400, 1, "exact ref", dict(sparse=None)),
            (400, 2, "exact ref", dict(sparse=None)),
            (400, 2, "sparse 0.5", dict(sparse=0.5)),
            (1000, 1, "exact ref", dict(sparse=None)),
            (1000, 1, "sparse 0.5", dict(sparse=0.5)),
            (1000, 1, "landmarks 400", dict(n_landmarks=400, sparse=None)),
            (1000, 2, "auto (sparse 0.5)", {}),
            (1000, 2, "landmarks 400", dict(n_landmarks=400, sparse=None)),
            (4096, 1, "auto (sparse 0.5)", {}),
            (4096, 1, "landmarks 1000", dict(n_landmarks=1000, sparse=None)),
            (4096, 2, "auto (sparse 0.5)", {}),
            (4096, 2, "landmarks 400", dict(n_landmarks=400, sparse=None)),
        ]
        ccases = [(1024, 0.01), (1024, 0.1), (4096, 0.005), (4096, 0.02)]
    rows = []
    bench_persistence(pcases, rows, tqdm)
    bench_connectivity(ccases, rows, tqdm)
    cols = ["bench", "size", "maxdim", "method", "seconds", "betti(1.2)", "longest H1",
            "bottleneck H1 vs exact", "detail"]
    print(f"# python {platform.python_version()}, torch {torch.__version__}, threads {args.threads}, "
          f"{os.cpu_count()} cpus")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
