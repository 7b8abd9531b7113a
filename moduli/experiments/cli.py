"""The ``moduli run``, ``moduli table`` and ``moduli plot`` subcommands.

Importing this module registers them with :mod:`moduli.cli`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch

from .._commands import command
from .devices import parse_device
from .plot import plot_directory
from .regimes import INHIBITOR_NAMES, MANIFOLD_NAMES, parse_inhibitor_args, parse_regime
from .registry import add_config_arguments, config_from_args, get_preset, preset_names, task_names
from .results import RECORD_FIELDS, RESULTS_FILE, read_results
from .runner import run_sweep
from .train import check_options
from .table import breakdown_table, inventory_table, markdown_table, params_table, write_breakdown_csv, write_csv

__all__ = ["parse_sparsity", "add_regime_options", "regimes_from_args", "add_sweep_options", "execution_options",
           "resolve_config", "print_config", "dry_run",
           "error_message", "report", "SweepOutput"]


def error_message(exc: BaseException) -> str:
    """One line for an error: an OS error as ``PATH: reason`` (its path first), anything else as its message."""
    if isinstance(exc, OSError) and exc.strerror:
        names = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
        return f"{' -> '.join(names)}: {exc.strerror}" if names else exc.strerror
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def report(prog: str, exc: BaseException, code: int = 1) -> int:
    """Print ``prog: message`` on stderr (if stderr is still open) and return ``code``."""
    try:
        print(f"{prog}: {error_message(exc)}", file=sys.stderr)
    except (BrokenPipeError, ValueError):  # stderr closed too: the exit code still tells
        _silence("stderr")
    return code


def interrupted(prog: str, out: Path) -> int:
    """Report a Ctrl-C of a sweep writing to ``out`` (its finished phases are kept) and return 130."""
    return report(prog, KeyboardInterrupt(
        f"interrupted; the phases finished are in {out / RESULTS_FILE}: the same command resumes"), 130)


def _silence(name: str) -> None:
    """Point ``sys.stdout`` or ``sys.stderr`` at the null device (its reader went away)."""
    stream = getattr(sys, name)
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test's capture)
        setattr(sys, name, open(os.devnull, "w"))
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)  # the stream's buffered bytes then go there too, without an error at exit
    os.close(null)


class SweepOutput:
    """The ``log`` of a sweep started from the command line: messages on stdout that never stop training.

    If stdout is closed (``moduli run ... | head -1``), the rest of the output
    goes to the null device, a note goes to stderr, and the sweep trains on to
    the end: what a sweep records never depends on who reads its messages.
    """

    def __init__(self, prog: str, out: Path, progress: bool):
        self.prog, self.out, self.progress, self.closed = prog, Path(out), progress, False

    def __call__(self, message: str) -> None:
        self._write(message, tqdm_write=self.progress)  # keep the messages off the progress bars' lines

    def print(self, text: str) -> None:
        """``print(text)`` on stdout, unless it was closed (after the sweep, when no bar is left)."""
        self._write(text, tqdm_write=False)

    def _write(self, text: str, *, tqdm_write: bool) -> None:
        if self.closed:
            return
        try:
            if tqdm_write:
                from tqdm.auto import tqdm

                tqdm.write(text)
            else:
                print(text)
            sys.stdout.flush()  # a closed pipe shows now, not at exit
        except BrokenPipeError:
            self.closed = True
            _silence("stdout")
            try:
                print(f"{self.prog}: stdout was closed; training on, the results go to {self.out / RESULTS_FILE}",
                      file=sys.stderr)
            except (BrokenPipeError, ValueError):
                _silence("stderr")


def parse_sparsity(text: str) -> float:
    """``"0.9"`` or ``"90%"`` -> 0.9; anything outside ``[0, 1)`` is an error."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"sparsity must be a fraction like 0.9 or a percentage like 90%, got {text!r}") from None
    if not (0 <= value < 1):
        raise argparse.ArgumentTypeError(
            f"sparsity must be in [0, 1) as a fraction (0.9) or [0%, 100%) as a percentage (90%), got {text!r}"
        )
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative finite number, got {text!r}")
    return value


