"""Paper-style tables from ``results.jsonl``: mean (std) over seeds."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Optional

from .results import RECORD_FIELDS, read_results

__all__ = ["summarize", "markdown_table", "inventory_table", "params_table", "write_csv", "dense_baselines", "breakdown",
           "breakdown_table", "write_breakdown_csv"]

_PHASE_ORDER = {"sparse": 0, "lottery": 1}
_METRIC_LABELS = {"error_cm": "error (cm)", "rmse": "RMSE"}


def metric_label(metric: str) -> str:
    """Axis and table label of a metric name (``"error_cm"`` -> ``"error (cm)"``)."""
    return _METRIC_LABELS.get(metric, metric)


def _column(rec: dict, multi_lam: set) -> str:
    label = rec["regime"]
    return f"{label} (λ={rec['lam']:g})" if label in multi_lam else label


def summarize(records: list[dict]) -> list[dict]:
    """One row per (task, column, sparsity, phase): mean, std (ddof=1), seeds.

    Diverged runs count as missing values and are reported in ``n_diverged``.
    """
    lams = defaultdict(set)
    for r in records:
        lams[(r["task"], r["regime"])].add(r["lam"])
    multi = {reg for (task, reg), ls in lams.items() if len(ls) > 1}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["task"], _column(r, multi), r["regime"], r["lam"], r["sparsity"], r["phase"], r["metric"])].append(r)
    rows = []
    for (task, column, regime, lam, sparsity, phase, metric), rs in groups.items():
        vals = [r["value"] for r in rs if r["value"] is not None]
        n = len(vals)
        mean = sum(vals) / n if n else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
        rows.append({
            "task": task, "column": column, "regime": regime, "lam": lam, "sparsity": sparsity,
            "phase": phase, "metric": metric, "mean": mean, "std": std, "n": n,
            "n_diverged": len(rs) - n, "seeds": " ".join(str(s) for s in sorted(r["seed"] for r in rs)),
            "recurrent_sparsity": sum(r["recurrent_sparsity"] for r in rs) / len(rs),
        })
    rows.sort(key=lambda r: (r["task"], r["sparsity"], _PHASE_ORDER.get(r["phase"], 9), r["column"]))
    return rows


def _fmt(row: Optional[dict], digits: int) -> str:
    if row is None:
        return "–"
    if row["n"] == 0:
        return f"diverged ×{row['n_diverged']}"
    s = f"{row['mean']:.{digits}f}"
    s += f" ({row['std']:.{digits}f})" if row["n"] > 1 else ""
    s += f" n={row['n']}"
    if row["n_diverged"]:
        s += f", {row['n_diverged']} diverged"
    return s


def markdown_table(records: list[dict], *, columns: Optional[list[str]] = None) -> str:
    """Markdown tables, one per task: rows ``S% Sparse`` / ``S% Lottery``, one column per regime.

    Cells are ``mean (std) n=seeds``; ``–`` marks combinations not run.
    """
    rows = summarize(records)
    out = []
    for task in sorted({r["task"] for r in rows}):
        trows = [r for r in rows if r["task"] == task]
        metric = trows[0]["metric"]
        digits = 2 if metric == "error_cm" else 3
        # regimes in their usual order, then lambda as a number (not as a string)
        order = {r["column"]: (regime_rank(r["regime"]), r["regime"], r["lam"]) for r in trows}
        cols = columns or sorted(order, key=order.get)
        cols = [c for c in cols if any(r["column"] == c for r in trows)]
        index = {(r["column"], r["sparsity"], r["phase"]): r for r in trows}
        keys = sorted({(r["sparsity"], r["phase"]) for r in trows}, key=lambda k: (k[0], _PHASE_ORDER.get(k[1], 9)))
        unit = metric_label(metric)
        out.append(f"**{task}** — {unit}, mean (std) over seeds\n")
        out.append("| | " + " | ".join(cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        for sparsity, phase in keys:
            name = f"{100 * sparsity:g}% {phase.capitalize()}"
            out.append(f"| {name} | " + " | ".join(_fmt(index.get((c, sparsity, phase)), digits) for c in cols) + " |")
        out.append("")
    return "\n".join(out)


def _count(x: float) -> str:
    return f"{x:,.0f}"


def params_table(records: list[dict]) -> str:
    """Markdown tables of what a sparse model keeps: nonzero parameters of the model, then of each pruned weight.

    Cells are the mean over seeds of ``nonzero_params`` (of ``params``, with
    the kept fraction), and per pruned weight the mean of its nonzero
    entries; ``–`` marks combinations not run or recorded before records
    carried the counts.
    """
    rows = [r for r in records if isinstance(r.get("params"), int) and isinstance(r.get("nonzero_params"), int)]
    if not rows:
        return "no record carries parameter counts (they were added to records later): nothing to tabulate"
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["regime"], r["sparsity"], r["phase"])].append(r)
    out = []
    for task in sorted({r["task"] for r in rows}):
        keys = sorted({(k[2], k[3]) for k in groups if k[0] == task}, key=lambda k: (k[0], _PHASE_ORDER.get(k[1], 9)))
        cols = sorted({k[1] for k in groups if k[0] == task}, key=lambda g: (regime_rank(g), g))
        out.append(f"**{task}** — nonzero parameters of the model (mean over seeds), of its total\n")
        out.append("| | " + " | ".join(cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        for sparsity, phase in keys:
            cells = []
            for c in cols:
                rs = groups.get((task, c, sparsity, phase))
                if not rs:
                    cells.append("–")
                    continue
                nz, total = sum(r["nonzero_params"] for r in rs) / len(rs), rs[0]["params"]
                cells.append(f"{_count(nz)} of {_count(total)} ({100 * nz / total:.1f}%)")
            out.append(f"| {100 * sparsity:g}% {phase.capitalize()} | " + " | ".join(cells) + " |")
        out.append("")
        tensors = sorted({n for r in rows if r["task"] == task for n in (r.get("tensor_nonzeros") or {})})
        if tensors:
            out.append(f"**{task}** — nonzero entries per pruned weight (mean over seeds)\n")
            out.append("| sparsity | phase | regime | " + " | ".join(tensors) + " |")
            out.append("|---|---|---|" + "---|" * len(tensors))
            for sparsity, phase in keys:
                for c in cols:
                    rs = groups.get((task, c, sparsity, phase))
                    if not rs:
                        continue
                    vals = []
                    for n in tensors:
                        got = [r["tensor_nonzeros"][n] for r in rs if n in (r.get("tensor_nonzeros") or {})]
                        vals.append(_count(sum(got) / len(got)) if got else "–")
                    out.append(f"| {100 * sparsity:g}% | {phase} | {c} | " + " | ".join(vals) + " |")
            out.append("")
    return "\n".join(out)


def inventory_table(records: list[dict]) -> str:
    """Markdown list of exactly what was run: seeds and training seconds per phase.

    One row per (task, sparsity, regime, lambda, phase), in table order, with
    the seeds, the threads used and the min–max of ``timings.train_s``.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["task"], r["sparsity"], regime_rank(r["regime"]), r["regime"], r["lam"],
                _PHASE_ORDER.get(r["phase"], 9), r["phase"])].append(r)
    out = ["| task | sparsity | regime | λ | phase | seeds | threads | train_s per phase (min–max) |",
           "|---|---|---|---|---|---|---|---|"]
    for key in sorted(groups):
        task, sparsity, _, regime, lam, _, phase = key
        rs = groups[key]
        secs = [r["timings"]["train_s"] for r in rs]
        seeds = ", ".join(str(s) for s in sorted(r["seed"] for r in rs))
        threads = ", ".join(sorted({str(r.get("torch_threads", "?")) for r in rs}))
        out.append(f"| {task} | {100 * sparsity:g}% | {regime} | {lam:g} | {phase} | {seeds} | {threads} | "
                   f"{min(secs):.0f}–{max(secs):.0f} |")
    out.append(f"\n{len(records)} results in total.")
    return "\n".join(out)


