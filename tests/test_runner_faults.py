"""Faults of the experiment runner: unusable checkpoints, OS errors, malformed result files, orphaned workers."""

from __future__ import annotations

import dataclasses
import errno
import json

import pytest
import torch

from moduli.experiments import get_preset, parse_regime, read_results, run_sweep
from moduli.experiments import results as store

# ----------------------------------------------------------------------------- checkpoint provenance


def _sweep(out, seeds=(0,), log=None, **kw):
    cfg = kw.pop("cfg", None) or dataclasses.replace(get_preset("adding", "smoke"), lam=1e-2)
    messages = [] if log is None else log
    recs = run_sweep("adding", cfg, [parse_regime("torus")], [0.5], list(seeds), out, preset="smoke",
                     progress=False, log=messages.append, **kw)
    return recs, messages


def _drop_lottery(out):
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(ln for ln in lines if json.loads(ln)["phase"] != "lottery") + "\n")


def _ckpt(out, seed=0):
    (path,) = (out / "checkpoints").glob(f"*-seed{seed}-sparse.pt")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two seeds trained cleanly: their records, and a pristine copy of the directory."""
    out = tmp_path_factory.mktemp("clean")
    recs, _ = _sweep(out, seeds=(0, 1))
    return out, {(r["run_id"], r["phase"]): r for r in recs}


def _copy(trained, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(trained[0], out)
    _drop_lottery(out)
    return out


def _check_retrained(out, trained, messages, expected_message):
    """Both phases of seed 0 were trained again; the results file has one record per (run id, phase)."""
    assert any(expected_message in m and "training" in m and "again" in m for m in messages), messages
    records = read_results(out)
    keys = [(r["run_id"], r["phase"]) for r in records]
    assert sorted(keys) == sorted(trained[1]) and len(set(keys)) == len(keys)
    for r in records:
        assert r["value"] == trained[1][(r["run_id"], r["phase"])]["value"]
    raw = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    assert sum(r["phase"] == "sparse" and r["seed"] == 0 for r in raw) == 2  # the old line stays, superseded
    state = torch.load(_ckpt(out), weights_only=True)
    assert state["run_id"].endswith("seed0") and state["format_version"] == store.CHECKPOINT_VERSION


def test_checkpoints_carry_their_provenance(trained):
    out, recs = trained
    state = torch.load(_ckpt(out), weights_only=True)
    rid = state["run_id"]
    assert state["phase"] == "sparse" and state["format_version"] == store.CHECKPOINT_VERSION
    assert state["config"] == recs[(rid, "sparse")]["config"]
    assert state["config_sha256"] == store.config_hash(state["config"])


def test_a_corrupt_checkpoint_is_named_and_its_run_trained_again(trained, tmp_path):
    out = _copy(trained, tmp_path)
    path = _ckpt(out)
    path.write_bytes(path.read_bytes()[:200])  # cut short
    recs, messages = _sweep(out, seeds=(0, 1))
    assert sorted((r["seed"], r["phase"]) for r in recs) == [(0, "lottery"), (0, "sparse"), (1, "lottery")]
    _check_retrained(out, trained, messages, f"checkpoint {path} cannot be read")
    assert all("\n" not in m for m in messages)


def test_a_checkpoint_of_another_run_is_refused(trained, tmp_path):
    out = _copy(trained, tmp_path)
    _ckpt(out, 0).write_bytes(_ckpt(out, 1).read_bytes())  # seed 1's model at seed 0's path
    _, messages = _sweep(out, seeds=(0, 1))
    rid1 = _ckpt(out, 1).name[: -len("-sparse.pt")]
    _check_retrained(out, trained, messages, f"checkpoint {_ckpt(out, 0)} belongs to the run {rid1!r}")


def test_a_checkpoint_of_another_config_or_phase_is_refused(trained, tmp_path):
    out = _copy(trained, tmp_path)
    state = torch.load(_ckpt(out), weights_only=True)
    state["config"] = {**state["config"], "steps": 99}
    state["config_sha256"] = store.config_hash(state["config"])
    torch.save(state, _ckpt(out))
    _, messages = _sweep(out, seeds=(0, 1))
    _check_retrained(out, trained, messages, "was trained with another config (fields ['steps'])")

    out = _copy(trained, tmp_path / "phase")
    state = torch.load(_ckpt(out), weights_only=True)
    torch.save({**state, "phase": "lottery"}, _ckpt(out))
    _, messages = _sweep(out, seeds=(0, 1))
    _check_retrained(out, trained, messages, "is of the 'lottery' phase")


def test_checkpoints_of_the_previous_format_load_when_run_and_config_match(trained, tmp_path):
    out = _copy(trained, tmp_path)
    for seed in (0, 1):
        state = torch.load(_ckpt(out, seed), weights_only=True)
        legacy = {k: state[k] for k in ("run_id", "config", "model", "masks", "initial_state", "priors", "embeddings")}
        # what the code before checkpoint provenance wrote (with the config fields that later moved to the regime)
        legacy["config"] = {**legacy["config"], "inhibitor": "dog", "inhibitor_c": 1.0, "sigma1": 1.0}
        torch.save(legacy, _ckpt(out, seed))
    recs, messages = _sweep(out, seeds=(0, 1))
    assert [r["phase"] for r in recs] == ["lottery", "lottery"] and not any("again" in m for m in messages)
    for r in recs:
        assert r["value"] == trained[1][(r["run_id"], "lottery")]["value"]
    # a previous-format checkpoint of another run is refused like any other
    out = _copy(trained, tmp_path / "foreign")
    state = torch.load(_ckpt(out, 1), weights_only=True)
    torch.save({k: state[k] for k in ("run_id", "config", "model", "masks", "initial_state", "priors", "embeddings")},
               _ckpt(out, 0))
    _, messages = _sweep(out, seeds=(0, 1))
    _check_retrained(out, trained, messages, "belongs to the run")


def test_load_checkpoint_names_the_file_in_one_line(tmp_path, trained):
    cfg = dataclasses.replace(get_preset("adding", "smoke"), lam=1e-2)
    path = tmp_path / "x-sparse.pt"
    for data, message in [(b"", "cannot be read"), (b"\x00garbage" * 10, "cannot be read")]:
        path.write_bytes(data)
        with pytest.raises(store.CheckpointError, match=message) as info:
            store.load_checkpoint(path, run_id="x", config=cfg)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    torch.save([1, 2], path)
    with pytest.raises(store.CheckpointError, match="not a moduli checkpoint"):
        store.load_checkpoint(path, run_id="x", config=cfg)
    torch.save({"run_id": "x", "config": {}}, path)
    with pytest.raises(store.CheckpointError, match=r"incomplete: it lacks \['model'"):
        store.load_checkpoint(path, run_id="x", config=cfg)
    state = torch.load(_ckpt(trained[0]), weights_only=True)
    with pytest.raises(store.CheckpointError, match="newer than"):
        store.load_checkpoint(_bytes({**state, "format_version": store.CHECKPOINT_VERSION + 1}),
                              run_id=state["run_id"], config=cfg, name="N")
    with pytest.raises(store.CheckpointError, match="damaged"):
        store.load_checkpoint(_bytes({**state, "config_sha256": "0" * 64}), run_id=state["run_id"], config=cfg)
    assert store.load_checkpoint(_bytes(state), run_id=state["run_id"], config=cfg)["run_id"] == state["run_id"]


def _bytes(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_a_failed_checkpoint_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", full)
    with pytest.raises(OSError, match=r"could not write .*-sparse\.pt \(No space left on device\)"):
        _sweep(tmp_path)
    assert list((tmp_path / "checkpoints").iterdir()) == []  # no *.tmpPID left behind
    assert read_results(tmp_path) == []  # and no record of a phase whose checkpoint is lost
    with pytest.raises(OSError, match="could not write"):
        store.atomic_write(b"data", tmp_path / "f")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "checkpoints"]


# ----------------------------------------------------------------------------- OS errors and malformed files

_RUN = ["run", "adding", "--preset", "smoke", "--steps", "3", "--epochs", "1", "--no-progress"]


def _one_line_error(capsys, *names) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1, err
    for name in names:
        assert str(name) in err, err
    return err


def test_a_file_given_as_out_is_named(tmp_path, capsys):
    from moduli.cli import main

    path = tmp_path / "afile"
    path.write_text("x")
    assert main([*_RUN, "--out", str(path)]) == 1
    assert "is a file, not a directory" in _one_line_error(capsys, path)
    assert main([*_RUN, "--out", str(path / "sub")]) == 1  # a file where a parent directory should be
    assert "cannot create the result directory" in _one_line_error(capsys, path / "sub")
    assert path.read_text() == "x"


def test_a_read_only_out_is_named(tmp_path, capsys, monkeypatch):
    import builtins
    import os

    from moduli.cli import main

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        (ro / "probe").touch()
    except PermissionError:
        pass
    else:  # root writes anyway: refuse writes below ro as a read-only file system would
        (ro / "probe").unlink()
        real_open = builtins.open

        def read_only_open(file, mode="r", *a, **k):
            if str(file).startswith(str(ro)) and any(c in mode for c in "wax+"):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
            return real_open(file, mode, *a, **k)

        monkeypatch.setattr(store, "open", read_only_open, raising=False)
    try:
        assert main([*_RUN, "--out", str(ro)]) == 1
        assert "cannot write to the result directory" in _one_line_error(capsys, ro)
        assert sorted(p.name for p in ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def _garbage(path):
    g = torch.Generator().manual_seed(0)
    path.write_bytes(bytes(torch.randint(0, 256, (4000,), generator=g, dtype=torch.uint8).tolist()))


@pytest.mark.parametrize("content, message", [
    (None, "line 1: not a moduli record (not JSON)"),
    ('{"run_id": "a", "phase": "sparse"}\n', "line 1: a record without the fields ['task'"),
    ('[1, 2]\n', "line 1: not a moduli record (a JSON list"),
    ("hello\n", "line 1: not a moduli record (not JSON)"),
])
def test_a_malformed_results_file_is_named_by_run_table_and_plot(tmp_path, capsys, content, message):
    from moduli.cli import main

    out = tmp_path / "out"
    out.mkdir()
    path = out / "results.jsonl"
    _garbage(path) if content is None else path.write_text(content)
    before = path.read_bytes()
    for argv in ([*_RUN, "--out", str(out)], ["table", str(out)], ["table", str(path)], ["plot", str(out)]):
        assert main(argv) == 1, argv
        assert message in _one_line_error(capsys, path)
    assert path.read_bytes() == before  # nothing trained, nothing appended


def test_a_record_with_a_field_of_the_wrong_type_is_named(tmp_path, capsys):
    from moduli.cli import main

    out = tmp_path / "out"
    assert main([*_RUN, "--out", str(out)]) == 0
    capsys.readouterr()
    rec = json.loads((out / "results.jsonl").read_text())
    with open(out / "results.jsonl", "a") as fh:
        fh.write(json.dumps({**rec, "seed": "zero"}) + "\n")
    assert main(["table", str(out)]) == 1
    assert "line 2: a record whose fields ['seed'] have the wrong type (seed='zero')" in _one_line_error(capsys)


def test_table_and_plot_of_an_empty_or_foreign_directory(tmp_path, capsys):
    from moduli.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    _garbage(other / "notes.bin")
    for argv in (["table", str(empty)], ["table", str(other)], ["plot", str(other)], ["table", str(tmp_path / "no")],
                 ["table", str(other / "notes.bin")]):
        assert main(argv) == 1, argv
        _one_line_error(capsys, argv[1])
    (other / "results.jsonl").mkdir()  # not a file
    assert main(["table", str(other)]) == 1
    _one_line_error(capsys, other)


def test_plot_names_a_corrupt_checkpoint(tmp_path, capsys):
    from moduli.cli import main

    out = tmp_path / "out"
    assert main([*_RUN, "--regime", "torus", "--sparsity", "50%", "--out", str(out)]) == 0
    capsys.readouterr()
    (ckpt,) = (out / "checkpoints").glob("*-sparse.pt")
    ckpt.write_bytes(b"\x80\x04not a checkpoint")
    assert main(["plot", str(out)]) == 1
    assert "cannot be read" in _one_line_error(capsys, ckpt)


@pytest.mark.parametrize("stderr_too", [False, True])
def test_a_closed_stdout_does_not_cut_a_sweep_short(tmp_path, stderr_too):
    """``moduli run ... | head -1`` (and ``2>&1 | head -1``): the sweep trains to the end and exits 0."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "moduli.cli", "run", "adding", "--preset", "smoke", "--regime", "none",
           "--regime", "l1", "--seeds", "4", "--threads", "1", "--out", str(out)]
    if not stderr_too:
        cmd.append("--no-progress")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # every message reaches the pipe at once, as from a terminal
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE,
                            env=env)
    first = proc.stdout.readline()
    proc.stdout.close()  # what head -1 does after its line
    err = b"" if stderr_too else proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert b"8 runs (8 results) planned" in first, first
    assert len(read_results(out)) == 8
    if not stderr_too:
        assert b"stdout was closed; training on" in err and b"Traceback" not in err, err


