"""Dense navigation training curve: position error (cm) versus step, one thread.

Used to choose the ``cpu`` preset (docs/experiments.md). Prints step, seconds
and the error on 500 fixed fresh trajectories every ``--every`` steps.

Run: ``PYTHONPATH=. python benchmarks/navigation_convergence.py --n-hidden 256 --n-place 512
--batch-size 100 --seq-len 20 --lr 3e-3 --steps 2000``
"""

from __future__ import annotations

import argparse
import time

import torch

from moduli.experiments.navigation import NavigationRNN, PlaceCells, TrajectoryGenerator, navigation_loss, position_error_cm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-hidden", type=int, default=256)
    p.add_argument("--n-place", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seq-len", type=int, default=20)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    gen = TrajectoryGenerator(2.2, args.seq_len)
    pc = PlaceCells(args.n_place, generator=g)
    model = NavigationRNN(args.n_place, args.n_hidden)
    opt = torch.optim.Adam(model.parameters(), args.lr)
    ev = gen.sample(500, generator=torch.Generator().manual_seed(123))
    print(f"{'step':>6s} {'seconds':>8s} {'error_cm':>9s}")
    t0 = time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.every == 0:
            with torch.no_grad():
                err = position_error_cm(model(ev.velocity, pc(ev.init_position)), ev.position, pc.centres)
            print(f"{step:6d} {time.perf_counter() - t0:8.1f} {float(err):9.2f}", flush=True)
        if step == args.steps:
            break
        tr = gen.sample(args.batch_size, generator=g)
        loss = navigation_loss(model(tr.velocity, pc(tr.init_position)), pc(tr.position))
        opt.zero_grad()
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main()
