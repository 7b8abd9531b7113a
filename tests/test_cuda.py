"""The library on CUDA equals the library on the CPU.

Every test compares a computation on ``cuda`` in float32 with the same one on
the CPU in float64, through the device-agnostic bodies of
``tests/device_checks.py``; ``tests/test_devices.py`` runs the same bodies on
the CPU (and on ``meta``) in every CI job. Without a CUDA device the whole
module is skipped, with the reason shown by ``pytest -ra``. Run it alone with
``python -m pytest tests/test_cuda.py`` or select it with ``-m cuda``;
``benchmarks/gpu_check.py`` runs it first.
"""

import pytest
import torch

import device_checks as dc

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="CUDA is not available (torch.cuda.is_available() is False): the CUDA tests need a GPU; "
                              "tests/test_devices.py runs the same checks on the CPU"),
]

DEVICE = "cuda"


@pytest.mark.parametrize("name", sorted(dc.all_spaces()))
def test_cdist_equals_cpu(name):
    dc.check_cdist(dc.all_spaces()[name], DEVICE)


@pytest.mark.parametrize("move", ["attach-on-device", "move-both", "follow"])
@pytest.mark.parametrize("trainable", [False, True], ids=["fixed", "trained"])
def test_penalty_and_fused_gradient_equal_cpu(trainable, move):
    dc.check_prior(DEVICE, manifold_name="torus", trainable=trainable, move=move)


@pytest.mark.parametrize("manifold_name", ["sphere", "klein"])
def test_trained_embeddings_on_curved_and_quotient_spaces(manifold_name):
    dc.check_prior(DEVICE, manifold_name=manifold_name, trainable=True)


def test_gradual_pruning_and_lottery_on_an_lstm():
    dc.check_pruning(DEVICE)


def test_geodesic_sparsify_small_mlp():
    dc.check_geodesic(DEVICE)


def test_persistence_of_cuda_points():
    dc.check_persistence(DEVICE)


def test_lottery_reinit_leaves_the_cuda_generator_alone():
    """Fresh values are drawn on the CPU: a seeded reset does not reseed (or advance) CUDA's generator."""
    from torch import nn

    from moduli import pruning

    lstm = nn.LSTM(3, 8).to(DEVICE)
    pruning.GradualMagnitudePruning(lstm, 0.5, epochs=1).step()
    torch.cuda.manual_seed(123)
    before = torch.cuda.get_rng_state()
    pruning.lottery_reset(lstm, "reinit", seed=0)
    assert torch.equal(torch.cuda.get_rng_state(), before)


def test_pruned_rnn_runs_cudnn_without_the_compaction_warning():
    """A pruned nn.RNN on CUDA through run_rnn: no warning, and the output and gradient of the CPU model."""
    import warnings

    from torch import nn

    from moduli import pruning
    from moduli.experiments.devices import run_rnn

    torch.manual_seed(0)
    cpu = nn.RNN(4, 32, nonlinearity="relu", batch_first=True)
    pruning.GradualMagnitudePruning(cpu, 0.9, epochs=1, targets=["weight_hh_l0"]).step()
    import copy

    gpu = copy.deepcopy(cpu).to(DEVICE)
    x = torch.randn(5, 7, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out_gpu, _ = run_rnn(gpu, x.to(DEVICE))
        out_gpu.sum().backward()
    out_cpu, _ = cpu(x)
    out_cpu.sum().backward()
    dc.assert_close(out_gpu, out_cpu, what="pruned RNN output")
    dc.assert_close(gpu.weight_hh_l0_orig.grad, cpu.weight_hh_l0_orig.grad, scale=10, what="W_hh_orig gradient")


@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_moduli_run_on_cuda_matches_the_cpu_run(tmp_path, amp):
    """Two phases of ``moduli run --device cuda`` at a small navigation size against the same run on the CPU.

    Model, place cells, evaluation set, embeddings and lottery values are drawn on the CPU and moved, so both
    runs start from the same point; the training batches are drawn on the device, by CUDA's generator, so
    the runs see different trajectories and their errors agree only to within run-to-run spread. On the
    CPU, seeds 0-3 of this configuration gave 55.83 (std 10.25) cm sparse and 71.37 (10.53) cm lottery;
    two independent runs differ by more than 50% of the mean about 5% of the time, and these two share
    their initial point, so 50% is the tolerance. The CUDA checkpoint holds CPU tensors.
    """
    from moduli.cli import main

    args = ["run", "navigation", "--preset", "smoke", "--regime", "torus", "--sparsity", "75%", "--steps", "300",
            "--epochs", "3", "--n-hidden", "64", "--n-place", "64", "--batch-size", "32", "--seq-len", "10",
            "--eval-size", "500", "--no-progress", "--amp", amp]
    assert main([*args, "--device", "cpu", "--out", str(tmp_path / "cpu")]) == 0
    assert main([*args, "--device", "cuda", "--out", str(tmp_path / "cuda")]) == 0
    import json

    def values(d):
        return {json.loads(line)["phase"]: json.loads(line) for line in open(tmp_path / d / "results.jsonl")}

    cpu, cuda = values("cpu"), values("cuda")
    for phase in ("sparse", "lottery"):
        assert cuda[phase]["device"].startswith("cuda:") and cuda[phase]["cuda_version"] == torch.version.cuda
        assert cuda[phase]["recurrent_sparsity"] == cpu[phase]["recurrent_sparsity"] == 0.75
        a, b = cuda[phase]["value"], cpu[phase]["value"]
        assert abs(a - b) <= 0.5 * b, f"{phase}: cuda {a:.2f} cm against cpu {b:.2f} cm"
    (ckpt,) = (tmp_path / "cuda" / "checkpoints").glob("*.pt")
    state = torch.load(ckpt, weights_only=True)  # no map_location: every tensor is on the CPU
    assert all(t.device.type == "cpu" for t in state["model"].values())
