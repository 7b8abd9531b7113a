"""Step overhead of moduli priors: every built-in space, both gradient paths, dense and pruned.

One ReLU RNN per hidden size n (default 1024 and 4096; input 32, batch 64,
sequence 20, linear readout, Adam, float32, one thread). For each of the
catalog's spaces (circle, sphere, torus, Klein bottle, 6-torus, R^3) with the
difference-of-Gaussians inhibitor, with a fixed and with a trained embedding,
through both gradient paths

- ``autograd``: ``(lam * priors.penalty()).backward()``, the
  ``loss + lam * penalty()`` path of the README;
- ``fused``: ``priors.add_penalty_grad_(lam)`` after ``loss.backward()``;

on the dense recurrent matrix and after pruning it to 90% sparsity (a random
mask installed with :func:`moduli.targets.install_mask`; a trained term then
takes the sparse pass over its kept neuron pairs), the prior's work is timed
as it runs inside a step (weight and embedding gradients already populated,
so gradient accumulation is included) and reported as a percentage of the
training step without a prior on the same model (dense or pruned), timed in
the same run (the least-disturbed of the steps timed at the start of each phase
and after each space). Both are sequential single-thread work, so the percentage is the
step overhead. Times are minima over repeats (the least-disturbed run: the
machine is shared); the load average is printed with the table.

Also reported: the step's time, the time of one elementwise pass over the n x n
matrix (``torch.mul(W, W, out=buffer)``: the unit in which a prior's cost is
bounded, since each of its elementwise operations is at least one such pass over
the entries it touches) and the one-time cost of gathering the kept pairs of a
mask (once per mask change).

Usage::

    PYTHONPATH=. python benchmarks/bench_priors.py [--sizes 1024 4096] [--repeats 3] [--quick] \\
        [--spaces torus klein ...] [--out benchmarks/results/bench_priors.json]

``--quick`` runs n = 1024 only with two repeats (under a minute at load 8 on 2 cores; the
default run took 10 minutes at load 10-11, most of it the n = 4096 training steps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moduli import regularizers as rg  # noqa: E402
from moduli import targets as tg  # noqa: E402
from moduli.manifolds import catalog  # noqa: E402
from moduli.regularizers import penalty as pen  # noqa: E402

GOALS = {"fixed": (0.02, 0.02), "trained": (0.10, 0.03)}  # (dense, 90% sparse) fraction of a step
COLUMNS = [(kind, sparse, path) for kind in ("fixed", "trained") for sparse in (False, True)
           for path in ("autograd", "fused")]


def timed(fn, repeats: int) -> float:
    """Minimum of ``repeats`` timed calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_size(n: int, spaces: list, repeats: int, lam: float, sparsity: float, log) -> dict:
    torch.manual_seed(0)
    rnn = torch.nn.RNN(32, n, nonlinearity="relu", batch_first=True)
    head = torch.nn.Linear(n, 1)
    x, y = torch.randn(64, 20, 32), torch.randn(64, 1)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)

    def step():
        out, _ = rnn(x)
        loss = torch.nn.functional.mse_loss(head(out[:, -1]), y)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    priors = {}
    for name in spaces:
        for kind in ("fixed", "trained"):
            p = rg.attach(rnn, rg.ModuliPrior(catalog.build(name), rg.DifferenceOfGaussians(),
                                              trainable=kind == "trained"),
                          generator=torch.Generator().manual_seed(1))
            p.check_finite = False  # no per-step sync in the timed loop
            priors[name, kind] = p
    emb = [u for p in priors.values() for u in p.parameters()]

    def populate():
        for q in params + emb:
            q.grad = torch.zeros_like(q) if q.grad is None else q.grad

    def autograd(prior):
        return lambda: (lam * prior.penalty()).backward()

    def fused(prior):
        return lambda: prior.add_penalty_grad_(lam)

    result = {"n": n, "steps_ms": {}, "ms": {}, "fraction": {}, "gather_ms": None}
    for sparse in (False, True):
        if sparse:
            mask = (torch.rand(n, n, generator=torch.Generator().manual_seed(2)) >= sparsity).float()
            tg.install_mask(rnn, "weight_hh_l0", mask)
            params = list(rnn.parameters()) + list(head.parameters())
            if hasattr(pen, "kept_pairs"):  # absent before the sparse pass (to measure the old code)
                term = priors[spaces[0], "trained"].terms["weight_hh_l0"]
                t0 = time.perf_counter()
                pairs = pen.kept_pairs(term.layout, tg.mask_of(rnn, "weight_hh_l0"))
                result["gather_ms"] = 1e3 * (time.perf_counter() - t0)
                result["kept_pair_density"] = pairs.density
        tag = "90%" if sparse else "dense"
        log(f"n={n} {tag}: step without prior")
        base = timed(step, repeats)
        if not sparse:  # the unit of the bound: one elementwise pass over the n x n matrix (out= reused)
            W, ws = rnn.weight_hh_l0.detach(), torch.empty(n, n)
            result["pass_ms"] = 1e3 * timed(lambda: torch.mul(W, W, out=ws), max(5, repeats))
        populate()
        keys = []
        for name in spaces:
            for kind in ("fixed", "trained"):
                prior = priors[name, kind]
                for path, make in (("autograd", autograd), ("fused", fused)):
                    log(f"n={n} {tag}: {name} {kind} {path}")
                    key = f"{name}|{kind}|{tag}|{path}"
                    result["ms"][key] = 1e3 * timed(make(prior), repeats)
                    keys.append(key)
            # one more step without prior after each space: the least-disturbed step of the
            # whole phase is the denominator (load from other jobs comes and goes)
            t0 = time.perf_counter()
            step()
            base = min(base, time.perf_counter() - t0)
            populate()
        result["steps_ms"][tag] = 1e3 * base
        for key in keys:
            result["fraction"][key] = result["ms"][key] / result["steps_ms"][tag]
    return result