def _above_one(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 1:
        raise argparse.ArgumentTypeError(f"expected a finite number above 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (0 < value < math.inf):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _device(text: str) -> str:
    try:
        return parse_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_regime_options(p: argparse.ArgumentParser, *, default: str) -> None:
    """``--regime`` (repeatable), ``--inhibitor`` and ``--inhibitor-arg``: shared by ``run`` and ``sweep``."""
    p.add_argument("--regime", action="append", metavar="R",
                   help=f"none, l1, shuffled[:MANIFOLD], or a manifold ({', '.join(MANIFOLD_NAMES)}) with options "
                        f":trained/:fixed and an inhibitor ({', '.join(':' + n for n in INHIBITOR_NAMES)}), "
                        f"optionally with arguments, e.g. torus:ricker(sigma=1.5); repeatable (default: {default})")
    p.add_argument("--inhibitor", choices=INHIBITOR_NAMES, default="dog",
                   help="inhibitor of manifold and shuffled regimes that name none (default: dog)")
    p.add_argument("--inhibitor-arg", action="append", metavar="NAME=VALUE", default=None,
                   help="an argument of the regimes' inhibitor, e.g. sigma1=0.7 (dog: c, sigma1, sigma2; "
                        "ricker: sigma, c; diffusion: c, power; sinusoid: c, mu; diagonal: value, eps); "
                        "repeatable; arguments written in a regime, torus:dog(sigma1=0.7), take precedence")


def regimes_from_args(args: argparse.Namespace, default) -> list:
    """The regimes of ``--regime`` (or ``default``), ``--inhibitor``, ``--inhibitor-arg`` and ``--trained``."""
    inhibitor_args = parse_inhibitor_args(args.inhibitor_arg)
    return [parse_regime(r, inhibitor=args.inhibitor, trained=getattr(args, "trained", False),
                         inhibitor_args=inhibitor_args) for r in (args.regime or default)]


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=task_names(), help="the task to train")
    p.add_argument("--preset", choices=preset_names(), default="cpu",
                   help="hyperparameter preset (default: cpu; navigation also has gpu, authors and authors-paper)")
    add_regime_options(p, default="none")
    p.add_argument("--sparsity", action="append", type=parse_sparsity, metavar="S",
                   help="target sparsity as a fraction (0.9) or percentage (90%%); repeatable (default: 0)")
    p.add_argument("--lam", action="append", type=_nonneg_float, metavar="LAMBDA",
                   help="regularizing factor; repeatable to sweep (default: the preset's)")
    p.add_argument("--trained", action="store_true", help="trained embeddings for manifold regimes that do not say")
    add_sweep_options(p, default_out="runs/TASK-PRESET")
    add_config_arguments(p, exclude=("lam",))


def add_sweep_options(p: argparse.ArgumentParser, *, default_out: str) -> None:
    """Seeds, output directory, threads and progress (and the config file, printing, dry run): shared by
    ``run`` and ``sweep``."""
    p.add_argument("--config", type=Path, default=None, metavar="FILE.json",
                   help="hyperparameters from a JSON object of config fields (as --print-config writes, or the "
                        "'config' of a record), applied over the preset; options given on the command line win")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration as JSON (usable with --config) and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="list the planned runs and which of their phases are already recorded in DIR, and exit")
    p.add_argument("--seeds", type=_positive_int, default=1, help="number of seeds (default 1)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--out", type=Path, default=None, help=f"result directory (default: {default_out})")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch.set_num_threads, per worker with --workers/--ray (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="runs trained at once in local worker processes (default 1)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="train the runs as Ray tasks: on this machine, or on the cluster at ADDRESS "
                        "(e.g. auto); needs pip install 'moduli[ray]'")
    p.add_argument("--device", type=_device, default="cpu",
                   help="where to train: cpu (default), cuda, cuda:N, or auto (cuda when present); with --workers N "
                        "and cuda the workers take the GPUs round-robin")
    p.add_argument("--gpus-per-run", type=_positive_float, default=1.0, metavar="G",
                   help="with --ray and a CUDA device: GPUs each Ray task asks for, e.g. 0.5 for two runs per GPU "
                        "(default 1)")


