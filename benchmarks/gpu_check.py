"""The prepared GPU check: the CUDA tests, then a table of step times.

One command::

    python benchmarks/gpu_check.py --out DIR [--device cuda|cpu] [--quick] [--threads N]

1. runs ``pytest tests/test_cuda.py`` (its summary line goes into the table);
2. times the navigation training step (``NavigationRNN``, ``navigation_loss``, Adam)
   at Ng = 256 / 1024 / 4096 on the paper's batch (200 sequences of 50 steps,
   512 place cells) with no prior, the torus prior with fixed embeddings and with
   trained ones, each through the fused ``priors.add_penalty_grad_(lam)`` and through
   ``loss + lam * priors.penalty()``; the batch is sampled on the device once per
   size (the sampling is timed separately);
3. times ``KleinBottle(10).cdist`` of 4096 points, without and with autograd;
4. times one phase of the runner's ``gpu`` preset through
   :func:`moduli.experiments.run_sweep` on the device: estimated from two short
   phases, then trained in full when the estimate is under 200 s (``--quick``:
   the estimate only);
5. estimates the wall time of one ``paper`` phase as the measured Ng = 4096 step
   (fixed torus, fused; plus the batch sampling) times the preset's ``steps``.

Every time is the median over repeats of the mean of a few steps, after warm-up
steps, with ``torch.cuda.synchronize()`` before reading the clock on CUDA. Prior
sets run with ``check_finite = False`` (no host synchronisation per step).
``--quick`` shrinks every size (stated in the table) so that ``--device cpu
--quick`` finishes in about a minute on a CPU; the full check is sized for under 8
minutes on one GPU. Writes ``DIR/gpu_check.md`` and ``DIR/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from moduli import regularizers as rg  # noqa: E402
from moduli.experiments import (  # noqa: E402
    NavigationRNN, PlaceCells, TrajectoryGenerator, get_preset, navigation_loss, parse_regime, run_sweep,
)
from moduli.experiments.regimes import build_prior  # noqa: E402
from moduli.manifolds import KleinBottle  # noqa: E402

#: Ng, batch, seq_len, place cells, warm-up steps, repeats, steps per repeat, cdist points, and the
#: runner: phases of n and 3 n steps for an estimate, and the most seconds the full phase may take
#: (its estimate) to be trained as well (None: never)
FULL = dict(sizes=(256, 1024, 4096), batch=200, seq_len=50, n_place=512, warmup=3, repeats=5, inner=4,
            cdist_n=4096, runner_steps=100, runner_budget_s=200.0)
QUICK = dict(sizes=(64, 128, 256), batch=20, seq_len=10, n_place=64, warmup=2, repeats=3, inner=2,
             cdist_n=1024, runner_steps=10, runner_budget_s=None)

PATHS = (("none", None), ("torus", "fused"), ("torus", "loss"), ("torus:trained", "fused"),
         ("torus:trained", "loss"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="directory for gpu_check.md and gpu_check.json")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    p.add_argument("--quick", action="store_true", help="reduced sizes (a dry run; about a minute on a CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--skip-tests", action="store_true", help="do not run tests/test_cuda.py first")
    args = p.parse_args(argv)
    try:
        args.device = torch.device(args.device)
    except RuntimeError as exc:
        p.error(f"--device: {exc}")
    if args.device.type not in ("cuda", "cpu"):
        p.error(f"--device must be cuda, cuda:N or cpu; got {args.device}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False on this machine (use --device cpu for a dry run)")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be at least 1; got {args.threads}")
    return args


# ------------------------------------------------------------------- timing
def synchronizer(device: torch.device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def median_step_s(fn, device, *, warmup: int, repeats: int, inner: int) -> float:
    """Median over ``repeats`` of the mean time of ``inner`` calls, after ``warmup`` calls."""
    sync = synchronizer(device)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


# --------------------------------------------------------------- navigation
def navigation_batch(device, *, batch: int, seq_len: int, n_place: int, seed: int = 1):
    """Velocities, initial and target place-cell codes, sampled on ``device``."""
    cells = PlaceCells(n_place, generator=torch.Generator().manual_seed(seed)).to(device)
    trajectories = TrajectoryGenerator(2.2, seq_len)
    gen = torch.Generator(device=device).manual_seed(seed)

    def sample():
        t = trajectories.sample(batch, generator=gen)
        return t.velocity, cells(t.init_position), cells(t.position)

    return sample


def training_step(device, ng: int, regime: str, path, *, n_place: int, batch_data, lam: float, lr: float):
    """A closure running one training step of the navigation RNN (the runner's order)."""
    torch.manual_seed(0)
    model = NavigationRNN(n_place, ng).to(device)
    priors = None
    if regime != "none":
        cfg = get_preset("navigation", "paper")
        priors = rg.attach(model, build_prior(parse_regime(regime), cfg), ["rnn.weight_hh_l0"],
                           generator=torch.Generator().manual_seed(0))
        priors.check_finite = False
    params = list(model.parameters()) + (list(priors.parameters()) if priors is not None else [])
    opt = torch.optim.Adam(params, lr=lr)
    velocity, init_code, target = batch_data

    def step():
        loss = navigation_loss(model(velocity, init_code), target)
        if path == "loss":
            loss = loss + lam * priors.penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if path == "fused":
            priors.add_penalty_grad_(lam)
        opt.step()

    return step


def navigation_rows(device, sizes, timing, log) -> list[dict]:
    paper = get_preset("navigation", "paper")
    rows = []
    sample = navigation_batch(device, batch=sizes["batch"], seq_len=sizes["seq_len"], n_place=sizes["n_place"])
    sample_s = median_step_s(sample, device, **timing)
    rows.append(dict(measurement="navigation batch sampling", config=_batch_label(sizes), ms=1e3 * sample_s,
                     note="trajectories and place-cell codes on the device, once per step in the runner"))
    log(f"batch sampling: {1e3 * sample_s:.2f} ms")
    data = sample()
    for ng in sizes["sizes"]:
        base = None
        for regime, path in PATHS:
            step = training_step(device, ng, regime, path, n_place=sizes["n_place"], batch_data=data,
                                 lam=paper.lam, lr=paper.lr)
            s = median_step_s(step, device, **timing)
            del step
            if device.type == "cuda":
                torch.cuda.empty_cache()
            label = "no prior" if regime == "none" else (
                f"{'trained' if 'trained' in regime else 'fixed'} torus, "
                f"{'fused add_penalty_grad_' if path == 'fused' else 'loss + lam * penalty()'}")
            base = s if regime == "none" else base
            rows.append(dict(measurement="navigation training step", config=f"Ng={ng}, {label}", ng=ng,
                             regime=regime, path=path, ms=1e3 * s, ratio=s / base))
            log(f"Ng={ng} {label}: {1e3 * s:.2f} ms ({s / base:.2f}x no prior)")
    return rows


def _batch_label(sizes) -> str:
    return f"batch {sizes['batch']} x {sizes['seq_len']} steps, {sizes['n_place']} place cells"


# -------------------------------------------------------------------- cdist
def cdist_rows(device, n: int, timing, log) -> list[dict]:
    K = KleinBottle(10.0)
    x = K.random_uniform(n, generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    with torch.no_grad():
        s = median_step_s(lambda: K.cdist(x, validate=False), device, **timing)
    rows.append(dict(measurement="KleinBottle(10).cdist", config=f"{n} points, no autograd", ms=1e3 * s))
    log(f"cdist {n} no grad: {1e3 * s:.2f} ms")
    u = x.clone().requires_grad_(True)

    def with_grad():
        K.cdist(u, validate=False).sum().backward()
        u.grad = None

    s = median_step_s(with_grad, device, **timing)
    rows.append(dict(measurement="KleinBottle(10).cdist", config=f"{n} points, forward + backward", ms=1e3 * s))
    log(f"cdist {n} forward+backward: {1e3 * s:.2f} ms")
    return rows


# ------------------------------------------------------------------- runner
def _one_phase(cfg, preset, kwargs) -> float:
    """``train_s`` of one dense torus phase through ``run_sweep`` (preparation included)."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-runner-") as out:
        records = run_sweep("navigation", cfg, [parse_regime("torus")], [0.0], [0], out, preset=preset,
                            progress=False, log=lambda *a, **k: None, **kwargs)
    if len(records) != 1:
        raise RuntimeError(f"expected one record from one dense phase; got {len(records)}")
    return records[0]["timings"]["train_s"]


def runner_rows(device, sizes, log) -> tuple[list[dict], dict]:
    """One phase of the ``gpu`` preset through the runner (``run_sweep(..., device=device)``).

    First two short phases of ``n`` and ``3 n`` steps: their difference gives
    the time per step without the phase's preparation (task, evaluation set,
    model, prior), and the preset's phase is estimated from it. Then, unless
    ``--quick`` or the estimate exceeds ``sizes["runner_budget_s"]``, the
    preset's phase itself is trained and its measured time reported.
    """
    preset = "gpu"
    cfg = get_preset("navigation", preset)
    full_steps = cfg.steps
    kwargs = {"device": str(device)}
    if sizes["runner_budget_s"] is None:  # --quick: the preset at the quick sizes (a dry run of the code path)
        cfg = dataclasses.replace(cfg, n_hidden=max(sizes["sizes"]), batch_size=sizes["batch"],
                                  seq_len=sizes["seq_len"], n_place=sizes["n_place"])
    shape = f"preset {preset} (Ng={cfg.n_hidden}, batch {cfg.batch_size} x {cfg.seq_len}), torus, dense"
    if sizes["runner_budget_s"] is None:
        shape += " (NOT the preset's sizes: --quick)"
    n = sizes["runner_steps"]
    short = dataclasses.replace(cfg, steps=n, epochs=1, eval_size=100)
    long = dataclasses.replace(cfg, steps=3 * n, epochs=1, eval_size=100)
    t_short, t_long = _one_phase(short, preset, kwargs), _one_phase(long, preset, kwargs)
    per_step = max(t_long - t_short, 0.0) / (2 * n)
    prep = max(t_short - n * per_step, 0.0)
    estimate = prep + per_step * full_steps
    note = (f"on {device}: phases of {n} and {3 * n} steps took {t_short:.2f} s and {t_long:.2f} s: "
            f"{1e3 * per_step:.2f} ms/step + {prep:.2f} s preparation")
    budget = sizes["runner_budget_s"]
    if budget is not None and estimate <= budget:
        train_s = _one_phase(cfg, preset, kwargs)
        rows = [dict(measurement="runner phase (run_sweep)", config=f"{shape}, {full_steps} steps", ms=1e3 * train_s,
                     seconds=train_s, note=f"measured on {device}: {train_s / 60:.2f} min (estimated "
                                           f"{estimate / 60:.2f} min; {note})")]
    else:
        train_s = estimate
        why = "--quick" if budget is None else f"the estimate exceeds the check's {budget:.0f} s budget"
        rows = [dict(measurement="runner phase (run_sweep), estimated", config=f"{shape}, {full_steps} steps",
                     ms=1e3 * train_s, seconds=train_s,
                     note=f"{note}: {train_s / 60:.1f} min, not trained in full ({why})")]
    log(f"runner: {rows[0]['note']}")
    return rows, {"preset": preset, "full_steps": full_steps, "per_step_s": per_step, "preparation_s": prep,
                  "phase_s": train_s, "measured": train_s is not estimate,
                  "device": str(device)}


def paper_estimate(nav_rows, sizes) -> dict:
    paper = get_preset("navigation", "paper")
    largest = max(sizes["sizes"])
    step = next(r for r in nav_rows if r.get("ng") == largest and r.get("regime") == "torus"
                and r.get("path") == "fused")
    sample = next(r for r in nav_rows if r["measurement"] == "navigation batch sampling")
    per_step_ms = step["ms"] + sample["ms"]
    seconds = per_step_ms * 1e-3 * paper.steps
    same = (largest == paper.n_hidden and sizes["batch"] == paper.batch_size and sizes["seq_len"] == paper.seq_len
            and sizes["n_place"] == paper.n_place)
    basis = f"Ng={largest}, {_batch_label(sizes)}" + ("" if same else " (NOT the paper's sizes: --quick)")
    return dict(measurement="paper phase, estimated", config=f"{paper.steps} steps x {per_step_ms:.2f} ms",
                ms=1e3 * seconds, seconds=seconds,
                note=f"{seconds / 3600:.2f} h; fixed torus, fused, sampling included; measured at {basis}")


# ------------------------------------------------------------------- tests
def run_cuda_tests(log) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_cuda.py")]
    log("running " + " ".join(cmd[1:]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = next((ln.strip("= ") for ln in reversed(lines) if re.search(r"\d+ (passed|failed|skipped|error)", ln)),
                   lines[-1] if lines else "(no output)")
    skip_reasons = sorted({m.group(1) for m in re.finditer(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", proc.stdout)})
    log(f"tests/test_cuda.py: {summary}")
    if proc.returncode not in (0, 5):
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
    return {"returncode": proc.returncode, "summary": summary, "skip_reasons": skip_reasons,
            "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------- report
def machine(device) -> dict:
    info = {"date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "device": str(device),
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if hasattr(os, "getloadavg"):
        info["load_average_1_5_15"] = [round(v, 2) for v in os.getloadavg()]
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cudnn"] = torch.backends.cudnn.version()
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    return info


def markdown(meta, tests, rows, quick, sizes_label) -> str:
    head = [f"# GPU check ({'quick, reduced sizes' if quick else 'full'})", "",
            f"- date (UTC): {meta['date_utc']}",
            f"- device: {meta['device']}" + (f" ({meta['gpu']}, CUDA {meta['cuda']}, cuDNN {meta['cudnn']}, "
                                             f"TF32 matmul {meta['tf32_matmul']})" if "gpu" in meta else
                                             f" ({meta['cpu_count']} cores, {meta['threads']} torch threads)"),
            f"- torch {meta['torch']}, Python {meta['python']}, {meta['platform']}"]
    if "load_average_1_5_15" in meta:
        head.append(f"- load average at the end (1/5/15 min): {meta['load_average_1_5_15']}")
    head += [f"- tests/test_cuda.py: {tests['summary']}" if tests else "- tests/test_cuda.py: not run (--skip-tests)"]
    if tests and tests["skip_reasons"]:
        head.append(f"  - skipped because: {'; '.join(tests['skip_reasons'])}")
    head.append(f"- navigation: {sizes_label}" + ("" if not quick else " (reduced by --quick; the full check uses "
                                                 f"{_batch_label(FULL)}, Ng = {'/'.join(map(str, FULL['sizes']))})"))
    head += ["- times: median over repeats of the mean of a few steps, after warm-up; prior sets with "
             "check_finite=False", "",
             "| measurement | configuration | ms | x no prior | note |", "|---|---|---:|---:|---|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        head.append(f"| {r['measurement']} | {r['config']} | {r['ms']:.2f} | {ratio} | {r.get('note', '')} |")
    return "\n".join(head) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    timing = dict(warmup=sizes["warmup"], repeats=sizes["repeats"], inner=sizes["inner"])
    start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    tests = None if args.skip_tests else run_cuda_tests(log)
    rows = navigation_rows(args.device, sizes, timing, log)
    rows += cdist_rows(args.device, sizes["cdist_n"], timing, log)
    runner, runner_info = runner_rows(args.device, sizes, log)
    rows += runner
    rows.append(paper_estimate(rows, sizes))
    meta = machine(args.device)
    meta["total_s"] = round(time.perf_counter() - start, 1)
    text = markdown(meta, tests, rows, args.quick, _batch_label(sizes)) + f"\nTotal time of the check: {meta['total_s']} s.\n"
    (args.out / "gpu_check.md").write_text(text)
    (args.out / "gpu_check.json").write_text(json.dumps(
        {"meta": meta, "quick": args.quick, "sizes": sizes, "tests": tests, "runner": runner_info, "rows": rows},
        indent=2))
    print(text)
    log(f"wrote {args.out / 'gpu_check.md'} and {args.out / 'gpu_check.json'}")
    return 0 if tests is None or tests["returncode"] in (0, 5) else 1


if __name__ == "__main__":
    sys.exit(main())
