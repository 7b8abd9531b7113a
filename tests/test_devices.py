"""The bodies of ``tests/test_cuda.py`` on the CPU (float32 against float64) and on ``meta``.

On a machine without a GPU these keep the device plumbing of the CUDA tests
exercised: points, coefficients, masks and gradients are created on the device
of their inputs (``meta`` catches a tensor made without ``device=``, since
mixing a ``meta`` tensor with a CPU one raises), and the float32 results match
the float64 reference at the tolerance the CUDA tests use.
"""

import pytest
import torch

import device_checks as dc

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.mark.parametrize("name", sorted(dc.all_spaces()))
def test_cdist_float32_equals_float64(name, device):
    dc.check_cdist(dc.all_spaces()[name], device)


@pytest.mark.parametrize("name", dc.META_SPACES)
def test_cdist_on_meta(name):
    dc.check_meta_cdist(name)


@pytest.mark.parametrize("move", ["attach-on-device", "move-both", "follow"])
@pytest.mark.parametrize("trainable", [False, True], ids=["fixed", "trained"])
def test_penalty_and_fused_gradient(trainable, move, device):
    dc.check_prior(device, manifold_name="torus", trainable=trainable, move=move)


@pytest.mark.parametrize("manifold_name", ["sphere", "klein"])
def test_trained_embeddings_other_spaces(manifold_name, device):
    dc.check_prior(device, manifold_name=manifold_name, trainable=True)


def test_trained_prior_on_meta():
    dc.check_meta_trained_prior()


def test_pruning_and_lottery_lstm(device):
    dc.check_pruning(device)


def test_geodesic_sparsify(device):
    dc.check_geodesic(device)


def test_persistence(device):
    dc.check_persistence(device)


def test_checks_can_fail():
    """The reference comparison is not vacuous: a float32 result off by more than the tolerance fails."""
    ref = torch.linspace(0, 5, 11, dtype=torch.float64)
    dc.assert_close(ref.float(), ref)
    with pytest.raises(AssertionError, match="off by one step"):
        dc.assert_close(ref.float() + 1e-3, ref, what="off by one step")
