"""Make pruning permanent: plain parameters with exact zeros, loadable into a fresh model."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .. import targets as tg

__all__ = ["finalize", "keep_zeros"]


def finalize(model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None) -> dict[str, Tensor]:
    """Make the pruning masks of ``model`` permanent, in place; return the masks.

    Every pruned weight ``w`` (stored as ``w_orig`` and ``w_mask`` by
    ``torch.nn.utils.prune``) becomes a plain parameter ``w`` holding
    ``orig * mask``: the pruned entries are exact zeros. The parameter is the
    former ``w_orig`` object, so an optimizer built before keeps updating it.
    The model computes the same function, and its ``state_dict`` has the keys
    of an unpruned model: it loads into a fresh instance of the model's class
    (a plain ``nn.RNN``, ``nn.LSTM``, ``nn.Linear``, ...).

    Parameters
    ----------
    model : nn.Module
    optimizer : torch.optim.Optimizer, optional
        Keep the pruned entries at zero under this optimizer
        (:func:`keep_zeros`).

    Returns
    -------
    dict of str to Tensor
        ``{name: mask}`` of the weights that were pruned (empty if none);
        :func:`moduli.pruning.restore_masks` reinstalls them.

    Notes
    -----
    After ``finalize`` nothing holds the zeros in place: a further optimizer
    step moves pruned entries off zero (their gradient is no longer masked,
    Adam's moment estimates and weight decay act on them). Pass the optimizer
    (or call :func:`keep_zeros`) to fine-tune a finalized model and keep its
    sparsity; or finalize only after the last step.

    Examples
    --------
    >>> import torch
    >>> from moduli import pruning
    >>> layer = torch.nn.Linear(4, 4)
    >>> _ = pruning.GradualMagnitudePruning(layer, target_sparsity=0.5, epochs=1).step()
    >>> sorted(pruning.finalize(layer))
    ['weight']
    >>> sorted(layer.state_dict())
    ['bias', 'weight']
    >>> int((layer.weight == 0).sum())
    8
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    saved = tg.finalize_pruning(model)
    if optimizer is not None:
        keep_zeros(optimizer, model, saved)
    return saved


def keep_zeros(optimizer: torch.optim.Optimizer, model: nn.Module, saved: dict[str, Tensor]):
    """Re-zero the pruned entries of ``model`` after every step of ``optimizer``.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    model : nn.Module
        A finalized model (plain parameters).
    saved : dict of str to Tensor
        The masks :func:`finalize` returned.

    Returns
    -------
    torch.utils.hooks.RemovableHandle
        ``handle.remove()`` stops it.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer; got {type(optimizer).__name__}")
    pairs = []
    for name, mask in saved.items():
        param = tg.stored_parameter(model, name)
        if tuple(mask.shape) != tuple(param.shape):
            raise ValueError(f"saved mask of {name} has shape {tuple(mask.shape)}; the weight has {tuple(param.shape)}")
        pairs.append((param, mask.to(device=param.device, dtype=param.dtype)))

    def _rezero(opt, args, kwargs):
        with torch.no_grad():
            for param, mask in pairs:
                param.mul_(mask)

    return optimizer.register_step_post_hook(_rezero)
