"""The navigation training step at the machine's limit: data share, achieved FLOP/s, and the share of set-up and evaluation.

One command, one process, one thread (ratios within one run)::

    python benchmarks/navigation_step.py [--preset cpu] [--steps 30] [--out DIR]

Measures, for the preset's sizes:

1. the data of one training batch (walks plus place-cell codes) as the runner drew it
   before (``TrajectoryGenerator.sample`` one batch at a time, the place-cell distances
   summed over a trailing axis of 2) and as it draws it now
   (:attr:`NavigationTask.PREFETCH` batches at a time with ``sample_many``, the distances
   per coordinate); the same numbers bit for bit, checked here;
2. one training step without the data (forward, loss, backward, Adam; no prior), and
   the data's share of a step either way;
3. the step's floating-point operations (``torch.utils.flop_counter``; forward and
   backward) and its achieved rate against a measured float32 GEMM rate of this
   machine (one thread, the step's own largest product shape and a square one);
4. the one-off costs of a phase of the ``smoke`` and the given preset: building the
   task (place cells, evaluation walks), the model and the prior, the lottery reset,
   and the evaluation, each as a share of the phase (set-up + steps x step time).

Writes ``DIR/navigation_step.json`` and ``DIR/navigation_step.md`` when ``--out`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from moduli import pruning  # noqa: E402
from moduli.experiments import get_preset, parse_regime  # noqa: E402
from moduli.experiments.plan import RunSpec  # noqa: E402
from moduli.experiments.tasks import NavigationTask  # noqa: E402
from moduli.experiments import train  # noqa: E402


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def place_code_before(cells, position):
    """The place-cell code as computed before (a trailing axis of 2 summed), for the before/after timing."""
    d2 = ((position[..., None, :] - cells.centres) ** 2).sum(-1)
    return torch.softmax(-d2 / (2 * cells.sigma ** 2), dim=-1)


def data_rows(task: NavigationTask, repeats: int) -> dict:
    cfg, gen = task.cfg, torch.Generator().manual_seed(0)
    k = task.PREFETCH
    if cfg.surround:
        raise ValueError("the before path is timed without a surround")

    def one():  # the runner before: one batch at a time, the old place-cell code
        t = task.trajectories.sample(cfg.batch_size, generator=gen)
        place_code_before(task.place_cells, t.init_position), place_code_before(task.place_cells, t.position)

    def bulk():
        for t in task.trajectories.sample_many(k, cfg.batch_size, generator=gen):
            task.place_cells(t.init_position), task.place_cells(t.position)

    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    same = all(torch.equal(a.position, b.position) and torch.equal(task.place_cells(a.position),
                                                                 place_code_before(task.place_cells, b.position))
               for a, b in zip(task.trajectories.sample_many(k, cfg.batch_size, generator=g1),
                               [task.trajectories.sample(cfg.batch_size, generator=g2) for _ in range(k)]))
    walk_one = timed(lambda: task.trajectories.sample(cfg.batch_size, generator=gen), repeats)
    walk_bulk = timed(lambda: task.trajectories.sample_many(k, cfg.batch_size, generator=gen), max(2, repeats // 4)) / k
    return {"data_one_s": timed(one, repeats), "data_bulk_s": timed(bulk, max(2, repeats // 4)) / k,
            "walk_one_s": walk_one, "walk_bulk_s": walk_bulk, "prefetch": k, "bulk_equals_one_at_a_time": same}


def step_rows(task: NavigationTask, repeats: int) -> dict:
    torch.manual_seed(0)
    model = task.build_model()
    opt = torch.optim.Adam(model.parameters(), lr=task.cfg.lr)
    batch = task.sample(torch.Generator().manual_seed(2))

    def step():
        loss = task.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = timed(step, repeats)
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        task.loss(model, batch).backward()
    flops = counter.get_total_flops()
    cfg = task.cfg
    # the step's largest product: the decoder, [batch * seq_len, Ng] @ [Ng, Np] (forward)
    m, kk, n = cfg.batch_size * cfg.seq_len, cfg.n_hidden, cfg.n_place
    a, b = torch.randn(m, kk), torch.randn(kk, n)
    gemm = timed(lambda: a @ b, repeats)
    sq = 1024
    x, y = torch.randn(sq, sq), torch.randn(sq, sq)
    gemm_sq = timed(lambda: x @ y, repeats)
    return {"step_s": seconds, "flops": flops, "achieved_flops_per_s": flops / seconds,
            "gemm_shape": [m, kk, n], "gemm_flops_per_s": 2 * m * kk * n / gemm,
            "gemm_square": sq, "gemm_square_flops_per_s": 2 * sq ** 3 / gemm_sq}


def overhead_rows(preset: str, step_s: float, data_s: float) -> dict:
    """One-off costs of a torus phase at ``preset`` against its training time (steps x measured step)."""
    cfg = get_preset("navigation", preset)
    spec = RunSpec("navigation", preset, parse_regime("torus"), cfg.lam, 0.9, 0)
    t = time.perf_counter()
    task, model, initial, priors = train._build(spec, cfg)
    build_s = time.perf_counter() - t
    if preset != "cpu" and preset != "smoke":
        raise ValueError("overheads are measured for the smoke and cpu presets")
    gmp = pruning.GradualMagnitudePruning(model, 0.9, epochs=1, targets=task.recurrent)
    gmp.step()
    t = time.perf_counter()
    pruning.lottery_reset(model, priors=priors, seed=0)
    lottery_s = time.perf_counter() - t
    t = time.perf_counter()
    task.evaluate(model)
    eval_s = time.perf_counter() - t
    if preset == "cpu":
        per_step = step_s + data_s
    else:  # the smoke preset's own step
        small = NavigationTask(cfg, 0)
        per_step = step_rows(small, 5)["step_s"] + data_rows(small, 5)["data_bulk_s"]
    phase = build_s + cfg.steps * per_step + eval_s
    return {"preset": preset, "steps": cfg.steps, "build_s": build_s, "lottery_reset_s": lottery_s, "eval_s": eval_s,
            "per_step_s": per_step, "phase_s": phase, "build_share": build_s / phase, "eval_share": eval_s / phase,
            "lottery_share_of_lottery_phase": lottery_s / (phase - build_s + lottery_s)}


def markdown(res: dict) -> str:
    d, s = res["data"], res["step"]
    one = d["data_one_s"] / (d["data_one_s"] + s["step_s"])
    bulk = d["data_bulk_s"] / (d["data_bulk_s"] + s["step_s"])
    lines = [f"# Navigation step, preset {res['preset']} ({res['date']}, load {res['load']}, 1 thread)", "",
             "| quantity | value |", "|---|---|",
             f"| data per batch before: one at a time, old place code | {1e3 * d['data_one_s']:.2f} ms "
             f"(walk {1e3 * d['walk_one_s']:.2f} ms) |",
             f"| data per batch now: {d['prefetch']} at a time, new place code | {1e3 * d['data_bulk_s']:.2f} ms "
             f"(walk {1e3 * d['walk_bulk_s']:.2f} ms); same numbers: {d['bulk_equals_one_at_a_time']} |",
             f"| training step without data (no prior) | {1e3 * s['step_s']:.2f} ms |",
             f"| data share of a step: before / after | {100 * one:.1f}% / {100 * bulk:.1f}% |",
             f"| step time with data: before / after | {1e3 * (d['data_one_s'] + s['step_s']):.2f} / "
             f"{1e3 * (d['data_bulk_s'] + s['step_s']):.2f} ms |",
             f"| step FLOPs (forward + backward) | {s['flops'] / 1e9:.3f} GFLOP |",
             f"| achieved (step without data) | {s['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s |",
             f"| GEMM {'x'.join(map(str, s['gemm_shape']))} (the decoder's product) | "
             f"{s['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s |",
             f"| GEMM {s['gemm_square']}^3 | {s['gemm_square_flops_per_s'] / 1e9:.1f} GFLOP/s |"]
    for o in res["overheads"]:
        lines.append(f"| {o['preset']} phase ({o['steps']} steps): set-up / evaluation / lottery reset | "
                     f"{o['build_s']:.2f} s ({100 * o['build_share']:.1f}%) / {o['eval_s']:.2f} s "
                     f"({100 * o['eval_share']:.1f}%) / {o['lottery_reset_s'] * 1e3:.1f} ms "
                     f"({100 * o['lottery_share_of_lottery_phase']:.2f}%) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu", choices=["cpu"], help="navigation preset whose sizes are timed")
    p.add_argument("--repeats", type=int, default=30, help="timed repeats per measurement (median)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = get_preset("navigation", args.preset)
    task = NavigationTask(cfg, 0)
    data = data_rows(task, args.repeats)
    step = step_rows(task, args.repeats)
    res = {"preset": args.preset, "config": dataclasses.asdict(cfg), "data": data, "step": step,
           "overheads": [overhead_rows("smoke", step["step_s"], data["data_bulk_s"]),
                         overhead_rows(args.preset, step["step_s"], data["data_bulk_s"])],
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__}
    md = markdown(res)
    print(md)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "navigation_step.json").write_text(json.dumps(res, indent=1))
        (args.out / "navigation_step.md").write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
