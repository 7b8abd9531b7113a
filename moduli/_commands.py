"""The table of ``moduli`` subcommands.

A subcommand module registers itself with :func:`command`; :mod:`moduli.cli`
imports those modules and builds the parser from :data:`COMMANDS`. Kept apart
from :mod:`moduli.cli` so that a subcommand module never imports the module
that imports it.
"""

from __future__ import annotations

import argparse
from typing import Callable

__all__ = ["COMMANDS", "command"]

#: name -> (help, add_arguments(parser), run(args) -> exit code)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str):
    """Register ``add_arguments`` / ``run`` under ``name``: ``@command(name, help)(add_arguments)`` on ``run``."""

    def deco(add_arguments):
        def register(run):
            COMMANDS[name] = (help, add_arguments, run)
            return run

        return register

    return deco
