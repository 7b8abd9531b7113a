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