def table(results: list, spaces: list) -> str:
    head = "    n  space   " + "".join(f"{k[:5]} {'90%' if s else 'dense':5s} {p[:4]:4s}  " for k, s, p in COLUMNS)
    lines = [head]
    for res in results:
        for name in spaces:
            cells = []
            for kind, sparse, path in COLUMNS:
                f = res["fraction"][f"{name}|{kind}|{'90%' if sparse else 'dense'}|{path}"]
                goal = GOALS[kind][1 if sparse else 0]
                cells.append(f"{100 * f:8.1f}%{'*' if f >= goal else ' '}      ")
            lines.append(f"{res['n']:5d}  {name:7s} " + "".join(cells))
        line = (f"{res['n']:5d}  step without prior: {res['steps_ms']['dense']:.0f} ms dense, "
                f"{res['steps_ms']['90%']:.0f} ms at 90%; one elementwise pass over W: {res['pass_ms']:.2f} ms "
                f"(the step = {res['steps_ms']['dense'] / res['pass_ms']:.0f} passes)")
        if res["gather_ms"] is not None:
            line += (f"; gathering the kept pairs once per mask: {res['gather_ms']:.1f} ms "
                     f"(kept pair density {res['kept_pair_density']:.3f})")
        lines.append(line)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="hidden sizes (default 1024 4096)")
    parser.add_argument("--spaces", nargs="+", default=list(catalog.NAMES), choices=list(catalog.NAMES))
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 3)")
    parser.add_argument("--quick", action="store_true", help="n = 1024 only, two repeats")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lam", type=float, default=1e-6)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_priors.json"))
    args = parser.parse_args(argv)
    sizes = args.sizes or ([1024] if args.quick else [1024, 4096])
    repeats = args.repeats or (2 if args.quick else 3)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - start:6.0f} s] {msg}", file=sys.stderr, flush=True)

    results = [bench_size(n, args.spaces, repeats, args.lam, args.sparsity, log) for n in sizes]
    load_after = os.getloadavg()
    print(f"\nprior overhead as % of a training step without prior (ReLU RNN, input 32, batch 64, seq 20, Adam), "
          f"DoG, float32, {args.threads} thread(s), torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"load average {load_before[0]:.2f} at start, {load_after[0]:.2f} at end; "
          f"{time.perf_counter() - start:.0f} s; * = misses the goal (fixed < 2%, trained < 10% dense, < 3% at 90%)")
    print(table(results, args.spaces))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "repeats": repeats, "load_average": [load_before, load_after],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(sys.argv)}
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
