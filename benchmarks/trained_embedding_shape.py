"""Where did trained embeddings go? Displacement, spread and persistence against the start.

For each ``*-sparse.pt`` checkpoint of a ``:trained`` regime in a result
directory (and each embedded weight matrix in it), rebuilds the seeded initial
embedding exactly as the runner made it (``runner.initial_embeddings``)
and prints: the median and largest displacement of a neuron, the mean pairwise
distance before and after, the longest H1 bar before and after, and the H1
bottleneck distance between the two persistence diagrams (geodesic distance of
the run's manifold; ``moduli.analysis.persistence``).

Run: ``PYTHONPATH=. python benchmarks/trained_embedding_shape.py runs/nav-trained``
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from moduli import analysis
from moduli.experiments.registry import config_from_dict
from moduli.experiments.regimes import Regime
from moduli.manifolds.catalog import build as build_manifold
from moduli.experiments.runner import RunSpec, initial_embeddings, read_results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path)
    args = p.parse_args()
    records = {r["run_id"]: r for r in read_results(args.dir) if r["phase"] == "sparse"}
    print(f"{'run':58s} {'moved med/max':>14s} {'pair d start/end':>17s} {'H1 max start/end':>17s} {'bottleneck':>10s}")
    for run_id, rec in sorted(records.items()):
        spec = rec["regime_spec"]
        ckpt = args.dir / "checkpoints" / f"{run_id}-sparse.pt"
        if not (spec["kind"] == "moduli" and spec["trained"] and ckpt.exists()):
            continue
        cfg = dataclasses.replace(config_from_dict(rec["task"], rec["config"]), lam=rec["lam"])
        regime = Regime.from_dict(spec)
        start = initial_embeddings(RunSpec(rec["task"], rec["preset"], regime, rec["lam"], rec["sparsity"], rec["seed"]), cfg)
        trained = torch.load(ckpt, map_location="cpu", weights_only=False)["embeddings"]
        space = build_manifold(spec["manifold"])
        for name in start:  # one line per embedded weight matrix
            before, after = start[name][0], trained[name][0]
            moved = space.dist(before, after)
            pair = [float(space.cdist(x).mean()) for x in (before, after)]
            ph = [analysis.persistence(x, manifold=space, maxdim=1) for x in (before, after)]
            h1 = [float(r.lifetimes(1).max()) for r in ph]
            bn = analysis.bottleneck_distance(ph[0], ph[1], dim=1)
            label = run_id if len(start) == 1 else f"{run_id} {name.split('_')[-1]}"
            print(f"{label:58s} {float(moved.median()):6.2f}/{float(moved.max()):<7.2f} "
                  f"{pair[0]:8.2f}/{pair[1]:<8.2f} {h1[0]:8.2f}/{h1[1]:<8.2f} {bn:10.3f}")


if __name__ == "__main__":
    main()
