"""Run the tutorials cell by cell and write their rendered Markdown.

Usage, from the repository root::

    PYTHONPATH=$PWD python docs/tutorials/render.py            # default sizes, writes docs/tutorials/*.md, img/
    PYTHONPATH=$PWD python docs/tutorials/render.py --quick --dest /tmp/rendered   # smoke run elsewhere

Each tutorial is a jupytext "percent" script: ``# %% [markdown]`` cells become prose,
``# %%`` cells are executed in order in one namespace (as a notebook kernel would) and
shown in fenced blocks with what they printed below them. PNG files a cell writes
are copied to ``DEST/img/<tutorial>-<file>.png`` and linked under that cell. The
tutorials run in one temporary directory, in the order below, so the second reads
the checkpoint the first writes. A cell that raises stops the run; nothing is
written for that tutorial.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
TUTORIALS = ["torus_prior_in_five_minutes", "analyse_a_trained_rnn"]
MAX_PNG_BYTES = 200_000


def parse_cells(text: str) -> list[tuple[str, str]]:
    """Split a percent-format script into ``(kind, source)`` cells, ``kind`` in {"markdown", "code"}.

    The jupytext header (a leading ``# ---`` ... ``# ---`` block) is dropped; text
    before the first cell marker is a code cell if it is not blank. Markdown cells
    lose their leading ``# `` (or ``#``).
    """
    lines = text.splitlines()
    if lines and lines[0].strip() == "# ---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "# ---"), None)
        if end is None:
            raise ValueError("the jupytext header starting at line 1 is not closed by '# ---'")
        lines = lines[end + 1:]
    cells: list[tuple[str, list[str]]] = [("code", [])]
    for line in lines:
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        else:
            cells[-1][1].append(line)
    out = []
    for kind, body in cells:
        if kind == "markdown":
            body = [ln[2:] if ln.startswith("# ") else ln[1:] if ln.startswith("#") else ln for ln in body]
        source = "\n".join(body).strip("\n")
        if source.strip():
            out.append((kind, source))
    return out


def _pngs(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")}


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def render(name: str, workdir: Path, dest: Path, command: str) -> float:
    """Execute tutorial ``name`` in ``workdir`` and write ``dest/<name>.md``; return its wall time."""
    script = HERE / f"{name}.py"
    cells = parse_cells(script.read_text())
    img = dest / "img"
    img.mkdir(parents=True, exist_ok=True)
    namespace = {"__name__": "__main__", "__file__": str(script)}
    parts: list[str] = []
    load_before = _uptime()
    t0 = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for i, (kind, source) in enumerate(cells):
            if kind == "markdown":
                parts.append(source)
                continue
            seen = _pngs(workdir)
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                try:
                    exec(compile(source, f"{script.name} (cell {i})", "exec"), namespace)
                except Exception:
                    traceback.print_exc()
                    raise_after = True
                else:
                    raise_after = False
            if raise_after:
                sys.stderr.write(buf.getvalue())
                raise RuntimeError(f"{script.name}: cell {i} raised; nothing written for {name}")
            parts.append(f"```python\n{source}\n```")
            printed = buf.getvalue().rstrip()
            if printed:
                parts.append(f"```text\n{printed}\n```")
            for png in sorted(set(_pngs(workdir).items()) - set(seen.items())):
                target = img / f"{name}-{png[0]}"
                shutil.copyfile(workdir / png[0], target)
                size = target.stat().st_size
                if size > MAX_PNG_BYTES:
                    print(f"warning: {target} is {size} bytes (> {MAX_PNG_BYTES})", file=sys.stderr)
                parts.append(f"![{png[0]}](img/{target.name})")
    finally:
        os.chdir(cwd)
    wall = time.perf_counter() - t0
    import torch  # the tutorials imported it already; only for the version line

    header = (
        f"<!-- Rendered by docs/tutorials/render.py from {script.name}; edit the script, not this file. -->\n\n"
        f"*Rendered {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with `{command}` "
        f"(wall time of this tutorial {wall:.0f} s; Python {platform.python_version()}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, one torch thread). `uptime` before: `{load_before}`; after: `{_uptime()}`. "
        f"The source is [{script.name}]({script.name}).*"
    )
    (dest / f"{name}.md").write_text(header + "\n\n" + "\n\n".join(parts) + "\n")
    return wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="set MODULI_TUTORIAL_QUICK=1 (smoke sizes)")
    parser.add_argument("--dest", type=Path, default=HERE, help="where the .md files and img/ go (default: docs/tutorials)")
    parser.add_argument("names", nargs="*", default=TUTORIALS,
                        help="tutorials to render, in order (default: both; the second needs the first's checkpoint)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in TUTORIALS]
    if unknown:
        parser.error(f"unknown tutorial(s) {unknown}; choose from {TUTORIALS}")
    command = "PYTHONPATH=$PWD python docs/tutorials/render.py" + (" --quick" if args.quick else "")
    if args.quick:
        os.environ["MODULI_TUTORIAL_QUICK"] = "1"
    else:
        os.environ.pop("MODULI_TUTORIAL_QUICK", None)
    args.dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="moduli-tutorials-") as tmp:
        os.environ["MODULI_TUTORIAL_OUT"] = tmp
        for name in args.names:
            wall = render(name, Path(tmp), args.dest.resolve(), command)
            print(f"{name}: {wall:.0f} s -> {args.dest / (name + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
