# README example: a ReLU RNN on the adding problem with a torus prior, pruned to 90%.
import time

import torch
from moduli import manifolds as mf, pruning, regularizers as rg

torch.manual_seed(0)
torch.set_num_threads(1)
start = time.perf_counter()


def adding_batch(batch=64, length=20):
    """Inputs (batch, length, 2): a value in [0, 1) and a mask marking two steps."""
    values = torch.rand(batch, length)
    mask = torch.zeros(batch, length)
    picks = torch.stack([torch.randperm(length)[:2] for _ in range(batch)])
    mask.scatter_(1, picks, 1.0)
    return torch.stack([values, mask], dim=-1), (values * mask).sum(1, keepdim=True)


class AddingRNN(torch.nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.rnn = torch.nn.RNN(2, hidden, nonlinearity="relu", batch_first=True)
        self.out = torch.nn.Linear(hidden, 1)

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.out(h[:, -1])


model = AddingRNN()
prior = rg.ModuliPrior(mf.FlatTorus(2, period=10.0), rg.DifferenceOfGaussians(c=1.0, sigma1=0.5, sigma2=5**0.5))
priors = rg.attach(model, prior, targets="recurrent")       # the hidden-to-hidden matrix
gmp = pruning.GradualMagnitudePruning(model, target_sparsity=0.9, epochs=10, targets="recurrent")
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
lam = 1e-4

for epoch in range(10):
    gmp.step()                                               # prune at the start of each epoch
    for _ in range(100):
        x, y = adding_batch()
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        (loss + lam * priors.penalty()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

x, y = adding_batch(1000)
with torch.no_grad():
    mse = torch.nn.functional.mse_loss(model(x), y).item()
print(f"recurrent sparsity {pruning.sparsity(gmp):.3f}, test MSE {mse:.4f} "
      f"(predicting 1 always: {torch.nn.functional.mse_loss(torch.ones_like(y), y).item():.4f}), "
      f"{time.perf_counter() - start:.1f} s")
