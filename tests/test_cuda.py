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


def test_cuda_rng_is_not_the_cpu_rng():
    """Why reinit is compared by its properties only: the same seed draws other numbers on CUDA."""
    torch.manual_seed(0)
    a = torch.rand(8)
    torch.manual_seed(0)
    b = torch.rand(8, device=DEVICE).cpu()
    assert not torch.equal(a, b)
