"""The runner's device plumbing on the CPU: --device, records, worker devices, Ray GPU requests, AMP, the loop's checks.

The CUDA side (a two-phase run on ``cuda`` against the CPU run, cuDNN with
pruned weights) is in ``tests/test_cuda.py``, skipped without a GPU.
"""

import dataclasses
import json
import sys
import types

import pytest
import torch

from moduli.cli import main
from moduli.experiments import devices, executors, train
from moduli.experiments.adding import adding_batch
from moduli.experiments.navigation import TrajectoryGenerator
from moduli.experiments.regimes import parse_regime
from moduli.experiments.registry import get_preset, make_task
from moduli.experiments.runner import run_sweep

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = dict(preset="smoke", progress=False, log=lambda m: None)


def _records(path):
    return [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]


def test_device_names_are_checked_and_a_missing_gpu_is_a_clear_error(monkeypatch):
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.parse_device(" CUDA:1 ") == "cuda:1" and devices.parse_device(torch.device("cpu")) == "cpu"
    for bad in ("gpu", "cuda:", "cuda:x", "tpu", ""):
        with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
            devices.parse_device(bad)
    with pytest.raises(TypeError, match="device must be a string"):
        devices.parse_device(0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=f"device '{name}': CUDA is not available"):
            devices.resolve_device(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.resolve_device("auto") == torch.device("cuda")
    assert devices.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="has 2 CUDA device"):
        devices.resolve_device("cuda:2")


