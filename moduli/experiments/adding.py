"""The adding problem (Section 4.3, Appendix A.3 of the moduli-regularization paper).

Each input sequence has two channels: numbers drawn from ``U(0, 1)`` and a
mask with exactly two ones. The target is the sum of the two marked numbers.
Always predicting 1 has mean squared error ``1/6 ~ 0.167`` (RMSE ``~ 0.41``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .devices import run_rnn, sampling_device

__all__ = ["adding_batch", "AddingRNN"]


def adding_batch(
    batch_size: int,
    seq_len: int,
    *,
    generator: Optional[torch.Generator] = None,
    dtype: Optional[torch.dtype] = None,
    device=None,
) -> tuple[Tensor, Tensor]:
    """Draw a batch of the adding problem.

    Parameters
    ----------
    batch_size : int
    seq_len : int
        At least 2.
    generator : torch.Generator, optional
        The numbers are drawn on its device.
    dtype, device : optional
        Default: torch's default dtype; the generator's device, else the CPU.

    Returns
    -------
    inputs : Tensor, shape=[batch_size, seq_len, 2]
        Channel 0 the numbers, channel 1 the two-hot mask.
    target : Tensor, shape=[batch_size]
        Sum of the two marked numbers.

    Examples
    --------
    >>> import torch
    >>> x, y = adding_batch(3, 10, generator=torch.Generator().manual_seed(0))
    >>> x[..., 1].sum(-1).tolist()
    [2.0, 2.0, 2.0]
    >>> bool(torch.allclose(y, (x[..., 0] * x[..., 1]).sum(-1)))
    True
    """
    for name, value, minimum in (("batch_size", batch_size, 1), ("seq_len", seq_len, 2)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}")
    dtype = dtype or torch.get_default_dtype()
    device = sampling_device(generator, device)
    values = torch.rand(batch_size, seq_len, generator=generator, dtype=dtype, device=device)
    # two distinct positions per row: the two smallest of seq_len uniform keys
    keys = torch.rand(batch_size, seq_len, generator=generator, device=device)
    marked = keys.topk(2, dim=-1, largest=False).indices
    mask = torch.zeros_like(values).scatter_(1, marked, 1.0)
    return torch.stack([values, mask], dim=-1), (values * mask).sum(-1)


class AddingRNN(nn.Module):
    """A one-layer ReLU RNN with a linear readout of its last hidden state.

    Parameters
    ----------
    n_hidden : int
    bias : bool
        Biases in the RNN and the readout (the paper uses them).
    init : {"default", "identity"}
        ``"identity"`` sets the recurrent matrix to the identity (IRNN).

    Examples
    --------
    >>> import torch
    >>> model = AddingRNN(8)
    >>> tuple(model(torch.zeros(4, 6, 2)).shape)
    (4,)
    """

    def __init__(self, n_hidden: int = 128, *, bias: bool = True, init: str = "default"):
        super().__init__()
        if isinstance(n_hidden, bool) or not isinstance(n_hidden, int) or n_hidden < 1:
            raise ValueError(f"n_hidden must be a positive int, got {n_hidden!r}")
        if init not in ("default", "identity"):
            raise ValueError(f"init must be 'default' or 'identity', got {init!r}")
        self.n_hidden = n_hidden
        self.rnn = nn.RNN(2, n_hidden, nonlinearity="relu", bias=bool(bias), batch_first=True)
        self.readout = nn.Linear(n_hidden, 1, bias=bool(bias))
        if init == "identity":
            with torch.no_grad():
                self.rnn.weight_hh_l0.copy_(torch.eye(n_hidden))
                if bias:
                    self.rnn.bias_hh_l0.zero_()
                    self.rnn.bias_ih_l0.zero_()
                nn.init.normal_(self.rnn.weight_ih_l0, std=1.0 / math.sqrt(n_hidden))

    def forward(self, inputs: Tensor) -> Tensor:
        """Prediction, shape ``[batch]``, from inputs of shape ``[batch, seq_len, 2]``."""
        if inputs.ndim != 3 or inputs.shape[-1] != 2:
            raise ValueError(f"inputs must have shape [batch, seq_len, 2], got {tuple(inputs.shape)}")
        states, _ = run_rnn(self.rnn, inputs)
        return self.readout(states[:, -1]).squeeze(-1)
