"""Mixed precision and gradient accumulation with the fused prior gradient.

The recipes of ``docs/gpu.md``, checked on the CPU (``torch.amp.GradScaler("cpu")``
and ``torch.autocast("cpu", dtype=torch.bfloat16)``; the CUDA versions differ
only in the device string):

* with a ``GradScaler``, ``priors.add_penalty_grad_(lam)`` goes after
  ``scaler.unscale_(optimizer)`` (the ``.grad`` it adds to is then in true
  units); ``add_penalty_grad_(lam * scaler.get_scale())`` before it is the
  equivalent alternative;
* with ``k`` accumulated micro-batches, each backward of ``loss / k`` and one
  ``add_penalty_grad_(lam)`` per optimizer step (lambda once per step).

The parameters after one step must equal those of the plain float32 step with
``loss + lam * priors.penalty()``. SGD keeps the comparison direct (the update
is linear in the gradient, so a wrongly scaled penalty gradient shows up as a
wrong update; Adam's normalisation could hide part of it).
"""

import copy

import pytest
import torch
from torch import nn

from moduli import regularizers as rg
from moduli.manifolds import catalog

pytestmark = pytest.mark.usefixtures("one_thread")

LAM = 5e-3
LR = 0.1
SCALE = 2.0**12  # a power of two: scaling and unscaling are exact in float32


