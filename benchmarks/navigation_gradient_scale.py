"""Scale of the loss gradient on the recurrent matrix of a trained navigation model.

Loads a ``*-sparse.pt`` checkpoint written by ``moduli run navigation`` and
prints the mean and median ``|d loss / d W_hh|`` over the kept entries on one
fresh batch: the penalty adds ``lam * c`` per entry, so this says which lambda
can matter at all (used to choose the cpu preset's lambda, docs/experiments.md).

Run: ``PYTHONPATH=. python benchmarks/navigation_gradient_scale.py
runs/nav-cpu/checkpoints/navigation-cpu-none-lam0-s0.9-seed0-sparse.pt``
"""

from __future__ import annotations

import argparse

import torch

from moduli import targets
from moduli.experiments import make_task
from moduli.experiments.registry import config_from_dict
from moduli.experiments.results import migrate_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--seed", type=int, default=0, help="the run's seed (place cells)")
    args = p.parse_args()
    torch.set_num_threads(1)
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    cfg = config_from_dict("navigation", migrate_config(state["config"]))
    task = make_task("navigation", cfg, args.seed)
    model = task.build_model()
    targets.restore_masks(model, state["masks"])
    model.load_state_dict(state["model"])
    loss = task.loss(model, task.sample(torch.Generator().manual_seed(5)))
    loss.backward()
    grad = targets.stored_parameter(model.rnn, "weight_hh_l0").grad
    mask = targets.mask_of(model.rnn, "weight_hh_l0")
    mask = torch.ones_like(grad, dtype=torch.bool) if mask is None else mask.bool()
    g = grad[mask].abs()
    print(f"loss {float(loss.detach()):.4f}  kept entries {int(mask.sum())}  "
          f"|grad| mean {float(g.mean()):.2e}  median {float(g.median()):.2e}")


if __name__ == "__main__":
    main()
