"""Speed of moduli priors: penalty+backward against one |W| pass and against a training step.

For each hidden size n (default 1024 and 4096), on a ReLU RNN (input 32,
batch 64, sequence 20, linear readout, Adam), all in one run:

- ``abs pass``: one pass ``W.abs().sum()`` over the recurrent matrix (the unit);
- ``fixed``: ``priors.penalty().backward()`` with a fixed torus embedding;
- ``fixed fused``: ``priors.add_penalty_grad_(lam)`` (no autograd graph);
- ``fixed, copy C each step``: the public reference code's pattern (coefficients
  kept off the model and copied in every step), for comparison;
- ``trained``: penalty+backward with a trained embedding (recomputed per step);
- ``trained fused``: ``add_penalty_grad_`` with a trained embedding;
- ``trained, plain autograd``: ``(f(M.cdist(points)) * |W|).sum().backward()``
  on the whole matrix, for comparison;
- ``step``: one training step without prior, and with each prior variant.

Reported: milliseconds (minimum over repeats: the least-disturbed run on a
shared machine), the ratio to the abs pass, and the prior's overhead as a
fraction of the plain training step (isolated prior time / step time, and the
difference of whole steps timed in interleaved rounds).

Usage::

    PYTHONPATH=. python benchmarks/bench_priors.py [--sizes 1024 4096] [--repeats 5] \
        [--out benchmarks/results/bench_priors.json]
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
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moduli import manifolds as mf  # noqa: E402
from moduli import regularizers as rg  # noqa: E402


def timed(fn, repeats: int, budget: float = 0.5) -> float:
    """Minimum time of ``fn`` over at least ``repeats`` calls (more while under ``budget`` s).

    The minimum is the least-disturbed run: other processes share the machine.
    """
    fn()  # warm-up
    times = []
    spent = 0.0
    while len(times) < repeats or (spent < budget and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    return min(times)


def bench_size(n: int, repeats: int, step_repeats: int, lam: float, bar) -> dict:
    torch.manual_seed(0)
    rnn = torch.nn.RNN(32, n, nonlinearity="relu", batch_first=True)
    head = torch.nn.Linear(n, 1)
    W = rnn.weight_hh_l0
    torus = mf.FlatTorus(2, 10.0)
    dog = rg.DifferenceOfGaussians()
    fixed = rg.attach(rnn, rg.ModuliPrior(torus, dog), generator=torch.Generator().manual_seed(1))
    trained = rg.attach(rnn, rg.ModuliPrior(torus, dog, trainable=True), generator=torch.Generator().manual_seed(1))
    for p in (fixed, trained):
        p.check_finite = False  # no per-step device sync in the timed loop
    c_host = fixed.terms["weight_hh_l0"].coefficients().numpy().copy()
    u = next(iter(trained.parameters()))
    x = torch.randn(64, 20, 32)
    y = torch.randn(64, 1)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params + [u], lr=1e-4)

    def clear():
        for p in params + [u]:
            p.grad = None

    def abs_pass():
        with torch.no_grad():
            W.abs().sum()

    def fixed_autograd():
        clear()
        fixed.penalty().backward()

    def fixed_fused():
        clear()
        fixed.add_penalty_grad_(lam)

    def fixed_copy():
        clear()
        c = torch.tensor(c_host).to(W)
        (c * W.abs()).sum().backward()

    def trained_autograd():
        clear()
        trained.penalty().backward()

    def trained_fused():
        clear()
        trained.add_penalty_grad_(lam)

    def trained_plain():
        clear()
        pts = torus.from_unconstrained(u)
        c = dog(torus.cdist(pts, validate=False))
        (c * W.abs()).sum().backward()

    def step(prior=None, fused=False):
        def run():
            out, _ = rnn(x)
            loss = torch.nn.functional.mse_loss(head(out[:, -1]), y)
            if prior is not None and not fused:
                loss = loss + lam * prior.penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if prior is not None and fused:
                prior.add_penalty_grad_(lam)
            opt.step()

        return run

    rows = {}
    for name, fn in [
        ("abs pass", abs_pass),
        ("fixed", fixed_autograd),
        ("fixed fused", fixed_fused),
        ("fixed, copy C each step", fixed_copy),
        ("trained", trained_autograd),
        ("trained fused", trained_fused),
        ("trained, plain autograd", trained_plain),
    ]:
        bar.set_postfix_str(f"n={n} {name}")
        rows[name] = timed(fn, repeats)
        bar.update(1)
    # Training steps are timed in interleaved rounds (one step of each variant
    # per round) so that load from other processes hits every variant alike.
    steps = {"step": step(), "step + fixed": step(fixed), "step + fixed fused": step(fixed, fused=True),
             "step + trained": step(trained), "step + trained fused": step(trained, fused=True)}
    for fn in steps.values():
        fn()  # warm-up
    samples = {name: [] for name in steps}
    for r in range(step_repeats):
        bar.set_postfix_str(f"n={n} steps, round {r + 1}/{step_repeats}")
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    for name in steps:
        rows[name] = min(samples[name])
    bar.update(1)
    unit, base = rows["abs pass"], rows["step"]
    table = []
    for name, t in rows.items():
        entry = {"n": n, "what": name, "ms": 1e3 * t, "x_abs_pass": t / unit}
        if not name.startswith("step") and name != "abs pass":
            entry["fraction_of_step"] = t / base
        if name.startswith("step +"):
            entry["step_overhead"] = (t - base) / base
        table.append(entry)
    return {"n": n, "rows": table}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each prior operation")
    parser.add_argument("--step-repeats", type=int, default=5, help="interleaved rounds of training steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lam", type=float, default=1e-5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_priors.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    with tqdm(total=8 * len(args.sizes), desc="bench_priors") as bar:
        for n in args.sizes:
            results.append(bench_size(n, args.repeats, args.step_repeats, args.lam, bar))
    print(f"\nmoduli priors, ReLU RNN (input 32, batch 64, seq 20), torus + DoG, float32, "
          f"{args.threads} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(f"{'n':>5s}  {'what':26s} {'ms':>10s} {'x abs pass':>11s} {'/ step':>8s} {'step overhead':>14s}")
    for res in results:
        for r in res["rows"]:
            frac = f"{100 * r['fraction_of_step']:7.1f}%" if "fraction_of_step" in r else " " * 8
            over = f"{100 * r['step_overhead']:13.1f}%" if "step_overhead" in r else ""
            print(f"{r['n']:5d}  {r['what']:26s} {r['ms']:10.2f} {r['x_abs_pass']:11.1f} {frac} {over}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "repeats": args.repeats, "step_repeats": args.step_repeats,
            "command": " ".join(sys.argv)}
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