class Net(nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.rnn = nn.RNN(3, hidden, nonlinearity="relu", batch_first=True)
        self.out = nn.Linear(hidden, 2)

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.out(h[:, -1])


def setup(trainable: bool, seed: int = 0):
    """A model, its prior set, an SGD optimizer over both, and one batch of 16."""
    torch.manual_seed(seed)
    model = Net()
    prior = rg.ModuliPrior(catalog.build("torus"), rg.DifferenceOfGaussians(), trainable=trainable)
    priors = rg.attach(model, prior, ["recurrent", "linear"], generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(list(model.parameters()) + list(priors.parameters()), lr=LR)
    g = torch.Generator().manual_seed(seed + 1)
    batch = torch.randn(16, 5, 3, generator=g), torch.randn(16, 2, generator=g)
    return model, priors, opt, batch


def loss_of(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def state(model, priors):
    return [p.detach().clone() for p in list(model.parameters()) + list(priors.parameters())]


def reference_step(trainable):
    """Plain float32: ``(loss + lam * penalty()).backward()``, one step."""
    model, priors, opt, batch = setup(trainable)
    opt.zero_grad(set_to_none=True)
    (loss_of(model, batch) + LAM * priors.penalty()).backward()
    opt.step()
    return state(model, priors)


def amp_step(trainable, *, order="after-unscale", autocast=False, lam=LAM):
    """One step with a GradScaler and the fused penalty gradient."""
    model, priors, opt, batch = setup(trainable)
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = loss_of(model, batch)
    scaler.scale(loss).backward()
    if order == "scaled-before-unscale":
        priors.add_penalty_grad_(lam * scaler.get_scale())
    elif order == "wrong-before-unscale":
        priors.add_penalty_grad_(lam)
    scaler.unscale_(opt)
    if order == "after-unscale":
        priors.add_penalty_grad_(lam)
    scaler.step(opt)
    scaler.update()
    return state(model, priors)


def assert_same(a, b, rtol=1e-5, atol=1e-7):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


def max_difference(a, b):
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize("trainable", [False, True], ids=["fixed", "trained"])
@pytest.mark.parametrize("order", ["after-unscale", "scaled-before-unscale"])
def test_scaler_with_fused_penalty_equals_penalty_in_the_loss(trainable, order):
    assert_same(amp_step(trainable, order=order), reference_step(trainable))


@pytest.mark.parametrize("trainable", [False, True], ids=["fixed", "trained"])
def test_fused_penalty_before_unscale_is_wrong(trainable):
    """The negative control: added before ``unscale_`` at plain lambda, the penalty
    gradient is divided by the scale, and the update differs from the reference."""
    ref = reference_step(trainable)
    wrong = amp_step(trainable, order="wrong-before-unscale")
    right = amp_step(trainable)
    no_prior = amp_step(trainable, lam=0.0)
    penalty_part = max_difference(right, no_prior)  # lr * lam * |d penalty / d W|, at the largest entry
    assert penalty_part > 1e-4
    assert max_difference(wrong, ref) > 0.5 * penalty_part


@pytest.mark.parametrize("trainable", [False, True], ids=["fixed", "trained"])
def test_bf16_autocast_keeps_the_penalty_gradient_exact(trainable):
    """Under bf16 autocast the loss gradient is approximate, the penalty's is not:
    with SGD the update's penalty part (update with lambda minus update without) is
    the same as in float32, and the whole update stays near the float32 one."""
    ref = reference_step(trainable)
    amp = amp_step(trainable, autocast=True)
    amp_free = amp_step(trainable, autocast=True, lam=0.0)
    fp32 = amp_step(trainable)
    fp32_free = amp_step(trainable, lam=0.0)
    assert_same([a - b for a, b in zip(amp, amp_free)], [a - b for a, b in zip(fp32, fp32_free)], rtol=1e-4,
                atol=1e-7)
    step = max_difference(ref, state(*setup(trainable)[:2]))
    assert max_difference(amp, ref) < 0.05 * step  # bf16 rounding of the loss gradient only


@pytest.mark.parametrize("trainable", [False, True], ids=["fixed", "trained"])
def test_penalty_is_float32_under_autocast(trainable):
    """Autocast leaves the penalty (elementwise operations) and the fused gradient in float32."""
    model, priors, _, _ = setup(trainable)
    plain = priors.penalty()
    priors.add_penalty_grad_(LAM)
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    for p in priors.parameters():
        p.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = priors.penalty()
        priors.add_penalty_grad_(LAM)
    assert cast.dtype == torch.float32
    assert torch.equal(cast, plain)
    assert_same([p.grad for p in model.parameters() if p.grad is not None], grads, rtol=0, atol=0)


def test_skipped_step_skips_the_penalty_too():
    """An overflowing loss gradient: ``scaler.step`` skips the whole update (the fused
    gradient added after ``unscale_`` does not make it finite) and the scale backs off."""
    model, priors, opt, batch = setup(False)
    before = state(model, priors)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    loss = loss_of(model, batch) * 1e30  # scaled, this overflows float32
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    assert priors.add_penalty_grad_(LAM) is not None
    scaler.step(opt)
    scaler.update()
    assert_same(state(model, priors), before, rtol=0, atol=0)
    assert scaler.get_scale() < 2.0**127


def accumulated_grads(trainable, k, *, fused_per_micro_batch=False, scaler=None):
    """Gradients of ``k`` micro-batches of ``loss / k`` and one fused penalty call."""
    model, priors, opt, batch = setup(trainable)
    x, y = batch
    opt.zero_grad(set_to_none=True)
    for xs, ys in zip(x.chunk(k), y.chunk(k)):
        loss = loss_of(model, (xs, ys)) / k
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if fused_per_micro_batch:
            priors.add_penalty_grad_(LAM)
    if scaler is not None:
        scaler.unscale_(opt)
    if not fused_per_micro_batch:
        priors.add_penalty_grad_(LAM)  # lambda once per optimizer step
    grads = [p.grad.clone() for p in list(model.parameters()) + list(priors.parameters())]
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return grads, state(model, priors)


def full_batch(trainable):
    model, priors, opt, batch = setup(trainable)
    opt.zero_grad(set_to_none=True)
    (loss_of(model, batch) + LAM * priors.penalty()).backward()
    grads = [p.grad.clone() for p in list(model.parameters()) + list(priors.parameters())]
    opt.step()
    return grads, state(model, priors)


@pytest.mark.parametrize("trainable", [False, True], ids=["fixed", "trained"])
@pytest.mark.parametrize("k", [2, 4])
def test_accumulated_micro_batches_equal_one_full_batch(trainable, k):
    grads, after = accumulated_grads(trainable, k)
    ref_grads, ref_after = full_batch(trainable)
    assert_same(grads, ref_grads)
    assert_same(after, ref_after)


@pytest.mark.parametrize("trainable", [False, True], ids=["fixed", "trained"])
def test_accumulation_with_a_scaler(trainable):
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    grads, after = accumulated_grads(trainable, 4, scaler=scaler)
    ref_grads, ref_after = full_batch(trainable)
    assert_same(grads, ref_grads)
    assert_same(after, ref_after)


def test_fused_penalty_per_micro_batch_counts_lambda_k_times():
    """The negative control: one fused call per micro-batch adds ``k * lam``."""
    k = 4
    per_micro, _ = accumulated_grads(False, k, fused_per_micro_batch=True)
    once, _ = accumulated_grads(False, k)
    no_prior_model, priors, _, _ = setup(False)
    pen_grads = torch.autograd.grad(priors.penalty(), list(no_prior_model.parameters()), allow_unused=True)
    for a, b, g in zip(per_micro, once, pen_grads):
        if g is None:
            torch.testing.assert_close(a, b)
        else:
            torch.testing.assert_close(a - b, (k - 1) * LAM * g, rtol=1e-4, atol=1e-8)
    assert max_difference(per_micro, once) > 0


def test_setup_is_deterministic():
    """Every comparison above starts both sides from the same model, prior and batch."""
    a, b = setup(True), setup(True)
    assert_same(state(a[0], a[1]), state(b[0], b[1]), rtol=0, atol=0)
    assert torch.equal(a[3][0], b[3][0])
    assert copy.deepcopy(a[1].state_dict()).keys() == b[1].state_dict().keys()
