"""Speed of the geodesic walk on the digits MLP: where the time goes, and old against new settings.

Trains the issue's network (64-128-10 ReLU MLP on scikit-learn's digits,
70/30 split, seed 0), then in one process:

1. profiles one walk with :mod:`torch.profiler`, labelling the metric's
   construction and products (``FunctionalMetric``), the Lanczos process
   (``trust_region_step`` less the products it calls) and everything else
   (projection onto the hyperplane, history rows: "bookkeeping");
2. times, on the same network and data, three walks to 90% sparsity:

   * the 0.2 defaults (``mode="eq7"``, ``beta_absolute=1``, ``eps=0.01``,
     500 steps, 20 Lanczos vectors, no early stop): one-shot quality;
   * the best settings of the 0.2 benchmark (``mode="compensate"``,
     ``restore=1``, ``eps=0.04``, 400 steps, 40 Lanczos vectors, no early
     stop);
   * the new defaults (``geodesic.sparsify(net, X, 0.9)``: compensate,
     restore 1, 100 steps, trust radius ``3 |v_0| / steps``, at most 40
     Lanczos vectors stopped at a relative KKT residual of 0.05);

   and prints seconds, steps per second, products and test accuracy of
   each, and the ratios of their wall times.

Run (one thread)::

    PYTHONPATH=$PWD python benchmarks/geodesic_speed.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from moduli import geodesic
from moduli.geodesic import _metric, _walk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from geodesic_digits import accuracy, digits, train  # noqa: E402

OLD_DEFAULTS = dict(mode="eq7", beta_absolute=1.0, eps=0.01, steps=500, lanczos_iters=20, lanczos_tol=None)
OLD_BEST = dict(mode="compensate", restore=1.0, eps=0.04, steps=400, lanczos_iters=40, lanczos_tol=None)
NEW_DEFAULTS: dict = {}


@contextmanager
def labelled():
    """Wrap the metric's entry points and the trust-region step in profiler ranges."""
    cls = _metric.FunctionalMetric
    saved = {name: getattr(cls, name) for name in ("__init__", "matvec", "sq_norm", "vjp")}
    saved_step = _walk.trust_region_step

    def wrap(fn, label):
        def inner(*a, **k):
            with record_function(label):
                return fn(*a, **k)
        return inner

    for name, fn in saved.items():
        setattr(cls, name, wrap(fn, "metric"))
    _walk.trust_region_step = wrap(saved_step, "lanczos+products")
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(cls, name, fn)
        _walk.trust_region_step = saved_step


def profile_walk(net, X, p, kw) -> dict:
    with labelled(), profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function("walk"):
            path = geodesic.sparsify(net, X, p, progress=False, **kw)
    totals = {}
    for ev in prof.events():
        if ev.name in ("walk", "metric", "lanczos+products"):
            totals.setdefault(ev.name, []).append(ev)

    def span(evs):
        return sum(e.time_range.elapsed_us() for e in evs)

    def inside(outer, inner):
        # metric ranges nested in the trust-region ranges (the products the Lanczos process calls)
        tot = 0
        for e in inner:
            s, t = e.time_range.start, e.time_range.end
            if any(o.time_range.start <= s and t <= o.time_range.end for o in outer):
                tot += e.time_range.elapsed_us()
        return tot

    def top_level(evs):
        # matvec calls vjp, both labelled: keep the outermost ranges only
        def within(e, o):
            return o is not e and o.time_range.start <= e.time_range.start and e.time_range.end <= o.time_range.end
        return [e for e in evs if not any(within(e, o) for o in evs)]

    totals["metric"] = top_level(totals["metric"])
    walk = span(totals["walk"])
    metric = span(totals["metric"])
    tr = span(totals.get("lanczos+products", []))
    lanczos = tr - inside(totals.get("lanczos+products", []), totals["metric"])
    steps = sum(r["kind"] == "step" for r in path.history)
    return {"seconds": walk / 1e6, "steps": steps, "steps_per_second": steps / (walk / 1e6),
            "metric_fraction": metric / walk, "lanczos_fraction": lanczos / walk,
            "bookkeeping_fraction": (walk - metric - lanczos) / walk, "products": path.history[-1]["products"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs of each walk (the minimum is kept)")
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    ap.add_argument("--profile-steps", type=int, default=None,
                    help="profile walks of this many steps (default: the full walks)")
    ap.add_argument("--old-steps-divisor", type=int, default=1,
                    help="time the 0.2 best settings with steps / this (a loaded machine); the full-walk ratio "
                         "is then reported as per-step ratio x steps ratio")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    Xtr, Ytr, Xte, Yte = digits(0)
    torch.manual_seed(0)
    net = train(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)), Xtr, Ytr,
                updates=1200, lr=1e-2, seed=0)
    print(f"dense test accuracy {accuracy(net, Xte, Yte):.4f}")
    out = {"profile": {}, "walks": {}}
    for label, kw in [("0.2 best settings", OLD_BEST), ("new defaults", NEW_DEFAULTS)]:
        if args.profile_steps is not None:
            kw = dict(kw, steps=args.profile_steps)
        prof = profile_walk(net, Xtr, args.sparsity, kw)
        out["profile"][label] = prof
        print(f"profile, {label}: {prof['steps']} steps, {prof['steps_per_second']:.1f} steps/s under the profiler; "
              f"metric products {prof['metric_fraction']:.1%}, Lanczos {prof['lanczos_fraction']:.1%}, "
              f"bookkeeping {prof['bookkeeping_fraction']:.1%}")
    old_best = dict(OLD_BEST, steps=OLD_BEST["steps"] // args.old_steps_divisor)
    for label, kw in [("0.2 defaults", OLD_DEFAULTS), ("0.2 best settings", old_best), ("new defaults", NEW_DEFAULTS)]:
        best = None
        for _ in range(args.repeats):
            t = time.perf_counter()
            path = geodesic.sparsify(net, Xtr, args.sparsity, progress=False, **kw)
            sec = time.perf_counter() - t
            best = sec if best is None else min(best, sec)
        steps = sum(r["kind"] == "step" for r in path.history)
        row = {"seconds": best, "steps": steps, "steps_per_second": steps / best,
               "products": path.history[-1]["products"], "test_acc": accuracy(path.model, Xte, Yte),
               "settings": kw}
        out["walks"][label] = row
        print(f"{label}: {best:.1f}s, {steps} steps ({row['steps_per_second']:.1f}/s), {row['products']} products, "
              f"test accuracy {row['test_acc']:.4f}")
    w = out["walks"]
    out["ratio_best_over_new"] = (w["0.2 best settings"]["seconds"] * args.old_steps_divisor
                                  / w["new defaults"]["seconds"])
    if args.old_steps_divisor != 1:
        per_step = w["0.2 best settings"]["steps_per_second"] and (
            w["new defaults"]["steps_per_second"] / w["0.2 best settings"]["steps_per_second"])
        print(f"per step, the new defaults are {per_step:.2f}x faster than the 0.2 best settings; those walk "
              f"{OLD_BEST['steps']} steps against {w['new defaults']['steps']}")
    out["ratio_old_defaults_over_new"] = w["0.2 defaults"]["seconds"] / w["new defaults"]["seconds"]
    print(f"speed-up of the new defaults: {out['ratio_best_over_new']:.1f}x against the 0.2 best settings, "
          f"{out['ratio_old_defaults_over_new']:.1f}x against the 0.2 defaults (same run)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
