"""Geometry-ordered block pruning versus unstructured pruning on the navigation task.

Trains the sparse phase of the navigation task (a torus prior, gradual
magnitude pruning of ``rnn.weight_hh_l0`` to the target sparsity) once per arm,
driving the task classes directly (the runner is not involved; no lottery
phase), and prints for every arm the position error, the sparsity reached,
how much kept mass dense tiles capture under three neuron orders, and the
time of one recurrent step of the trained matrix in dense, CSR and BSR form.

Arms (``--arm``, repeatable):

* ``unstructured``: entries pruned by magnitude (the runner's pruning);
* ``block-curve``: whole ``B x B`` tiles pruned by their summed magnitude,
  tiles cut after ordering the hidden units along a Hilbert curve over the
  torus (their prior embedding) -- block-sparse by construction;
* ``block-coef``: the same tiles, ranked by the prior's coefficients alone
  (``c_max - c`` summed over a tile: the most local tiles are kept);
* ``block-identity``: tiles in the given neuron order (no geometry).

Usage::

    python benchmarks/block_pruning_navigation.py --preset cpu --sparsity 0.9 --block 16 --seed 0
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch

from moduli import pruning, sparse
from moduli import regularizers as rg
from moduli.experiments.registry import get_preset, make_task
from moduli.experiments.regimes import build_prior, parse_regime

W = "rnn.weight_hh_l0"
ARMS = ("unstructured", "block-curve", "block-coef", "block-identity")


def train(arm: str, args) -> dict:
    cfg = get_preset("navigation", args.preset)
    if args.steps:
        import dataclasses

        cfg = dataclasses.replace(cfg, steps=args.steps)
    task = make_task("navigation", cfg, args.seed)
    torch.manual_seed(17_000_000 + args.seed)
    model = task.build_model()
    prior = build_prior(parse_regime(args.regime), cfg)
    priors = rg.attach(model, prior, targets=task.recurrent, generator=torch.Generator().manual_seed(19_000_000 + args.seed))
    term = priors.terms[W]
    points, period = term.points_out.detach(), float(term.manifold.period)
    order = sparse.curve_order(points, period)
    kw = {}
    if arm != "unstructured":
        kw["block"] = args.block
        kw["order"] = torch.arange(cfg.n_hidden) if arm == "block-identity" else order
        if arm == "block-coef":
            c = term.coefficients().detach()
            kw["scores"] = lambda name, w: (c.max() - c).to(w.dtype)
    pruner = pruning.GradualMagnitudePruning(model, args.sparsity, cfg.epochs, targets=[W], **kw)
    opt = task.optimizer([p for p in model.parameters() if p.requires_grad])
    gen = torch.Generator().manual_seed(11_000_000 + args.seed)
    starts = {round(k * cfg.steps / cfg.epochs): k for k in range(cfg.epochs)}
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        if step in starts:
            task.begin_epoch(model, opt, starts[step])
            pruner.step()
        loss = task.loss(model, task.sample(gen))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        priors.add_penalty_grad_(cfg.lam)
        opt.step()
    train_s = time.perf_counter() - t0
    error = task.evaluate(model)
    pruning.finalize(model)
    w = model.rnn.weight_hh_l0.detach()
    out = {"arm": arm, "error_cm": round(error, 3), "sparsity": round(pruning.sparsity(w), 4),
           "final_loss": round(float(loss), 5), "train_s": round(train_s, 1)}
    rcm = sparse.rcm_order(w)
    for b in (16, 32, 64):
        for name, o in (("identity", None), ("curve", order), ("rcm", rcm)):
            st = sparse.block_stats(w, b, o)
            out[f"capture{b}_{name}"] = round(st["capture"], 3)
            out[f"fill{b}_{name}"] = round(st["fill"], 3)
    out.update(step_times(w, order if arm != "block-identity" else None, args.block, args.batch))
    return out


def step_times(w, order, block, batch, reps=200) -> dict:
    """Milliseconds per recurrent product ``W h`` (``h``: ``[n, batch]``) per layout; BSR after ``order``."""
    if order is not None:
        w = w[order][:, order]
    h = torch.randn(w.shape[0], batch)
    res = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, mat in (("dense", w.contiguous()), ("csr", w.to_sparse_csr()),
                          ("bsr", w.to_sparse_bsr((block, block)))):
            for _ in range(10):
                mat @ h
            t0 = time.perf_counter()
            for _ in range(reps):
                mat @ h
            res[f"{name}_ms"] = round(1e3 * (time.perf_counter() - t0) / reps, 4)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--regime", default="torus")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--block", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=0, help="override the preset's steps (0: keep)")
    p.add_argument("--batch", type=int, default=100, help="batch of the timed recurrent product")
    p.add_argument("--arm", action="append", choices=ARMS)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for arm in args.arm or ARMS:
        print(json.dumps(train(arm, args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
