"""Why the LM ``cpu`` preset starts SGD at lr 5 rather than the paper's 20.

Trains the ``cpu``-preset language model (no prior, no pruning) for
``--steps`` batches at each starting learning rate, with the preset's schedule
(validation every 200 batches, lr x 0.25 when it does not improve) and prints
the validation perplexity along the way and the final test perplexity.

    PYTHONPATH=. python benchmarks/lm_lr_probe.py --lr 20 5 1 --steps 1201

Needs the default corpus (``apt-get install sword-text-web``) or ``--data DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import torch

from moduli.experiments import lm
from moduli.experiments.registry import make_task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lr", type=float, nargs="+", default=[20.0, 5.0, 1.0])
    p.add_argument("--steps", type=int, default=1201)
    p.add_argument("--width", type=int, default=64, help="embedding and hidden size")
    p.add_argument("--data", default="")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"{'lr0':>5s} {'batch':>6s} {'train nats':>10s} {'valid ppl':>10s} {'lr':>8s} {'s':>6s}")
    for lr0 in args.lr:
        cfg = dataclasses.replace(lm.LM_PRESETS["cpu"], emb_dim=args.width, n_hidden=args.width, lr=lr0, data=args.data)
        torch.manual_seed(0)
        task = make_task("lm", cfg, 0)
        model = task.build_model()
        opt = task.optimizer(model.parameters())
        task.begin_epoch(model, opt, 0)
        t0, losses = time.perf_counter(), []
        for i in range(args.steps):
            if i and i % 200 == 0:
                task.begin_epoch(model, opt, i // 200)
                print(f"{lr0:5g} {i:6d} {sum(losses[-100:]) / 100:10.3f} {math.exp(task.valid_history[-1]):10.1f} "
                      f"{opt.param_groups[0]['lr']:8g} {time.perf_counter() - t0:6.0f}", flush=True)
            loss = task.loss(model, task.sample())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            losses.append(float(loss.detach()))
        print(f"lr0 {lr0:g}: test perplexity {task.evaluate(model):.1f}")


if __name__ == "__main__":
    main()
