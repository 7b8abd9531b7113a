"""Pictures of a result directory: metric versus sparsity, and one trained model's weights and embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import math

import torch

from .. import analysis, targets
from ..manifolds import catalog
from .results import RECORD_FIELDS, curve_path, read_checkpoint, read_curve, read_results
from .table import lower_is_better, breakdown, dense_baselines, regime_rank, metric_label, summarize

__all__ = ["plot_directory", "plot_metric_vs_sparsity", "plot_breakdown", "plot_model", "plot_curves"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def wants_log_scale(values) -> bool:
    """Whether positive values span more than a factor 20 (a collapse would flatten every other curve)."""
    values = list(values)
    return bool(values) and min(values) > 0 and max(values) > 20 * min(values)


def save_figure(fig, path, *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (its folder created if needed), close it, and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return path


def plot_metric_vs_sparsity(records: list[dict], path) -> Path:
    """Mean metric (error bars: std over seeds) versus sparsity, one colour per regime.

    Solid lines are the sparse phase, dashed the lottery phase.
    """
    plt = _pyplot()
    rows = summarize(records)
    fig, ax = plt.subplots(figsize=(6, 4))
    columns = sorted({r["column"] for r in rows}, key=lambda c: (regime_rank(c), c))
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
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{rows[0]['task'] if rows else ''}: {metric} versus sparsity")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_breakdown(records: list[dict], path, *, factor: float = 2.0) -> Path:
    """Error versus sparsity on a log scale of the kept fraction, one panel per phase, with the breakdown line.

    The x axis is ``1 - sparsity`` on a log scale, decreasing to the right and
    labelled in sparsity, so 90, 99 and 99.9% are evenly spaced; the dense
    model (regime ``none`` at sparsity 0) is a black line, ``factor`` times it
    a dotted one, and each regime's breakdown sparsity (:func:`breakdown`,
    mean over the seeds that broke down) a mark on that line. Points are the
    mean over seeds, error bars the std. One task and preset of ``records``
    at a time.

    Raises
    ------
    ValueError
        If ``records`` hold more than one (task, preset) or no dense baseline.
    """
    keys = {(r["task"], r.get("preset", "")) for r in records}
    if len(keys) != 1:
        raise ValueError(f"plot_breakdown draws one task and preset at a time; got {sorted(keys)}")
    (task, preset), = keys
    dense = dense_baselines(records).get((task, preset))
    if not dense:
        raise ValueError(f"no dense baseline for {task} ({preset}): run regime none at sparsity 0")
    base = sum(dense.values()) / len(dense)
    plt = _pyplot()
    rows = [r for r in summarize(records) if r["n"] > 0]
    points = {(r["column"], r["phase"]): r for r in breakdown(records, factor=factor)}
    phases = [p for p in ("sparse", "lottery") if any(r["phase"] == p and r["sparsity"] > 0 for r in rows)]
    fig, axes = plt.subplots(1, len(phases), figsize=(5.5 * len(phases), 4), sharey=True, squeeze=False)
    columns = sorted({r["column"] for r in rows}, key=lambda c: (regime_rank(c), c))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    sparsities = sorted({r["sparsity"] for r in rows})
    ticks = [1 - s for s in sparsities if s > 0]
    for ax, phase in zip(axes[0], phases):
        ax.set_xscale("log")
        ax.set_xlim(max(ticks) * 1.5, min(ticks) / 1.5)  # decreasing: sparsity grows to the right
        ax.set_autoscalex_on(False)
        for i, col in enumerate(columns):
            rs = sorted((r for r in rows if r["column"] == col and r["phase"] == phase and r["sparsity"] > 0),
                        key=lambda r: r["sparsity"])
            if not rs:
                continue
            colour = colours[i % len(colours)]
            ax.errorbar([1 - r["sparsity"] for r in rs], [r["mean"] for r in rs],
                        yerr=[0.0 if r["n"] < 2 else r["std"] for r in rs], fmt="-o", color=colour, capsize=3,
                        label=col, alpha=0.9)
            b = points.get((col, phase))
            if b is not None and b["n"] > 0:
                ax.plot([1 - b["mean"]], [factor * base], marker="v", markersize=9, color=colour, linestyle="none")
        ax.axhline(base, color="black", linewidth=1, label=f"dense ({base:.2f})")
        ax.axhline(factor * base, color="black", linewidth=1, linestyle=":", label=f"{factor:g} x dense")
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{100 * (1 - t):g}" for t in ticks], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("sparsity (%), log scale of the kept fraction")
        ax.set_title(f"{phase} phase")
    metric = rows[0]["metric"] if rows else ""
    axes[0][0].set_ylabel(metric_label(metric))
    legend = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    axes[0][0].legend(list(legend.values()), list(legend), fontsize=7)
    fig.suptitle(f"{task} ({preset}): breakdown at {factor:g} x the dense {metric_label(metric)} (triangles)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class NoRecurrentMatrix(ValueError):
    """The checkpoint holds no ``rnn.weight_hh_l0`` to draw (a feed-forward model)."""


def _recurrent_weight(state: dict, checkpoint, name: str = "rnn.weight_hh_l0") -> torch.Tensor:
    try:
        return targets.effective_from_state(state["model"], name)
    except KeyError:
        raise NoRecurrentMatrix(f"{checkpoint} has no recurrent matrix {name} to draw") from None


def plot_model(checkpoint, plots_dir, *, manifold=None, neuron: int = 0, maxdim: int = 2) -> list[Path]:
    """Pictures of one checkpointed recurrent model, written to ``plots_dir``.

    ``RUN_matrix.png``
        ``|W_hh|`` with neurons ordered by their embedding's first coordinate
        (when the checkpoint has an embedding).
    ``RUN_heatmap.png`` (moduli and shuffled regimes)
        The weights onto ``neuron`` drawn at the embedding points on
        ``manifold`` (:func:`moduli.analysis.plot_weight_heatmap`, the paper's
        Appendix F picture).
    ``RUN_persistence.png`` (moduli and shuffled regimes)
        Persistence diagram (H0..``maxdim``) of the neurons' embedding points
        under ``manifold``'s geodesic distance, as in the paper's Appendix H:
        with trained embeddings it shows which shape the neurons moved to.

    Parameters
    ----------
    checkpoint : path
        A ``DIR/checkpoints/RUN_ID-sparse.pt`` file written by the runner.
    plots_dir : path
    manifold : moduli.manifolds.Manifold, optional
        The space of the embedding (default: coordinates as Euclidean points).
    neuron : int
    maxdim : int
        Highest homology dimension of the persistence picture.

    Returns
    -------
    list of Path

    Raises
    ------
    moduli.experiments.results.CheckpointError
        If ``checkpoint`` cannot be read (the message names it).
    """
    plt = _pyplot()
    state = read_checkpoint(checkpoint)
    w = _recurrent_weight(state, checkpoint)
    points = (state.get("embeddings") or {}).get("rnn.weight_hh_l0")
    run_id = state["run_id"]
    plots_dir = Path(plots_dir)
    paths = []

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    order = torch.argsort(points[0][:, 0]) if points is not None else torch.arange(w.shape[0])
    im = ax.imshow(w[order][:, order].abs().numpy(), cmap="viridis", interpolation="nearest")
    ax.set_title(f"|W_hh|{' ordered by embedding' if points is not None else ''}\n{run_id}", fontsize=8)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    paths.append(plots_dir / f"{run_id}_matrix.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    if points is None:
        return paths

    pts = points[0]
    paths.append(plots_dir / f"{run_id}_heatmap.png")
    analysis.plot_weight_heatmap(w, pts, manifold, neuron=neuron, path=paths[-1],
                                 title=f"weights onto neuron {neuron}\n{run_id}")
    result = analysis.persistence(pts, manifold=manifold, maxdim=maxdim,
                                  n_landmarks=min(len(pts), 150) if maxdim >= 2 else None)
    paths.append(plots_dir / f"{run_id}_persistence.png")
    analysis.plot_diagram(result, path=paths[-1],
                          title=f"persistence of the neurons' embedding\n{run_id}")
    return paths


def plot_curves(out, records: list[dict], path, *, sparsity: float) -> Path:
    """Learning curves at one sparsity: training loss (top) and the task metric at each pruning epoch (bottom),
    sparse phase left and lottery phase right, one colour per regime (one line per seed).

    Reads ``out/curves/RUN_ID-PHASE.jsonl`` of every record at ``sparsity``
    (:func:`~moduli.experiments.results.read_curve`).

    Raises
    ------
    ValueError
        If no record at ``sparsity`` has a curve (records written before curves existed).
    """
    rows = [r for r in records if r["sparsity"] == sparsity]
    curves = [(r, read_curve(out, r["run_id"], r["phase"])) for r in rows]
    curves = [(r, c) for r, c in curves if c]
    if not curves:
        raise ValueError(f"no learning curves at sparsity {sparsity:g} in {Path(out) / 'curves'} (records written "
                         "before curves existed have none)")
    plt = _pyplot()
    phases = [p for p in ("sparse", "lottery") if any(r["phase"] == p for r, _ in curves)]
    fig, axes = plt.subplots(2, len(phases), figsize=(5.5 * len(phases), 6.5), squeeze=False, sharex="col")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    regimes = sorted({r["regime"] for r, _ in curves}, key=lambda g: (regime_rank(g), g))
    metric = curves[0][0]["metric"]
    for j, phase in enumerate(phases):
        top, bottom = axes[0][j], axes[1][j]
        for i, regime in enumerate(regimes):
            labelled = False
            for r, c in curves:
                if r["phase"] != phase or r["regime"] != regime:
                    continue
                label = None if labelled else regime
                labelled = True
                top.plot([x["step"] for x in c], [x["loss"] for x in c], color=colours[i % len(colours)],
                         lw=1.2, alpha=0.85, label=label)
                pts = [(x["step"], x[metric]) for x in c if x.get(metric) is not None]
                if pts:
                    bottom.plot(*zip(*pts), "-o", ms=3, color=colours[i % len(colours)], lw=1.2, alpha=0.85,
                                label=label)
        top.set_title(f"{phase} phase, {100 * sparsity:g}% sparsity")
        top.set_ylabel("training loss (mean since the previous point)")
        bottom.set_ylabel(metric_label(metric) + " (evaluation set)")
        bottom.set_xlabel("training step")
        if wants_log_scale(y for line in bottom.get_lines() for y in line.get_ydata()):
            bottom.set_yscale("log")
        top.legend(fontsize=7)
    fig.suptitle(f"{curves[0][0]['task']}: learning curves (one line per seed)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_directory(out, *, run_id: Optional[str] = None, lams: Optional[list] = None,
                   breakdown_factor: float = 2.0, curves: bool = False) -> list[Path]:
    """Write ``out/plots/TASK_vs_sparsity.png`` per task, ``TASK-PRESET_breakdown.png`` per (task, preset)
    with a dense baseline (:func:`plot_breakdown`, lower-is-better metrics) and one model's pictures.

    The model pictures (:func:`plot_model`) use the checkpoint of ``run_id``
    (default: the first moduli-regime checkpoint, else the first checkpoint),
    drawn on the run's own manifold. ``lams`` keeps only
    results with those lambdas (regime ``none`` always kept).
    ``breakdown_factor`` is the threshold of the breakdown figures, a multiple
    of the dense error (default 2). ``curves=True`` adds
    ``out/plots/TASK_curves_sSPARSITY.png`` per task and sparsity whose records
    have learning curves (:func:`plot_curves`).
    """
    out = Path(out)
    records = read_results(out, require=RECORD_FIELDS)
    if lams:
        records = [r for r in records if r["regime"] == "none" or any(math.isclose(r["lam"], x) for x in lams)]
    if not records:
        raise FileNotFoundError(f"no results in {out}")
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    paths = []
    for task in sorted({r["task"] for r in records}):
        paths.append(plot_metric_vs_sparsity([r for r in records if r["task"] == task], plots / f"{task}_vs_sparsity.png"))
        for (t, preset) in sorted(k for k in dense_baselines(records) if k[0] == task):
            rs = [r for r in records if r["task"] == task and r.get("preset", "") == preset]
            if any(r["sparsity"] > 0 for r in rs) and lower_is_better(task):
                paths.append(plot_breakdown(rs, plots / f"{task}-{preset}_breakdown.png", factor=breakdown_factor))
    if curves:
        drawn = 0
        for task in sorted({r["task"] for r in records}):
            rs = [r for r in records if r["task"] == task]
            for sp in sorted({r["sparsity"] for r in rs}):
                if any(curve_path(out, r["run_id"], r["phase"]).exists() for r in rs if r["sparsity"] == sp):
                    paths.append(plot_curves(out, rs, plots / f"{task}_curves_s{100 * sp:g}.png", sparsity=sp))
                    drawn += 1
        if not drawn:
            raise ValueError(f"no learning curves in {out / 'curves'} (records written before curves existed "
                             "have none)")
    ckpts = sorted((out / "checkpoints").glob("*-sparse.pt"))
    if run_id is not None:
        ckpts = [c for c in ckpts if c.name == f"{run_id}-sparse.pt"]
        if not ckpts:
            raise FileNotFoundError(f"no checkpoint for run {run_id!r} in {out / 'checkpoints'}")
    spaces = {r["run_id"]: r["regime_spec"].get("manifold") for r in records}
    moduli_runs = [r["run_id"] for r in records if r["regime_spec"]["kind"] == "moduli"]
    preferred = [c for c in ckpts if c.name[: -len("-sparse.pt")] in moduli_runs]
    for c in (preferred or ckpts)[:1]:
        name = spaces.get(c.name[: -len("-sparse.pt")])
        try:
            paths += plot_model(c, plots, manifold=catalog.build(name) if name else None)
        except NoRecurrentMatrix:  # a feed-forward model (digits): no W_hh pictures
            if run_id is not None:
                raise
    return paths
