"""Paper-style tables from ``results.jsonl``: mean (std) over seeds."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Optional

from .results import RECORD_FIELDS, read_results

__all__ = ["summarize", "markdown_table", "inventory_table", "write_csv"]

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
    order = ["none", "l1", "shuffled", "torus"]
    base = column.split(" ")[0]
    return order.index(base) if base in order else len(order)


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
