"""λ sensitivity (Appendix G): ``moduli sweep`` and the metric-versus-λ plot.

``moduli sweep TASK`` trains every regime (default: ``l1``, ``torus``,
``shuffled``) at every λ of a logarithmic grid at one sparsity (default 90 %)
with the resumable runner, adds the unregularised baseline (``none``, which
has no λ) unless ``--no-baseline``, then prints the table and writes
``DIR/plots/TASK_vs_lambda.png``. Importing this module registers the command.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional

from .._commands import command
from .cli import (  # registers run/table/plot
    SweepOutput, _nonneg_float, _positive_int, add_regime_options, add_sweep_options, dry_run, execution_options,
    interrupted, parse_sparsity, print_config, regimes_from_args, report, resolve_config,
)
from .plot import save_figure, wants_log_scale
from .regimes import parse_regime
from .registry import add_config_arguments, preset_names, task_names
from .results import RECORD_FIELDS, read_results
from .runner import run_sweep
from .table import markdown_table, metric_label, summarize, write_csv

__all__ = ["log_grid", "plot_metric_vs_lambda", "DEFAULT_SWEEP_REGIMES"]

DEFAULT_SWEEP_REGIMES = ("l1", "torus", "shuffled")


def log_grid(low: float, high: float, num: int) -> list[float]:
    """``num`` values from ``low`` to ``high``, evenly spaced in log scale, rounded to 3 significant digits.

    Examples
    --------
    >>> log_grid(1e-4, 1.0, 5)
    [0.0001, 0.001, 0.01, 0.1, 1.0]
    >>> log_grid(0.05, 0.05, 1)
    [0.05]
    """
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive int, got {num!r}")
    if high < low:
        raise ValueError(f"high ({high}) must be at least low ({low})")
    if num == 1:
        if low != high:
            raise ValueError(f"num=1 needs low == high, got {low} and {high}")
        return [float(f"{low:.3g}")]
    a, b = math.log10(low), math.log10(high)
    return [float(f"{10 ** (a + (b - a) * i / (num - 1)):.3g}") for i in range(num)]


def plot_metric_vs_lambda(records: list[dict], path, *, sparsity: Optional[float] = None) -> Path:
    """Mean metric (error bars: std over seeds) versus λ (log axis), one colour per regime.

    Solid lines: the sparse phase; dashed: the lottery phase. Regimes without
    λ (``none``) are drawn as horizontal lines. Only records at ``sparsity``
    are drawn (default: the largest sparsity present).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        raise ValueError("records is empty: nothing to plot")
    if sparsity is None:
        sparsity = max(r["sparsity"] for r in records)
    rows = [r for r in summarize(records) if r["sparsity"] == sparsity and r["n"] > 0]
    if not rows:
        raise ValueError(f"no finished results at sparsity {sparsity}")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    regimes = sorted({r["regime"] for r in rows}, key=lambda g: (g != "none", g))
    lams = sorted({r["lam"] for r in rows if r["lam"] > 0})
    for i, regime in enumerate(regimes):
        colour = colours[i % len(colours)]
        for phase, style in (("sparse", "-o"), ("lottery", "--s")):
            rs = sorted((r for r in rows if r["regime"] == regime and r["phase"] == phase), key=lambda r: r["lam"])
            if not rs:
                continue
            if all(r["lam"] == 0 for r in rs):
                if lams:
                    ax.hlines(rs[0]["mean"], lams[0], lams[-1], colors=colour, linestyles=":" if phase == "sparse" else "-.",
                              label=f"{regime} ({phase})")
                continue
            rs = [r for r in rs if r["lam"] > 0]
            ax.errorbar([r["lam"] for r in rs], [r["mean"] for r in rs],
                        yerr=[0.0 if r["n"] < 2 else r["std"] for r in rs], fmt=style, color=colour, capsize=3,
                        label=f"{regime} ({phase})", alpha=0.9)
    metric = rows[0]["metric"]
    ax.set_xscale("log")
    if wants_log_scale(r["mean"] for r in rows):
        ax.set_yscale("log")
    ax.set_xlabel("λ (regularizing factor)")
    ax.set_ylabel(metric_label(metric) + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.set_title(f"{rows[0]['task']}: {metric} versus λ at {100 * sparsity:g}% sparsity")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=task_names(), help="the task to sweep")
    p.add_argument("--preset", choices=preset_names(), default="cpu",
                   help="hyperparameter preset (default: cpu; navigation also has gpu, authors and authors-paper)")
    add_regime_options(p, default=" ".join(DEFAULT_SWEEP_REGIMES))
    p.add_argument("--lam-min", type=_nonneg_float, default=1e-4, help="smallest λ of the log grid (default 1e-4)")
    p.add_argument("--lam-max", type=_nonneg_float, default=1.0, help="largest λ of the log grid (default 1)")
    p.add_argument("--num", type=_positive_int, default=5, help="grid points (default 5)")
    p.add_argument("--lam", action="append", type=_nonneg_float, metavar="LAMBDA",
                   help="explicit λ values instead of the grid; repeatable")
    p.add_argument("--sparsity", type=parse_sparsity, default=0.9, help="target sparsity (default 0.9)")
    p.add_argument("--no-baseline", action="store_true", help="do not train the unregularised baseline (none)")
    add_sweep_options(p, default_out="runs/TASK-PRESET-sweep")
    add_config_arguments(p, exclude=("lam",))


@command("sweep")(_sweep_args)
def sweep(args: argparse.Namespace) -> int:
    try:
        cfg = resolve_config(args.task, args.preset, args, exclude=("lam",))
        regimes = regimes_from_args(args, DEFAULT_SWEEP_REGIMES)
        lams = sorted(set(args.lam)) if args.lam else log_grid(args.lam_min, args.lam_max, args.num)
    except (TypeError, ValueError) as exc:
        print(f"moduli sweep: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print_config(cfg)
        return 0
    out = args.out or Path("runs") / f"{args.task}-{args.preset}-sweep"
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    if not args.no_baseline and all(r.kind != "none" for r in regimes):
        regimes = [parse_regime("none")] + regimes
    if args.dry_run:
        return dry_run(args.task, args.preset, regimes, lams, [args.sparsity], seeds, out, cfg, prog="moduli sweep")
    options = execution_options(args)
    output = SweepOutput("moduli sweep", out, options["progress"])
    try:
        run_sweep(args.task, cfg, regimes, [args.sparsity], seeds, out, preset=args.preset, lams=lams, log=output,
                  **options)
        records = [r for r in read_results(out, require=RECORD_FIELDS)
                   if r["task"] == args.task and r["sparsity"] == args.sparsity]
        csv_path = write_csv(records, out / "sweep.csv")
        png = plot_metric_vs_lambda(records, out / "plots" / f"{args.task}_vs_lambda.png", sparsity=args.sparsity)
    except (ValueError, RuntimeError, OSError) as exc:
        return report("moduli sweep", exc)
    except KeyboardInterrupt:
        return interrupted("moduli sweep", out)
    output.print(markdown_table(records))
    output.print(f"results: {out / 'results.jsonl'}; table: {csv_path}; plot: {png}")
    return 0