def resolve_config(task: str, preset: str, args: argparse.Namespace, *, exclude: tuple = ()):
    """The preset, then ``--config FILE`` (fields not given as options), then the options.

    Raises
    ------
    ValueError
        If the file cannot be read, is not a JSON object, or names fields the task does not have.
    """
    import dataclasses
    import json

    if getattr(args, "config", None) is None:
        return config_from_args(task, preset, args, exclude=exclude)
    cfg = get_preset(task, preset)
    try:
        data = json.loads(args.config.read_text())
    except OSError as exc:
        raise ValueError(f"--config {args.config}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config {args.config}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict) and "run_id" in data:
        data = data["config"]  # a record: its config
    if not isinstance(data, dict):
        raise ValueError(f"--config {args.config}: expected a JSON object of config fields, got "
                         f"{type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"--config {args.config}: the {task} config has no fields {unknown}")
    # options win; the file's lam is the default lambda (repeated --lam options are the sweep's values)
    given = {k: v for k, v in data.items() if k in exclude or getattr(args, k, None) is None}
    try:
        cfg = dataclasses.replace(cfg, **given)
    except TypeError as exc:
        raise ValueError(f"--config {args.config}: {exc}") from None
    return config_from_args(task, preset, args, exclude=exclude, base=cfg)


def print_config(cfg) -> None:
    """Every field of ``cfg`` (added ones too) as JSON on stdout."""
    import dataclasses
    import json

    print(json.dumps(dataclasses.asdict(cfg), indent=1, sort_keys=True))


def dry_run(task: str, preset: str, regimes, lams, sparsities, seeds, out: Path, cfg, prog: str = "moduli run") -> int:
    """Print the planned runs of a sweep and the phases ``out`` already holds; train nothing."""
    from .plan import plan_runs

    runs = plan_runs(task, preset, regimes, [cfg.lam] if lams is None else lams, sparsities, seeds)
    try:
        done = {(r["run_id"], r["phase"]) for r in read_results(out)}
    except (ValueError, OSError) as exc:
        return report(prog, exc)
    todo = 0
    for spec in runs:
        phases = [f"{p} ({'recorded' if (spec.run_id, p) in done else 'to train'})" for p in spec.phases()]
        todo += sum((spec.run_id, p) not in done for p in spec.phases())
        print(f"{spec.run_id}: {', '.join(phases)}")
    print(f"{len(runs)} runs, {todo} phases to train, in {out} (dry run: nothing trained)")
    return 0


def execution_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``run_sweep`` set by :func:`add_sweep_options` (threads set here)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return dict(progress=not args.no_progress, workers=args.workers, ray=args.ray, threads=args.threads,
                device=args.device, gpus_per_run=args.gpus_per_run)


@command("run")(_run_args)
def run(args: argparse.Namespace) -> int:
    try:
        cfg = resolve_config(args.task, args.preset, args, exclude=("lam",))
        regimes = regimes_from_args(args, ["none"])
        for regime in regimes:
            check_options(regime, cfg)
        if getattr(cfg, "sparsifier", "magnitude") == "prox" and any(lam <= 0 for lam in args.lam or [cfg.lam]):
            raise ValueError("sparsifier 'prox' raises the prior's factor from --lam by factors: --lam must be "
                             "positive")
    except (TypeError, ValueError) as exc:
        print(f"moduli run: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print_config(cfg)
        return 0
    out = args.out or Path("runs") / f"{args.task}-{args.preset}"
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    if args.dry_run:
        return dry_run(args.task, args.preset, regimes, args.lam, args.sparsity or [0.0], seeds, out, cfg)
    options = execution_options(args)
    output = SweepOutput("moduli run", out, options["progress"])
    try:
        run_sweep(args.task, cfg, regimes, args.sparsity or [0.0], seeds, out, preset=args.preset,
                  lams=args.lam, log=output, **options)
        records = [r for r in read_results(out, require=RECORD_FIELDS) if r["task"] == args.task]
        csv_path = write_csv(records, out / "table.csv")
    except (ValueError, RuntimeError, OSError) as exc:  # a BrokenPipeError of stderr's progress bars too
        return report("moduli run", exc)
    except KeyboardInterrupt:
        return interrupted("moduli run", out)
    output.print(markdown_table(records))
    output.print(f"results: {out / 'results.jsonl'}; table: {csv_path}")
    return 0


def _table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="a result directory (holding results.jsonl), or a results file")
    p.add_argument("--csv", type=Path, default=None,
                   help="CSV path (default: DIR/table.csv, or NAME-table.csv beside a results file NAME.jsonl)")
    p.add_argument("--task", choices=task_names(), default=None, help="only this task")
    p.add_argument("--lam", action="append", type=_nonneg_float, metavar="LAMBDA",
                   help="only these lambdas (repeatable; regime none is always shown)")
    p.add_argument("--inventory", action="store_true",
                   help="also print exactly what was run: seeds, threads and training time per phase")
    p.add_argument("--params", action="store_true",
                   help="also print the nonzero parameters of each model (of its total) and of each pruned weight")
    p.add_argument("--breakdown", action="store_true",
                   help="also print the breakdown sparsity per regime and phase (the smallest sparsity whose error "
                        "exceeds FACTOR x the dense error of regime none at sparsity 0) and write DIR/breakdown.csv")
    p.add_argument("--factor", type=_above_one, default=2.0,
                   help="breakdown threshold as a multiple of the dense error (default 2)")


@command("table")(_table_args)
def table(args: argparse.Namespace) -> int:
    try:
        records = read_results(args.dir, require=RECORD_FIELDS)
    except (ValueError, OSError) as exc:
        return report("moduli table", exc)
    if args.task:
        records = [r for r in records if r["task"] == args.task]
    if args.lam:
        records = [r for r in records if r["regime"] == "none" or any(math.isclose(r["lam"], x) for x in args.lam)]
    if not records:
        print(f"moduli table: no results in {args.dir}", file=sys.stderr)
        return 1
    default = args.dir / "table.csv" if args.dir.is_dir() else args.dir.with_name(args.dir.stem + "-table.csv")
    try:  # the CSV first, so that output piped into head (a closed stdout) does not skip it
        path = write_csv(records, args.csv or default)
        if args.breakdown:
            bpath = write_breakdown_csv(records, path.with_name(path.name.replace("table.csv", "breakdown.csv")
                                                                if path.name.endswith("table.csv")
                                                                else path.stem + "-breakdown.csv"),
                                        factor=args.factor)
            btable = breakdown_table(records, factor=args.factor)
    except (OSError, ValueError) as exc:
        return report("moduli table", exc)
    print(markdown_table(records))
    if args.inventory:
        print(inventory_table(records))
    if args.params:
        print(params_table(records))
    if args.breakdown:
        print(btable)
        print(f"breakdown csv: {bpath}")
    print(f"csv: {path}")
    return 0


def _plot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="a result directory (holding results.jsonl)")
    p.add_argument("--run", default=None, help="run id whose trained model to draw (default: the first moduli run)")
    p.add_argument("--lam", action="append", type=_nonneg_float, metavar="LAMBDA",
                   help="only these lambdas (repeatable; regime none is always shown)")
    p.add_argument("--factor", type=_above_one, default=2.0,
                   help="breakdown threshold of the TASK-PRESET_breakdown.png figures, a multiple of the dense error "
                        "(default 2)")
    p.add_argument("--curves", action="store_true",
                   help="also draw the learning curves (DIR/curves) per task and sparsity: TASK_curves_sS.png")


@command("plot")(_plot_args)
def plot(args: argparse.Namespace) -> int:
    try:
        paths = plot_directory(args.dir, run_id=args.run, lams=args.lam, breakdown_factor=args.factor,
                               curves=args.curves)
    except (ValueError, OSError) as exc:  # CheckpointError and ResultsFileError are ValueErrors
        return report("moduli plot", exc)
    for p in paths:
        print(p)
    return 0
