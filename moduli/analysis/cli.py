"""``moduli topology`` and ``moduli graph``: the analysis from the command line.

Importing this module registers both subcommands with :mod:`moduli.cli`.
Inputs are ``.pt`` (a tensor saved with ``torch.save``), ``.npy`` or ``.csv``
files; outputs go to a new directory (an existing one is refused unless
``--force``): a JSON summary plus PNG pictures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Optional

import numpy as np
import torch

from .. import _validate
from .._commands import command
from ..manifolds import catalog
from ._checks import as_numpy_2d, check_int, check_nonnegative, check_prime

__all__ = ["load_array", "make_manifold"]

# "euclidean" means plain coordinates (no manifold); the rest come from the catalog
_SPACES = ("euclidean", *catalog.NAMES)


def load_array(path: str) -> torch.Tensor:
    """Load a 2-D float tensor from ``.pt``, ``.npy`` or ``.csv``."""
    if not os.path.exists(path):
        raise SystemExit(f"no such file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".pt", ".pth"):
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, torch.Tensor):
            raise SystemExit(f"{path} must contain one tensor; got {type(obj).__name__}")
        t = obj
    elif ext == ".npy":
        t = torch.as_tensor(np.load(path, allow_pickle=False))
    elif ext == ".csv":
        t = torch.as_tensor(np.loadtxt(path, delimiter=",", ndmin=2))
    else:
        raise SystemExit(f"{path}: expected a .pt, .npy or .csv file")
    if t.ndim != 2:
        raise SystemExit(f"{path} must hold a 2-D array; got shape {tuple(t.shape)}")
    return t.to(torch.float64)


def make_manifold(name: str, scale: Optional[float], coord_dim: int):
    """The built-in space ``name`` at ``scale`` (radius, period or side); None for Euclidean.

    Spaces come from :func:`moduli.manifolds.catalog.at_scale`. ``scale=None``
    takes the space's natural size, the one the priors use (torus period 10,
    sphere radius 5, ...: ``catalog.ENTRIES[name].scale``), and says so on stderr.
    """
    if name == "euclidean":
        return None
    if name not in catalog.ENTRIES:
        raise SystemExit(f"--manifold must be one of {', '.join(_SPACES)}; got {name!r}")
    if scale is None:
        scale = catalog.ENTRIES[name].scale
        print(f"--scale not given: {name} at its natural scale {scale:g} "
              f"({catalog.ENTRIES[name].description.replace('SCALE', f'{scale:g}')})", file=sys.stderr)
    try:
        return catalog.at_scale(name, scale, coord_dim)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"--manifold {name} --scale {scale}: {exc}")


def _check_points(command: str, M, x: torch.Tensor, what: str) -> None:
    """Exit naming the file (and so the argument) whose entries are not finite or not on ``M``."""
    try:
        if M is None:
            as_numpy_2d(x, what)
        else:
            M.check_points(x, what, ndim=2)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"moduli {command}: {exc}") from None


def _check_out(path: str, force: bool) -> str:
    """Refuse a non-empty existing directory (unless ``force``); create it later, after success."""
    if os.path.exists(path) and (not os.path.isdir(path) or (os.listdir(path) and not force)):
        raise SystemExit(f"{path} exists and is not an empty directory; choose a new --out or pass --force")
    return path


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (np.floating, np.integer)):
        return _jsonable(v.item())
    return v


def _check_flags(command: str, checks) -> None:
    """Run ``check(value, flag)`` for each ``(check, value, flag)``; exit naming the flag.

    The library functions validate the same values again, but their messages
    name Python arguments (``period``, ``n_landmarks``); on the command line
    the error must name the flag that was typed.
    """
    for check, value, flag in checks:
        try:
            check(value, flag)
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"moduli {command}: {exc}") from None


def _fraction_open(value, name):
    """A number in the open interval (0, 1)."""
    value = _validate.positive(value, name)
    if value >= 1:
        raise ValueError(f"{name} must be in (0, 1); got {value}")
    return value


def _space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifold", default="euclidean", choices=_SPACES,
                   help="metric of the points (default: euclidean): "
                        + catalog.describe().replace("%", "%%"))
    p.add_argument("--scale", type=float, default=None,
                   help="SCALE of --manifold: circle/sphere radius, torus period, Klein-bottle side (default: the "
                        "space's natural scale, the one the priors use: " + ", ".join(
                            f"{n} {e.scale:g}" for n, e in catalog.ENTRIES.items()) + ")")
    p.add_argument("--out", required=True, help="new output directory")
    p.add_argument("--force", action="store_true", help="write into an existing non-empty directory")


def _topology_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("points", help="points (n, coord_dim) as .pt, .npy or .csv")
    _space_args(p)
    p.add_argument("--maxdim", type=int, default=1)
    p.add_argument("--coeff", type=int, default=2, help="prime p: coefficients in Z/p")
    p.add_argument("--landmarks", type=int, default=None, help="max-min subsample size")
    p.add_argument("--sparse", default="auto", help="'auto', 'none' or eps in (0, 1)")
    p.add_argument("--min-persistence", type=float, action="append", default=None,
                   help="Betti threshold; repeatable (default: 10%%, 25%% and 50%% of the longest finite bar)")


@command("topology")(_topology_args)
def _topology(args: argparse.Namespace) -> int:
    from . import persistence, plot_barcode, plot_diagram

    sparse = args.sparse
    if sparse != "auto":
        try:
            sparse = None if sparse.lower() == "none" else float(sparse)
        except ValueError:
            raise SystemExit(f"moduli topology: --sparse must be 'auto', 'none' or a number; got {sparse!r}")
    _check_flags("topology", [
        *([(_validate.positive, args.scale, "--scale")] if args.scale is not None else []),
        (lambda v, n: check_int(v, n, 0), args.maxdim, "--maxdim"),
        (check_prime, args.coeff, "--coeff"),
        *([(lambda v, n: check_int(v, n, 1), args.landmarks, "--landmarks")] if args.landmarks is not None else []),
        *([(_fraction_open, sparse, "--sparse")] if isinstance(sparse, float) else []),
        *[(check_nonnegative, m, "--min-persistence") for m in args.min_persistence or []],
    ])
    x = load_array(args.points)
    M = make_manifold(args.manifold, args.scale, x.shape[1])
    _check_points("topology", M, x, f"points ({args.points})")
    out = _check_out(args.out, args.force)
    try:
        r = persistence(x, manifold=M, maxdim=args.maxdim, coeff=args.coeff, n_landmarks=args.landmarks,
                        sparse=sparse)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"moduli topology: {exc}")
    finite = [life[np.isfinite(life)] for life in (r.lifetimes(k) for k in range(r.maxdim + 1))]
    longest = max((float(f.max()) for f in finite if f.size), default=0.0)
    thresholds = args.min_persistence or [0.1 * longest, 0.25 * longest, 0.5 * longest]
    summary = {
        "points": os.path.abspath(args.points), "n_points": r.n_points, "manifold": repr(M) if M else "Euclidean",
        "maxdim": r.maxdim, "coeff": r.coeff, "method": r.method, "error_bound": r.error_bound,
        "betti": [{"min_persistence": m, "betti": r.betti(m)} for m in thresholds],
        "diagrams": [[[_jsonable(float(b)), _jsonable(float(d))] for b, d in dg] for dg in r.diagrams],
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "persistence.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    plot_diagram(r, path=os.path.join(out, "diagram.png"))
    plot_barcode(r, path=os.path.join(out, "barcode.png"))
    print(r.method)
    for row in summary["betti"]:
        print(f"betti (bars longer than {row['min_persistence']:.4g}): {row['betti']}")
    print(f"wrote {out}/persistence.json, diagram.png, barcode.png")
    return 0


def _graph_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("weight", help="weight matrix (n_out, n_in) as .pt, .npy or .csv")
    p.add_argument("--points", default=None, help="neuron positions (n, coord_dim) for edge lengths")
    _space_args(p)
    p.add_argument("--threshold", type=float, default=0.0, help="keep |w| > threshold")
    p.add_argument("--directed", action="store_true")
    p.add_argument("--seed", type=int, default=0)


@command("graph")(_graph_args)
def _graph(args: argparse.Namespace) -> int:
    from . import connectivity, plot_degree_histogram, plot_edge_length_histogram

    _check_flags("graph", [
        *([(_validate.positive, args.scale, "--scale")] if args.scale is not None else []),
        (check_nonnegative, args.threshold, "--threshold"),
        (lambda v, n: check_int(v, n, 0), args.seed, "--seed"),
    ])
    W = load_array(args.weight)
    pts = load_array(args.points) if args.points else None
    _check_points("graph", None, W, f"weight ({args.weight})")
    M = make_manifold(args.manifold, args.scale, pts.shape[1]) if pts is not None else None
    if pts is not None:
        _check_points("graph", M, pts, f"--points ({args.points})")
    out = _check_out(args.out, args.force)
    try:
        s = connectivity(W, points=pts, manifold=M, threshold=args.threshold, directed=args.directed,
                         seed=args.seed)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"moduli graph: {exc}")
    summary = {k: _jsonable(v) for k, v in s.summary().items()}
    summary["notes"] = s.notes
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "graph.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    plot_degree_histogram(s, path=os.path.join(out, "degrees.png"))
    written = ["graph.json", "degrees.png"]
    if s.edge_lengths is not None:
        plot_edge_length_histogram(s, path=os.path.join(out, "edge_lengths.png"))
        written.append("edge_lengths.png")
    for key in ("n_nodes", "n_edges", "density", "clustering", "path_length", "small_world_sigma",
                "modularity", "edge_length_ratio"):
        v = summary[key]
        print(f"{key:18s} {v:.4g}" if isinstance(v, float) else f"{key:18s} {v}")
    print(f"wrote {out}/" + ", ".join(written))
    return 0
