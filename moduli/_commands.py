"""The table of ``moduli`` subcommands.

A subcommand module registers itself with :func:`command`; :mod:`moduli.cli`
imports those modules and builds the parser from :data:`COMMANDS`. Kept apart
from :mod:`moduli.cli` so that a subcommand module never imports the module
that imports it.
"""

from __future__ import annotations

import argparse
from typing import Callable

__all__ = ["COMMANDS", "SUBCOMMANDS", "command"]

#: name -> (module that registers it, one-line help): what ``moduli --help`` lists without importing
#: any of them (they import torch), and which module ``moduli NAME`` imports.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("moduli.cli",
             "sample every built-in space (the Appendix D spaces of moduli.manifolds.catalog), print distance "
             "statistics and cdist timings"),
    "topology": ("moduli.analysis.cli",
             "persistent homology of a point cloud: JSON diagrams, Betti numbers, PNGs"),
    "graph": ("moduli.analysis.cli",
             "connectivity-graph statistics of a (pruned) weight matrix: JSON and histograms"),
    "run": ("moduli.experiments.cli",
             "train a sweep (task x regime x sparsity x seed), resuming from DIR/results.jsonl"),
    "table": ("moduli.experiments.cli",
             "print the paper-style Markdown table of a result directory and write CSV"),
    "plot": ("moduli.experiments.cli",
             "write PNGs: metric versus sparsity per regime, the breakdown curves (with a dense baseline), and the "
             "weights of one trained model"),
    "sweep": ("moduli.experiments.sweep",
             "train regimes over a log grid of λ at one sparsity (Appendix G) and plot the metric versus λ"),
    "export": ("moduli.experiments.export",
             "write a run's finalized model, its prior's embeddings and a JSON summary of its sparsity"),
}

#: name -> (help, add_arguments(parser), run(args) -> exit code), filled by the modules' :func:`command`
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str = None):
    """Register ``add_arguments`` / ``run`` under ``name``: ``@command(name)(add_arguments)`` on ``run``.

    ``help`` defaults to the entry of :data:`SUBCOMMANDS`.
    """
    help = SUBCOMMANDS[name][1] if help is None else help

    def deco(add_arguments):
        def register(run):
            COMMANDS[name] = (help, add_arguments, run)
            return run

        return register

    return deco
