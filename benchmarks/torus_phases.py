"""Did the prior make a torus? Circular phases decoded from a navigation RNN's activity, against position.

For each sparse checkpoint of DIR (or the ``--run`` ids given), the run's task
is rebuilt from its record and the trained model runs the task's evaluation
walks; ``--points`` hidden states (every time step of the first walks) are
analysed two ways:

* **topological**: the states are centred and projected on their ``--pca``
  leading principal components (6 by default, as is usual for grid-cell
  recordings; on the raw 256-dimensional states the max-min landmarks chase
  outlying states and the coordinates come out nearly constant), and the two
  most persistent H1 classes of that cloud (landmark Rips filtration,
  :func:`moduli.analysis.cocycles`) give two circular coordinates
  (:func:`moduli.analysis.circular_coordinates`); printed with the lengths of
  the three longest bars;
* **bump on the embedding**: for a run whose prior embeds the neurons on a
  torus (the torus regime, and the shuffled control, whose embedding does not
  shape the coefficients), the activity-weighted circular mean of the neurons'
  torus coordinates, one phase per axis of the torus; and, for every run, the
  same read-out through a seeded random torus embedding, the null of this
  read-out (any position code seen through any circular projection gives a
  phase that depends on position).

A phase *tracks position* when it is a plane wave of the agent's position:
``theta = k . x + c (mod 1)``. Each phase is scored by the mean resultant length
``R = |mean exp(2 pi i (theta - k . x))|`` maximised over a grid of wave vectors
``k`` (up to ``--kmax`` cycles per metre, step ``--kstep``), so ``R = 1`` is a
perfect plane wave; the null ``R0`` is the same maximum with the positions
permuted (the search alone makes ``R0`` positive, and a concentrated phase makes
it large: ``spread`` = 1 - |mean exp(2 pi i theta)| is printed, 0 for a constant
phase). Two searches: every ``k``, and *periodic* ``k`` only (at least one full
period across the box, ``|k| >= 1 / box_width``), where a smooth non-periodic map
of position cannot score by being a fraction of one long wave.

Run: ``PYTHONPATH=. python benchmarks/torus_phases.py DIR [--run RUN_ID ...] [--figure out.png]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from moduli import analysis
from moduli.experiments.registry import config_from_dict, make_task
from moduli.experiments.results import migrate_config
from moduli.manifolds.catalog import build as build_manifold


def _records(run_dir: Path) -> dict:
    out = {}
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if r["phase"] == "sparse":
                out[r["run_id"]] = r
    return out


def load_run(run_dir: Path, record: dict):
    """The run's task and its trained sparse model (masks applied), from the record and the checkpoint."""
    from moduli import targets

    cfg = config_from_dict(record["task"], migrate_config(record["config"]))
    task = make_task(record["task"], cfg, record["seed"])
    model = task.build_model()
    state = torch.load(run_dir / "checkpoints" / f"{record['run_id']}-sparse.pt", map_location="cpu",
                       weights_only=False)
    targets.restore_masks(model, state["masks"])
    model.load_state_dict(state["model"])
    return task, model.eval(), state.get("embeddings", {})