def test_workers_take_the_gpus_round_robin():
    assert devices.worker_devices("cuda", 4, device_count=2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert devices.worker_devices("cuda", 2, device_count=1) == ["cuda:0", "cuda:0"]
    assert devices.worker_devices("cuda:1", 2, device_count=2) == ["cuda:1", "cuda:1"]
    assert devices.worker_devices("auto", 2, device_count=2) == ["cuda:0", "cuda:1"]
    assert devices.worker_devices("auto", 2, device_count=0) == ["cpu", "cpu"]
    with pytest.raises(ValueError, match="no CUDA device"):
        devices.worker_devices("cuda", 2, device_count=0)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        devices.worker_devices("cpu", 0)


def test_a_batch_is_drawn_on_the_generator_device_and_a_conflicting_device_is_refused():
    g = torch.Generator().manual_seed(0)
    assert TrajectoryGenerator(2.2, 4).sample(3, generator=g).velocity.device.type == "cpu"
    for draw in (lambda d: TrajectoryGenerator(2.2, 4).sample(3, generator=g, device=d),
                 lambda d: adding_batch(3, 4, generator=g, device=d)):
        draw("cpu")
        with pytest.raises(ValueError, match="differs from the generator's device cpu"):
            draw("meta")


def test_a_task_moves_its_fixed_data():
    task = make_task("navigation", get_preset("navigation", "smoke"), 0).to("meta")
    assert task.device == torch.device("meta")
    assert task.place_cells.centres.device.type == "meta"
    assert task.eval_set.velocity.device.type == task.eval_set.init_position.device.type == "meta"
    adding = make_task("adding", get_preset("adding", "smoke"), 0).to("meta")
    assert all(t.device.type == "meta" for t in adding.eval_set)


def test_run_on_cpu_and_auto_from_the_command_line_record_the_device(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # auto means cpu here, even on a GPU machine
    base = ["run", "navigation", "--preset", "smoke", "--regime", "torus", "--sparsity", "50%", "--no-progress"]
    assert main([*base, "--device", "cpu", "--out", str(tmp_path / "cpu")]) == 0
    assert main([*base, "--device", "auto", "--out", str(tmp_path / "auto")]) == 0
    cpu, auto = _records(tmp_path / "cpu"), _records(tmp_path / "auto")
    assert [r["phase"] for r in cpu] == ["sparse", "lottery"]
    for a, b in zip(cpu, auto):
        assert a["device"] == b["device"] == "cpu" and a["cudnn_version"] is None
        assert a["cuda_version"] == torch.version.cuda and a["device_name"]
        assert a["value"] == b["value"] and a["run_id"] == b["run_id"]
        assert "device" not in a["config"]  # an execution option: a sweep resumes on another device


def test_asking_for_a_missing_gpu_fails_before_any_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        run_sweep("navigation", get_preset("navigation", "smoke"), [parse_regime("none")], [0.0], [0],
                  tmp_path / "a", device="cuda", **QUIET)
    assert not (tmp_path / "a" / "results.jsonl").exists()
    assert main(["run", "navigation", "--preset", "smoke", "--device", "cuda", "--out", str(tmp_path / "b")]) == 1
    assert "device 'cuda': CUDA is not available" in capsys.readouterr().err
    with pytest.raises(ValueError, match="gpus_per_run must be a positive number"):
        run_sweep("navigation", get_preset("navigation", "smoke"), [parse_regime("none")], [0.0], [0],
                  tmp_path / "c", gpus_per_run=0, **QUIET)


def test_workers_record_their_device(tmp_path):
    recs = run_sweep("adding", get_preset("adding", "smoke"), [parse_regime("none"), parse_regime("l1")], [0.0], [0],
                     tmp_path, workers=2, threads=1, device="cpu", **QUIET)
    assert len(recs) == 2 and {r["device"] for r in recs} == {"cpu"}


class _FakeRay(types.ModuleType):
    """The part of Ray that RayPool touches, recording the resources asked for."""

    def __init__(self, gpus):
        super().__init__("ray")
        self.gpus, self.options, self.shut = gpus, None, False

    def is_initialized(self):
        return False

    def init(self, **kw):
        pass

    def shutdown(self):
        self.shut = True

    def cluster_resources(self):
        return {"CPU": 8.0, **({"GPU": float(self.gpus)} if self.gpus else {})}

    def remote(self, **options):
        self.options = options
        return lambda fn: fn


@pytest.mark.parametrize("device, gpus, per_run, want_device, want_gpus", [
    ("cuda", 2, 1.0, "cuda", 1.0),
    ("cuda", 1, 0.5, "cuda", 0.5),
    ("auto", 4, 1.0, "cuda", 1.0),
    ("auto", 0, 1.0, "cpu", 0),
    ("cpu", 2, 1.0, "cpu", 0),
])
def test_ray_tasks_ask_for_a_gpu_fraction_on_cuda(monkeypatch, device, gpus, per_run, want_device, want_gpus):
    fake = _FakeRay(gpus)
    monkeypatch.setitem(sys.modules, "ray", fake)
    pool = executors.RayPool("local", 2, device, per_run)
    assert pool.device == want_device
    assert fake.options == {"num_cpus": 2, "num_gpus": want_gpus}


def test_ray_refuses_cuda_without_gpus_or_more_gpus_per_run_than_it_has(monkeypatch):
    for gpus, per_run, match in ((0, 1.0, "the Ray cluster has no GPU"), (1, 2.0, r"gpus_per_run must be in \(0, 1\]")):
        fake = _FakeRay(gpus)
        monkeypatch.setitem(sys.modules, "ray", fake)
        with pytest.raises(ValueError, match=match):
            executors.RayPool("local", 1, "cuda", per_run)
        assert fake.shut  # the session it started is closed again


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_runs_two_phases_and_is_part_of_the_config(tmp_path, amp):
    cfg = dataclasses.replace(get_preset("navigation", "smoke"), amp=amp)
    recs = run_sweep("navigation", cfg, [parse_regime("torus")], [0.5], [0], tmp_path, **QUIET)
    assert [r["phase"] for r in recs] == ["sparse", "lottery"]
    for r in recs:
        assert r["config"]["amp"] == amp and not r["diverged"] and r["value"] > 0
    assert "amp" not in get_preset("navigation", "smoke").to_dict()  # off: configs (and hashes) as before
    with pytest.raises(ValueError, match=r"different config \(fields \['amp'\]\)"):
        run_sweep("navigation", get_preset("navigation", "smoke"), [parse_regime("torus")], [0.5], [0], tmp_path,
                  **QUIET)
    with pytest.raises(ValueError, match="amp must be one of"):
        dataclasses.replace(cfg, amp="fp8")


def _diverging(tmp_path, monkeypatch, check_every):
    """A smoke run whose learning rate makes the loss non-finite, with the loop's checks every ``check_every`` steps."""
    monkeypatch.setattr(train, "_check_every", lambda device: check_every)
    cfg = dataclasses.replace(get_preset("navigation", "smoke"), lr=1e30, steps=40, epochs=4)
    return run_sweep("navigation", cfg, [parse_regime("torus")], [0.5], [0], tmp_path, **QUIET)


@pytest.mark.parametrize("check_every", [1, 7])
def test_a_diverged_phase_is_reported_at_the_check_that_sees_it(tmp_path, monkeypatch, check_every):
    recs = _diverging(tmp_path, monkeypatch, check_every)
    sparse = recs[0]
    assert sparse["phase"] == "sparse" and sparse["diverged"] and sparse["value"] is None
    # the losses kept are those before the first non-finite one: a finite mean, or none at all
    assert sparse["final_train_loss"] is None or torch.isfinite(torch.tensor(sparse["final_train_loss"]))


def test_the_checks_run_every_step_on_the_cpu_and_at_a_cadence_elsewhere():
    assert train._check_every(torch.device("cpu")) == 1
    assert train._check_every(torch.device("cuda", 0)) == train.CHECK_EVERY == 50


def test_a_second_sweep_on_a_locked_directory_is_refused(tmp_path):
    from moduli.experiments.results import locked

    with locked(tmp_path):
        with pytest.raises(RuntimeError, match="another moduli run is writing to"):
            run_sweep("adding", get_preset("adding", "smoke"), [parse_regime("none")], [0.0], [0], tmp_path, **QUIET)
    assert run_sweep("adding", get_preset("adding", "smoke"), [parse_regime("none")], [0.0], [0], tmp_path, **QUIET)