def regime_rank(column: str) -> int:
    """Position of a column in tables and legends: none, l1, shuffled, torus, then the rest (ties: by name)."""
    order = ["none", "l1", "shuffled", "torus"]
    base = column.split(" ")[0]
    return order.index(base) if base in order else len(order)


def lower_is_better(task: str) -> bool:
    """Whether the metric of ``task`` is an error (True for tasks not registered)."""
    from .registry import TASKS  # the tasks know their metric's direction

    entry = TASKS.get(task)
    return entry is None or not entry.task_type.higher_is_better


def dense_baselines(records: list[dict]) -> dict[tuple, dict[int, float]]:
    """``{(task, preset): {seed: value}}``: the dense model's metric (regime ``none``, sparsity 0, sparse phase).

    Diverged dense runs are left out.
    """
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in records:
        if r["regime"] == "none" and r["sparsity"] == 0 and r["phase"] == "sparse" and r["value"] is not None:
            out[(r["task"], r.get("preset", ""))][r["seed"]] = float(r["value"])
    return dict(out)


def breakdown(records: list[dict], *, factor: float = 2.0) -> list[dict]:
    """Breakdown sparsity per (task, preset, regime column, phase): where the metric first exceeds ``factor`` x dense.

    For each seed, the breakdown sparsity is the smallest sparsity whose
    result is above ``factor`` times the dense error of that seed (regime
    ``none`` at sparsity 0, sparse phase), or of the mean dense error over
    seeds when that seed has no dense run. A diverged result counts as broken
    down. A seed that stays below the threshold at every sparsity it was run at
    is *censored*: it broke down above its largest sparsity, and is counted
    in ``n_censored`` but not in the mean.

    Parameters
    ----------
    records : list of dict
        Records of :func:`~moduli.experiments.results.read_results`.
    factor : float
        Threshold as a multiple of the dense error, > 1 (default 2).

    Returns
    -------
    list of dict
        One row per group with sparsities above 0: ``task``, ``preset``,
        ``column``, ``regime``, ``lam``, ``phase``, ``metric``, ``dense`` (mean dense
        error), ``threshold``, ``per_seed`` (``{seed: sparsity or None}``,
        None when censored), ``mean``, ``std`` (ddof=1; nan below two values),
        ``n`` (seeds that broke down), ``n_censored``, ``max_sparsity``.

    Raises
    ------
    ValueError
        If ``factor`` is not above 1, a task's metric is higher-is-better (an
        accuracy has no "twice the error"), or a group has no dense baseline.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 1:
        raise ValueError(f"factor must be a finite number above 1, got {factor!r}")
    dense = dense_baselines(records)
    lams = defaultdict(set)
    for r in records:
        lams[(r["task"], r["regime"])].add(r["lam"])
    multi = {reg for (task, reg), ls in lams.items() if len(ls) > 1}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["sparsity"] > 0:
            groups[(r["task"], r.get("preset", ""), _column(r, multi), r["regime"], r["lam"], r["phase"])].append(r)
    rows = []
    for (task, preset, column, regime, lam, phase), rs in groups.items():
        if not lower_is_better(task):
            raise ValueError(f"the {task} task's metric is higher-is-better: a breakdown at {factor:g} x the dense "
                             "value is defined for errors only")
        base = dense.get((task, preset))
        if not base:
            raise ValueError(f"no dense baseline for {task} ({preset or 'no preset'}): run regime none at sparsity 0 "
                             "(--regime none --sparsity 0)")
        mean_dense = sum(base.values()) / len(base)
        per_seed: dict[int, Optional[float]] = {}
        for seed in sorted({r["seed"] for r in rs}):
            limit = factor * base.get(seed, mean_dense)
            broken = sorted(r["sparsity"] for r in rs if r["seed"] == seed
                            and (r["value"] is None or r["diverged"] or r["value"] > limit))
            per_seed[seed] = broken[0] if broken else None
        vals = [v for v in per_seed.values() if v is not None]
        n = len(vals)
        mean = sum(vals) / n if n else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
        rows.append({
            "task": task, "preset": preset, "column": column, "regime": regime, "lam": lam, "phase": phase,
            "metric": rs[0]["metric"], "dense": mean_dense, "threshold": factor * mean_dense, "per_seed": per_seed, "mean": mean, "std": std,
            "n": n, "n_censored": len(per_seed) - n, "max_sparsity": max(r["sparsity"] for r in rs),
        })
    rows.sort(key=lambda r: (r["task"], r["preset"], _PHASE_ORDER.get(r["phase"], 9), regime_rank(r["column"]),
                             r["column"]))
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:g}%"


def _fmt_breakdown(row: dict) -> str:
    if row["n"] == 0:
        return f"> {_pct(row['max_sparsity'])} (all {row['n_censored']} seeds)"
    s = f"{100 * row['mean']:.1f}%"
    s += f" ({100 * row['std']:.1f})" if row["n"] > 1 else ""
    s += f" n={row['n']}"
    if row["n_censored"]:
        s += f", {row['n_censored']} > {_pct(row['max_sparsity'])}"
    return s


def breakdown_table(records: list[dict], *, factor: float = 2.0) -> str:
    """Markdown tables of :func:`breakdown`, one per (task, preset): a row per regime, sparse and lottery columns.

    A cell is ``mean% (std) n=seeds`` over the seeds that broke down, with
    the seeds that did not (``k > S%``) and every seed's value after ``|``.
    """
    rows = breakdown(records, factor=factor)
    out = []
    for task, preset in sorted({(r["task"], r["preset"]) for r in rows}):
        trows = [r for r in rows if r["task"] == task and r["preset"] == preset]
        phases = sorted({r["phase"] for r in trows}, key=lambda p: _PHASE_ORDER.get(p, 9))
        cols = sorted({r["column"] for r in trows}, key=lambda c: (regime_rank(c), c))
        index = {(r["column"], r["phase"]): r for r in trows}
        dense = trows[0]["dense"]
        out.append(f"**{task}** ({preset}) — breakdown sparsity: the smallest sparsity whose {metric_label(trows[0]['metric'])} "
                   f"exceeds {factor:g} x the dense error ({dense:.2f}, threshold {factor * dense:.2f}); "
                   "mean (std) over seeds | per seed\n")
        out.append("| regime | " + " | ".join(phases) + " |")
        out.append("|---|" + "---|" * len(phases))
        for c in cols:
            cells = []
            for ph in phases:
                r = index.get((c, ph))
                if r is None:
                    cells.append("–")
                    continue
                seeds = ", ".join(f"{s}: {_pct(v) if v is not None else '>' + _pct(r['max_sparsity'])}"
                                  for s, v in r["per_seed"].items())
                cells.append(f"{_fmt_breakdown(r)} \\| {seeds}")
            out.append(f"| {c} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def write_breakdown_csv(records: list[dict], path, *, factor: float = 2.0) -> Path:
    """Write :func:`breakdown` rows as CSV (``per_seed`` as ``seed:sparsity`` pairs, ``>`` for censored); returns the path."""
    path = Path(path)
    rows = breakdown(records, factor=factor)
    fields = ["task", "preset", "column", "regime", "lam", "phase", "metric", "dense", "threshold", "mean", "std", "n",
              "n_censored", "max_sparsity", "per_seed"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "per_seed": " ".join(f"{s}:{v:g}" if v is not None else f"{s}:>{r['max_sparsity']:g}"
                                                  for s, v in r["per_seed"].items())})
    return path


def write_csv(records: list[dict], path) -> Path:
    """Write :func:`summarize` rows as CSV; returns the path."""
    path = Path(path)
    rows = summarize(records)
    fields = ["task", "column", "regime", "lam", "sparsity", "phase", "metric", "mean", "std", "n",
              "n_diverged", "seeds", "recurrent_sparsity"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def load(out) -> list[dict]:
    """Records of a result directory; raises if there are none."""
    records = read_results(out, require=RECORD_FIELDS)
    if not records:
        raise FileNotFoundError(f"no results in {Path(out)}")
    return records
