"""Do surviving recurrent connections follow the embedding? Mean distance of kept pairs.

For each ``*-sparse.pt`` checkpoint of a moduli regime in a result directory,
prints the mean manifold distance between the embedded neurons joined by a kept
(non-zero) recurrent weight, the mean over all pairs, and their ratio (1: the
mask ignores the geometry; below 1: kept connections are local).

Run: ``PYTHONPATH=. python benchmarks/kept_connection_distance.py runs/nav-cpu``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from moduli.manifolds.catalog import build as build_manifold


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path)
    args = p.parse_args()
    specs = {}
    for line in (args.dir / "results.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            specs[r["run_id"]] = r["regime_spec"]
    print(f"{'run':55s} {'kept':>6s} {'d kept':>7s} {'d all':>7s} {'ratio':>6s}")
    for ckpt in sorted((args.dir / "checkpoints").glob("*-sparse.pt")):
        run_id = ckpt.name[: -len("-sparse.pt")]
        spec = specs.get(run_id)
        if spec is None or spec["kind"] not in ("moduli", "shuffled"):
            continue
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        emb = state.get("embeddings", {}).get("rnn.weight_hh_l0")
        if emb is None:
            continue
        M = build_manifold(spec["manifold"])
        D = M.cdist(emb[0], emb[1])
        mask = state["masks"]["rnn.weight_hh_l0"].bool()
        off = ~torch.eye(D.shape[0], dtype=torch.bool)
        d_kept = float(D[mask & off].mean())
        d_all = float(D[off].mean())
        print(f"{run_id:55s} {int(mask.sum()):6d} {d_kept:7.3f} {d_all:7.3f} {d_kept / d_all:6.3f}")


if __name__ == "__main__":
    main()
