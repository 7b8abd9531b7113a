"""How much did neuron swaps lower the prior's cost of the network a run trained? The same weights, two embeddings.

For each sparse checkpoint of DIR whose run swapped neurons (``swap_every`` in
its config), the trained sparse weights are scored with the prior twice: with
the embedding the run ended with (swapped) and with the embedding it started
from (rebuilt as the runner builds it, :func:`moduli.experiments.train.initial_embeddings`).
Printed per run: both costs (``lam * penalty``), their ratio, and the mean
distance of the neurons joined by a kept recurrent weight over the mean of all
pairs under each embedding (1: the mask ignores the geometry).

Run: ``PYTHONPATH=. python benchmarks/swap_effect.py DIR``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from moduli import regularizers as rg
from moduli import targets
from moduli.experiments.plan import RunSpec
from moduli.experiments.regimes import Regime, build_prior
from moduli.experiments.train import initial_embeddings
from torus_phases import load_run  # the sibling script: a run's task and trained sparse model


def _kept_ratio(manifold, points, mask) -> float:
    d = manifold.cdist(points)
    off = ~torch.eye(d.shape[0], dtype=torch.bool)
    return float(d[mask & off].mean() / d[off].mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path)
    args = p.parse_args()
    recs = [json.loads(line) for line in (args.dir / "results.jsonl").read_text().splitlines() if line.strip()]
    print(f"{'run':50s} {'swaps':>6s} {'cost swapped':>12s} {'cost initial':>12s} {'ratio':>6s} "
          f"{'kept d/all (swapped)':>20s} {'(initial)':>9s}")
    for r in recs:
        if r["phase"] != "sparse" or not r["config"].get("swap_every"):
            continue
        task, model, swapped = load_run(args.dir, r)
        cfg = task.cfg
        spec = RunSpec(r["task"], r["preset"], Regime.from_dict(r["regime_spec"]), r["lam"], r["sparsity"], r["seed"])
        masks = targets.masks(model)
        initial = initial_embeddings(spec, cfg)
        prior = build_prior(spec.regime, cfg)
        costs = []
        for emb in (swapped, initial):
            points = {n: (po if torch.equal(po, pi) else (po, pi)) for n, (po, pi) in emb.items()}
            priors = rg.attach(model, prior, targets=list(emb), points=points)
            with torch.no_grad():
                costs.append(r["lam"] * float(priors.penalty()))
        name = "rnn.weight_hh_l0"  # the kept-connection distances of a recurrent matrix
        kept = ("" if name not in swapped else
                f"{_kept_ratio(prior.manifold, swapped[name][0], masks[name].bool()):20.3f} "
                f"{_kept_ratio(prior.manifold, initial[name][0], masks[name].bool()):9.3f}")
        print(f"{r['run_id']:50s} {r['swaps']:6d} {costs[0]:12.5f} {costs[1]:12.5f} {costs[0] / costs[1]:6.3f} {kept}")

if __name__ == "__main__":
    main()
