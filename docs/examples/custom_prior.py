# Two priors of your own: subclass rg.Prior and write coefficients().
import torch
from moduli import regularizers as rg


class BandPrior(rg.Prior):
    """Penalise connections more than `width` apart in neuron index (no embedding needed)."""

    def __init__(self, width: int, **kwargs):
        super().__init__(**kwargs)                   # exponent=, reduction=
        self.width = width

    def coefficients(self, layout, points_out, points_in, *, generator=None):
        i = torch.arange(layout.n_out)[:, None]      # one row per output neuron, shared by gate blocks
        j = torch.arange(layout.cols)[None, :]
        return ((i - j).abs() > self.width).float()  # shape (n_out, cols)


class FunctionPrior(rg.Prior):
    """Coefficients from any callable of the neurons' embedding points."""

    def __init__(self, manifold, fn, **kwargs):
        super().__init__(**kwargs)
        self.manifold, self.fn = manifold, fn        # a manifold: attach embeds the neurons on it

    def coefficients(self, layout, points_out, points_in, *, generator=None):
        return self.fn(points_out, points_out if points_in is None else points_in)
