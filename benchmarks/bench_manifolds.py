"""Speed and memory of pairwise geodesic distances, against geomstats.

For every built-in space and n in --sizes this prints the best-of-k wall time
of ``M.cdist(x)`` (float32, no autograd), nanoseconds per pair, the peak
memory the call adds as a multiple of its own (n, n) output, and the ratio of
geomstats' time per pair (numpy backend, ``space.metric.dist`` on the index
pairs of the first --gs-points points) to ours.

Each (space, n) runs in a fresh subprocess so that the peak resident set
(ru_maxrss) measures that call alone.

Usage::

    python benchmarks/bench_manifolds.py                 # n = 512, 1024, 4096
    python benchmarks/bench_manifolds.py --threads 1 --out docs/bench_manifolds.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

# the built-in spaces by name (moduli.manifolds.catalog), as expressions for the child process
SPACES = {name: f"mf.catalog.build({name!r})" for name in
          ("circle", "sphere", "torus", "klein", "torus6", "r3")}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        import os

        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(space_expr: str, n: int, reps: int, gs_points: int, threads: int) -> dict:
    import resource

    import numpy as np
    import torch

    from moduli import manifolds as mf

    if threads:
        torch.set_num_threads(threads)

    M = eval(space_expr, {"mf": mf})
    x = M.random_uniform(n, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    M.cdist(x[:32])  # warm up kernels with a tiny call
    base = _rss_bytes()
    t0 = time.perf_counter()
    out = M.cdist(x)
    first = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_extra = peak_kb * 1024 - base
    out_bytes = out.numel() * out.element_size()
    del out
    best = first
    for _ in range(reps - 1):
        t0 = time.perf_counter()
        M.cdist(x)
        best = min(best, time.perf_counter() - t0)

    result = {"n": n, "seconds": best, "ns_per_pair": 1e9 * best / n**2,
              "peak_extra_over_output": peak_extra / out_bytes, "torch_threads": torch.get_num_threads()}
    match = M.geomstats_equivalent()
    if match is not None and gs_points > 0:
        m = min(gs_points, n)
        xs = match.to_geomstats(x[:m].double())
        i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
        a, b = xs[i.ravel()], xs[j.ravel()]
        t0 = time.perf_counter()
        theirs = match.scale * np.asarray(match.space.metric.dist(a, b))
        gs_time = time.perf_counter() - t0
        ours = M.cdist(x[:m].double()).numpy().ravel()
        result["gs_ns_per_pair"] = 1e9 * gs_time / m**2
        result["speedup_vs_geomstats"] = result["gs_ns_per_pair"] / result["ns_per_pair"]
        result["max_abs_diff_vs_geomstats"] = float(np.abs(theirs - ours).max())
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 4096])
    p.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--gs-points", type=int, default=512, help="points whose all pairs geomstats measures")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", help="also write the table (Markdown) to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child(**spec)))
        return 0

    header = ("| space | n | cdist ms | ns/pair | peak extra / output | geomstats ns/pair | "
              "speed-up vs geomstats | max abs diff |")
    lines = [header, "|" + "---|" * 8]
    print(header)
    print(lines[1])
    for name in args.spaces:
        for n in args.sizes:
            spec = {"space_expr": SPACES[name], "n": n, "reps": args.reps, "gs_points": args.gs_points,
                    "threads": args.threads}
            run = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(run.stdout.strip().splitlines()[-1])
            gs = r.get("gs_ns_per_pair")
            line = (f"| {name} | {n} | {1e3 * r['seconds']:.1f} | {r['ns_per_pair']:.2f} | "
                    f"{r['peak_extra_over_output']:.2f} | "
                    + (f"{gs:.1f} | {r['speedup_vs_geomstats']:.0f}x | {r['max_abs_diff_vs_geomstats']:.1e} |"
                       if gs is not None else "- | - | - |"))
            lines.append(line)
            print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
