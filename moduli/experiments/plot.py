"""Pictures of a result directory: metric versus sparsity, and one trained model's weights."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from .runner import read_results
from .table import summarize

__all__ = ["plot_directory", "plot_metric_vs_sparsity", "plot_model"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metric_vs_sparsity(records: list[dict], path) -> Path:
    """Mean metric (error bars: std over seeds) versus sparsity, one colour per regime.

    Solid lines are the sparse phase, dashed the lottery phase.
    """
    plt = _pyplot()
    rows = summarize(records)
    fig, ax = plt.subplots(figsize=(6, 4))
    columns = sorted({r["column"] for r in rows})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, col in enumerate(columns):
        for phase, style in (("sparse", "-o"), ("lottery", "--s")):
            rs = sorted((r for r in rows if r["column"] == col and r["phase"] == phase and r["n"] > 0),
                        key=lambda r: r["sparsity"])
            if phase == "lottery":  # the lottery curve starts from the dense model
                dense = [r for r in rows if r["column"] == col and r["phase"] == "sparse" and r["sparsity"] == 0 and r["n"] > 0]
                rs = dense + rs if rs else rs
            if not rs:
                continue
            x = [100 * r["sparsity"] for r in rs]
            y = [r["mean"] for r in rs]
            e = [0.0 if r["n"] < 2 else r["std"] for r in rs]
            ax.errorbar(x, y, yerr=e, fmt=style, color=colours[i % len(colours)], capsize=3,
                        label=f"{col} ({phase})", alpha=0.9)
    metric = rows[0]["metric"] if rows else ""
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel({"error_cm": "position error (cm)", "rmse": "RMSE"}.get(metric, metric))
    ax.set_title(f"{rows[0]['task'] if rows else ''}: {metric} versus sparsity")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_model(checkpoint, path, *, neuron: int = 0) -> Path:
    """The recurrent matrix of a checkpointed model, and one neuron's weights on its embedding.

    Left: ``|W_hh|`` with neurons ordered by their embedding's first
    coordinate (when the checkpoint has one). Right (moduli regimes): every
    neuron at its embedding point (first two coordinates), coloured by its
    incoming weight from ``neuron`` -- the paper's Appendix F heatmap.
    """
    plt = _pyplot()
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = state["model"]
    name = "rnn.weight_hh_l0"
    if name not in model and name + "_orig" not in model:
        raise ValueError(f"{checkpoint} has no recurrent matrix {name} to draw")
    if name + "_orig" in model:
        w = model[name + "_orig"] * model[name + "_mask"]
    else:
        w = model[name]
    points = (state.get("embeddings") or {}).get(name)
    fig, axes = plt.subplots(1, 2 if points is not None else 1, figsize=(10 if points is not None else 5, 4.5))
    axes = axes if points is not None else [axes]
    order = torch.argsort(points[0][:, 0]) if points is not None else torch.arange(w.shape[0])
    im = axes[0].imshow(w[order][:, order].abs().numpy(), cmap="viridis", interpolation="nearest")
    axes[0].set_title("|W_hh| (ordered by embedding)" if points is not None else "|W_hh|")
    fig.colorbar(im, ax=axes[0])
    if points is not None:
        pts_out, pts_in = points
        col = w[:, neuron].numpy()  # weights from `neuron` to every neuron
        vmax = float(abs(col).max()) or 1.0
        y = pts_out[:, 1].numpy() if pts_out.shape[1] > 1 else torch.zeros(len(col)).numpy()
        sc = axes[1].scatter(pts_out[:, 0].numpy(), y, c=col, cmap="coolwarm", vmin=-vmax, vmax=vmax, s=12)
        axes[1].scatter([float(pts_in[neuron, 0])], [float(pts_in[neuron, 1]) if pts_in.shape[1] > 1 else 0.0],
                        marker="*", s=150, c="k")
        axes[1].set_title(f"weights from neuron {neuron} at the embedding")
        fig.colorbar(sc, ax=axes[1])
    fig.suptitle(state["run_id"], fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_directory(out, *, run_id: Optional[str] = None, lams: Optional[list] = None) -> list[Path]:
    """Write ``out/plots/TASK_vs_sparsity.png`` per task and one model picture.

    The model picture uses the checkpoint of ``run_id`` (default: the first
    moduli-regime checkpoint, else the first checkpoint). ``lams`` keeps only
    results with those lambdas (regime ``none`` always kept).
    """
    import math

    out = Path(out)
    records = read_results(out)
    if lams:
        records = [r for r in records if r["regime"] == "none" or any(math.isclose(r["lam"], x) for x in lams)]
    if not records:
        raise FileNotFoundError(f"no results in {out}")
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    paths = []
    for task in sorted({r["task"] for r in records}):
        paths.append(plot_metric_vs_sparsity([r for r in records if r["task"] == task], plots / f"{task}_vs_sparsity.png"))
    ckpts = sorted((out / "checkpoints").glob("*-sparse.pt"))
    if run_id is not None:
        ckpts = [c for c in ckpts if c.name == f"{run_id}-sparse.pt"]
        if not ckpts:
            raise FileNotFoundError(f"no checkpoint for run {run_id!r} in {out / 'checkpoints'}")
    moduli_runs = [r["run_id"] for r in records if r["regime_spec"]["kind"] == "moduli"]
    preferred = [c for c in ckpts if c.name[: -len("-sparse.pt")] in moduli_runs]
    chosen = (preferred or ckpts)[:1]
    for c in chosen:
        try:
            paths.append(plot_model(c, plots / f"{c.name[: -len('.pt')]}_weights.png"))
        except ValueError:  # a non-recurrent model (digits): no W_hh picture
            if run_id is not None:
                raise
    return paths