# ----------------------------------------------------------------------------- workers die with their parent


def _children(pid: int) -> set[int]:
    import glob

    kids = set()
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path) as fh:
                kids |= {int(k) for k in fh.read().split()}
        except OSError:  # the task ended meanwhile
            pass
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped running
    except OSError:
        return False


def _spawn_workers(pid: int) -> set[int]:
    """The multiprocessing spawn workers among the children of ``pid`` (not the resource tracker)."""
    out = set()
    for kid in _children(pid):
        try:
            with open(f"/proc/{kid}/cmdline", "rb") as fh:
                if b"spawn_main" in fh.read():
                    out.add(kid)
        except OSError:
            pass
    return out


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/task"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_workers_die_with_their_parent(tmp_path, sig):
    import os
    import signal
    import subprocess
    import sys
    import time

    if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"):
        pytest.skip("this kernel has no /proc/PID/task/TID/children")
    cmd = [sys.executable, "-m", "moduli.cli", "run", "navigation", "--preset", "smoke", "--regime", "none",
           "--seeds", "2", "--workers", "2", "--threads", "1", "--steps", "100000", "--no-progress",
           "--out", str(tmp_path / "out")]
    # a shell starts background jobs with SIGINT ignored, and Python keeps an inherited SIG_IGN: give the
    # sweep the default disposition a terminal user's process has
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            workers = _spawn_workers(proc.pid)
        assert len(workers) == 2, (workers, proc.poll())
        time.sleep(1.0)  # the workers have begun (their imports done, or nearly)
        proc.send_signal(getattr(signal, sig))
        # under load a worker may still be importing torch when its parent dies; its watcher starts (and
        # finds the parent gone) only after that import, so the bound allows for a slow one
        deadline = time.monotonic() + 90
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, workers)), f"workers {sorted(w for w in workers if _alive(w))} outlived their parent"
        code = proc.wait(timeout=20)
        assert code != 0
        if sig != "SIGKILL":
            err = proc.stderr.read().decode()
            assert "Traceback" not in err, err
    finally:
        for pid in [proc.pid, *workers]:  # what this test started, by id
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=20)


def test_table_names_a_csv_path_it_cannot_write(tmp_path, capsys):
    from moduli.cli import main

    out = tmp_path / "out"
    assert main([*_RUN, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["table", str(out), "--csv", str(tmp_path / "no" / "such" / "t.csv")]) == 1
    _one_line_error(capsys, tmp_path / "no" / "such" / "t.csv")
