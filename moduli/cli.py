"""The ``moduli`` command.

Subcommands register themselves in :data:`COMMANDS` (kept in
:mod:`moduli._commands`, so that a subcommand module never imports this one): a
name maps to ``(help, add_arguments, run)``; ``run(args)`` returns the process
exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import Optional

from ._commands import COMMANDS, SUBCOMMANDS, command

__all__ = ["main", "COMMANDS", "command"]


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=4096, help="points for the timed distance matrix")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for the timings (default 1: on a shared machine more threads made the "
                        "small products slower)")


@command("demo")(_demo_args)
def _demo(args: argparse.Namespace) -> int:
    import torch

    from . import manifolds as mf

    if args.n < 2:
        raise SystemExit("moduli demo: --n must be at least 2")
    if args.threads < 1:
        raise SystemExit("moduli demo: --threads must be at least 1")
    torch.set_num_threads(args.threads)
    spaces = {name: mf.catalog.build(name) for name in mf.catalog.NAMES}
    print(f"moduli demo: {args.n} uniform points per space, float32, CPU, seed {args.seed}, {args.threads} thread(s)")
    print(f"{'space':8s} {'diameter':>9s} {'mean d':>8s} {'max d':>8s} {'cdist ms':>9s} {'ns/pair':>8s}")
    for name, M in spaces.items():
        g = torch.Generator().manual_seed(args.seed)
        x = M.random_uniform(args.n, generator=g, dtype=torch.float32)
        M.cdist(x[:64])  # warm-up
        t0 = time.perf_counter()
        D = M.cdist(x)
        dt = time.perf_counter() - t0
        off = D[~torch.eye(args.n, dtype=torch.bool)]
        print(
            f"{name:8s} {M.diameter:9.3f} {float(off.mean()):8.3f} {float(off.max()):8.3f} "
            f"{1e3 * dt:9.1f} {1e9 * dt / args.n**2:8.2f}"
        )
    return 0


def _command_of(argv: list[str]) -> Optional[str]:
    """The subcommand named in ``argv`` (its first word that is not an option or the value of ``--import``)."""
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--import":
            skip = True
        elif not a.startswith("-"):
            return a
    return None


def build_parser(argv: Optional[list[str]] = None) -> argparse.ArgumentParser:
    """The ``moduli`` parser.

    Given ``argv``, only the module of the subcommand it names is imported
    (:data:`~moduli._commands.SUBCOMMANDS`); the others are listed by name and
    help, so ``moduli --help`` imports none (and not torch). Without ``argv``,
    every subcommand is built in full.
    """
    from . import __version__

    wanted = _command_of(argv) if argv is not None else None
    for name, (module, _) in SUBCOMMANDS.items():
        if argv is None or name == wanted:
            importlib.import_module(module)

    parser = argparse.ArgumentParser(
        prog="moduli", description="Geometry and topology as sparsity priors for neural networks.")
    parser.add_argument("--version", action="version", version=f"moduli {__version__}")
    parser.add_argument("--import", dest="imports", action="append", metavar="MODULE", default=[],
                        help="import MODULE first (repeatable), e.g. a module of yours that calls "
                             "moduli.experiments.register_task, so that its tasks are runnable here")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        if name in COMMANDS and (argv is None or name == wanted):
            COMMANDS[name][1](p)
    return parser


def _import_user_modules(argv: list[str]) -> None:
    """Import the modules named by ``--import MODULE`` / ``--import=MODULE`` before the parser is built
    (its task choices come from the registry they may add to); an import error ends with one line, exit 2."""
    import importlib

    names = []
    for i, a in enumerate(argv):
        if a == "--import" and i + 1 < len(argv):
            names.append(argv[i + 1])
        elif a.startswith("--import="):
            names.append(a.split("=", 1)[1])
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # a module beside the user, as `python -m` would find it
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any failure of the user's module: say which, and stop
            print(f"moduli: --import {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _import_user_modules(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return COMMANDS[args.command][2](args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    # run the package's copy of this module, where subcommands register
    from moduli.cli import main as _main

    sys.exit(_main())