def states_and_positions(task, model, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Hidden states of the evaluation walks (every step of the first walks) and the positions (m)."""
    ev = task.eval_set
    walks = -(-n_points // ev.velocity.shape[1])
    with torch.no_grad():
        h = model.hidden(task._inputs(ev.velocity[:walks]), task.place_cells(ev.init_position[:walks]))
    return (h.reshape(-1, h.shape[-1])[:n_points].numpy().astype(np.float64),
            ev.position[:walks].reshape(-1, 2)[:n_points].numpy().astype(np.float64))


def plane_wave_fit(theta: np.ndarray, pos: np.ndarray, kmax: float, kstep: float,
                   kmin: float = 0.0) -> tuple[float, np.ndarray]:
    """``max_k |mean exp(2 pi i (theta - k . x))|`` over the wave vectors of the grid with ``|k| >= kmin``,
    and the maximising ``k`` (cycles/m).

    The sum over points separates in the two axes of ``k``: one complex matrix product
    ``(exp(-2 pi i kx x) * exp(2 pi i theta)) @ exp(-2 pi i ky y).T`` gives every grid point at once.
    """
    ks = np.arange(-kmax, kmax + kstep / 2, kstep)
    ax = np.exp(-2j * np.pi * np.outer(ks, pos[:, 0])) * np.exp(2j * np.pi * theta)[None, :]   # [K, n]
    ay = np.exp(-2j * np.pi * np.outer(ks, pos[:, 1]))                                          # [K, n]
    r = np.abs(ax @ ay.T) / len(theta)                                                         # [kx, ky]
    r[np.hypot(ks[:, None], ks[None, :]) < kmin - 1e-12] = -1.0
    i, j = np.unravel_index(int(r.argmax()), r.shape)
    return float(r[i, j]), np.array([ks[i], ks[j]])


def bump_phases(states: np.ndarray, points: np.ndarray, period: float) -> np.ndarray:
    """Per state and torus axis, the circular mean of the neurons' coordinates weighted by their activity, in [0, 1)."""
    w = np.clip(states, 0, None)
    z = w @ np.exp(2j * np.pi * points / period)                    # [n, axes]
    return (np.angle(z) / (2 * np.pi)) % 1.0


def analyse(run_dir: Path, record: dict, args, rng) -> dict:
    task, model, embeddings = load_run(run_dir, record)
    states, pos = states_and_positions(task, model, args.points)
    live = states.std(0) > 0
    out = {"run_id": record["run_id"], "regime": record["regime"], "value": record["value"],
           "active_units": int(live.sum()), "positions": pos, "phases": {}}
    cloud = states[:, live] - states[:, live].mean(0)
    if args.pca:
        cloud = cloud @ np.linalg.svd(cloud, full_matrices=False)[2][:args.pca].T
    coh = analysis.cocycles(cloud, n_landmarks=args.landmarks)
    bars = np.asarray(coh.diagram, dtype=float)
    out["bars"] = (bars[:, 1] - bars[:, 0])[:3] if len(bars) else np.zeros(0)
    if len(bars) >= 2:
        cc = analysis.circular_coordinates(cloud, n_coords=2, n_landmarks=args.landmarks, cohomology=coh)
        for j in range(2):
            out["phases"][f"H1 class {j + 1}"] = cc.theta[:, j]
    spec = record["regime_spec"]
    emb = embeddings.get("rnn.weight_hh_l0")
    torus = build_manifold("torus")
    embeddings = {}
    if emb is not None and spec.get("manifold") == "torus":
        embeddings["embedding"] = emb[0].numpy().astype(np.float64)
    # the null of the read-out, for every run: a random torus embedding of the same network
    embeddings["random embedding"] = torus.random_uniform(
        states.shape[1], generator=torch.Generator().manual_seed(0)).double().numpy()
    for source, points in embeddings.items():
        ph = bump_phases(states, points, float(torus.period))
        for j in range(ph.shape[1]):
            out["phases"][f"bump axis {j + 1} ({source})"] = ph[:, j]
    out["fits"], out["periodic"], out["spread"] = {}, {}, {}
    kmin = 1.0 / task.cfg.box_width
    for name, theta in out["phases"].items():
        perm = pos[rng.permutation(len(pos))]
        out["spread"][name] = 1.0 - float(abs(np.exp(2j * np.pi * theta).mean()))
        for key, lo in (("fits", 0.0), ("periodic", kmin)):
            r, k = plane_wave_fit(theta, pos, args.kmax, args.kstep, lo)
            r0, _ = plane_wave_fit(theta, perm, args.kmax, args.kstep, lo)
            out[key][name] = (r, k, r0)
    return out


def figure(results: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(r["phases"]) for r in results)
    fig, axes = plt.subplots(len(results), cols, figsize=(2.6 * cols, 2.7 * len(results)), squeeze=False)
    for i, res in enumerate(results):
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            if j >= len(res["phases"]):
                ax.axis("off")
                continue
            name, theta = list(res["phases"].items())[j]
            r, k, r0 = res["periodic"][name]
            ax.scatter(res["positions"][:, 0], res["positions"][:, 1], c=theta, cmap="hsv", vmin=0, vmax=1, s=3)
            ax.set_aspect("equal")
            ax.set_title(f"{name}\nperiodic R={r:.2f} (null {r0:.2f})", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"{res['regime']}\n{res['value']:.1f} cm", fontsize=8)
    fig.suptitle("phases decoded from activity, coloured over the agent's position (hsv: phase in [0, 1))", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path, help="a navigation result directory with sparse checkpoints")
    p.add_argument("--run", action="append", default=None, help="run ids (default: every sparse checkpoint)")
    p.add_argument("--points", type=int, default=1500, help="hidden states analysed (default 1500)")
    p.add_argument("--pca", type=int, default=6, help="principal components of the states for the cohomology "
                   "(default 6; 0: the raw states)")
    p.add_argument("--landmarks", type=int, default=120, help="landmarks of the cohomology (default 120)")
    p.add_argument("--kmax", type=float, default=4.0, help="largest wave number searched, cycles/m (default 4)")
    p.add_argument("--kstep", type=float, default=0.05, help="step of the wave-vector grid (default 0.05)")
    p.add_argument("--figure", type=Path, default=None, help="write the phase maps here (png)")
    args = p.parse_args()
    recs = _records(args.dir)
    ids = args.run or sorted(r for r in recs if (args.dir / "checkpoints" / f"{r}-sparse.pt").exists())
    missing = [r for r in ids if r not in recs]
    if missing:
        raise SystemExit(f"no sparse record for {', '.join(missing)} in {args.dir}")
    rng = np.random.default_rng(0)
    results = []
    for run_id in ids:
        res = analyse(args.dir, recs[run_id], args, rng)
        results.append(res)
        print(f"{run_id}: {res['regime']}, sparse error {res['value']:.2f} cm, {res['active_units']} active units; "
              f"three longest H1 bars {np.round(res['bars'], 3).tolist()}")
        for name, (r, k, r0) in res["fits"].items():
            rp, kp, rp0 = res["periodic"][name]
            print(f"  {name:34s} spread {res['spread'][name]:.3f} | any k: R = {r:.3f} at ({k[0]:+.2f}, {k[1]:+.2f}), "
                  f"null {r0:.3f} | periodic k: R = {rp:.3f} at ({kp[0]:+.2f}, {kp[1]:+.2f}), null {rp0:.3f}")
    if args.figure is not None and results:
        figure(results, args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
