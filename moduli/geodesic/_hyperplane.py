"""Which weights a sparsification acts on, and the projection onto its hyperplane.

Weights are found through :mod:`moduli.targets` (the one module that knows
how torch models store their weights) and named pruning-free
(``"0.weight"``); their slices in the flat vector come from ``_params.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _validate
from .. import targets as _targets
from ._params import flat_slices
from ._projection import magnitude_masks, unit_masks

__all__ = ["target_weights", "target_parameters", "SparseHyperplane", "STRUCTURED"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
STRUCTURED = (None, "units", "neurons", "filters")


def check_model(name: str, model) -> None:
    """Raise ``TypeError`` unless ``model`` is an ``nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")


def _has_weight(module: nn.Module) -> bool:
    return any(attr == "weight" for _, attr, _ in _targets.direct_parameters(module))


def target_weights(model: nn.Module, targets=None, structured: str | None = None) -> dict[str, nn.Module]:
    """Resolve which layers a sparsification acts on.

    Parameters
    ----------
    model : nn.Module
    targets : None, str or list of str, optional
        Module names (as in ``model.named_modules()``).  ``None`` selects every
        ``Linear`` and ``Conv1d/2d/3d`` (the ``weight`` entries of
        :func:`moduli.targets.default_weights`); for structured targets the
        last such layer (the output layer) is left out, and ``"neurons"``
        keeps only ``Linear``, ``"filters"`` only ``Conv`` layers.
    structured : {None, "units", "neurons", "filters"}

    Returns
    -------
    dict of str to nn.Module
        Module name to module, in model order.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> list(target_weights(net)), list(target_weights(net, structured="units"))
    (['0', '2'], ['0'])
    """
    check_model("model", model)
    _validate.choice(structured, "structured", STRUCTURED)
    if targets is None:
        layers = [(name.rpartition(".")[0], module) for name, module, attr in _targets.default_weights(model)
                  if attr == "weight" and isinstance(module, _LAYERS)]
        if structured is not None and layers:
            layers = layers[:-1]
        if structured == "neurons":
            layers = [(n, m) for n, m in layers if isinstance(m, nn.Linear)]
        elif structured == "filters":
            layers = [(n, m) for n, m in layers if not isinstance(m, nn.Linear)]
        out = dict(layers)
    else:
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise TypeError(f"targets must be None, a module name or a list of module names, got {targets!r}")
        mods = dict(model.named_modules())
        out = {}
        for t in targets:
            if t not in mods:
                raise ValueError(f"targets: no module named {t!r} in the model (have {[n for n in mods if n][:10]} ...)")
            if not _has_weight(mods[t]):
                raise ValueError(f"targets: module {t!r} has no weight parameter")
            if structured is not None and not isinstance(mods[t], _LAYERS):
                raise ValueError(f"targets: structured removal needs Linear or Conv layers, {t!r} is {type(mods[t]).__name__}")
            out[t] = mods[t]
    if not out:
        raise ValueError(f"no target layers found for targets={targets!r}, structured={structured!r}")
    return out


def target_parameters(model: nn.Module, targets=None, structured: str | None = None) -> list[str]:
    """Pruning-free names of the weights a sparsification zeroes.

    Unstructured (``structured=None``) with ``targets=None``: every weight
    matrix of :func:`moduli.targets.default_weights` -- Linear and Conv
    weights, and the input and recurrent weights (``weight_ih_l*``,
    ``weight_hh_l*``) of RNN/LSTM/GRU layers and cells -- so that
    :func:`moduli.targets.sparsity` of the result is the requested sparsity.
    ``targets`` may name modules (all their weight matrices) or parameters
    (``"rnn.weight_hh_l0"``).  Structured: the ``weight`` of each layer of
    :func:`target_weights`.

    Examples
    --------
    >>> import torch
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.rnn, self.fc = torch.nn.RNN(3, 4), torch.nn.Linear(4, 2)
    >>> target_parameters(Net())
    ['rnn.weight_ih_l0', 'rnn.weight_hh_l0', 'fc.weight']
    >>> target_parameters(Net(), ["rnn.weight_hh_l0", "fc"])
    ['rnn.weight_hh_l0', 'fc.weight']
    """
    check_model("model", model)
    _validate.choice(structured, "structured", STRUCTURED)
    matrices = [name for name, _, _ in _targets.default_weights(model)]
    if structured is not None:
        return [f"{n}.weight" if n else "weight" for n in target_weights(model, targets, structured)]
    if targets is None:
        if not matrices:
            raise ValueError(f"no weight matrices to sparsify in {type(model).__name__}")
        return matrices
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
        raise TypeError(f"targets must be None, a module or parameter name or a list of them, got {targets!r}")
    mods = dict(model.named_modules())
    params = {e.name: e for e in _targets.weight_entries(model)}
    out: list[str] = []
    for t in targets:
        if t in mods:
            prefix = f"{t}." if t else ""
            found = [n for n in matrices if n.startswith(prefix) and "." not in n[len(prefix):]]
            if not found:
                found = [f"{prefix}weight"] if _has_weight(mods[t]) else []
            if not found:
                raise ValueError(f"targets: module {t!r} has no weight parameter")
        elif t in params:
            found = [t]
        else:
            raise ValueError(f"targets: no module or parameter named {t!r} in the model "
                             f"(have modules {[n for n in mods if n][:10]} ...)")
        out += [n for n in found if n not in out]
    return out


class SparseHyperplane:
    """The Euclidean projection of a flat weight vector onto a ``p``-sparse hyperplane.

    Parameters
    ----------
    model : nn.Module
        Defines the flat vector (``_params.walk_parameters`` order).
    target_sparsity : float
        In ``[0, 1)``: fraction of zeros over all target weights, or of
        output units removed per target layer when ``structured``.
    targets, structured
        As in :func:`target_weights`.

    Attributes
    ----------
    weight_names : list of str
        Pruning-free names of the target weights.
    masks : dict of str to Tensor
        Keep-masks of the latest projection (element masks, or unit masks of
        shape ``[out_units]`` when structured).

    Raises
    ------
    ValueError
        If a target weight is pruned with ``torch.nn.utils.prune`` (the walk
        would move ``weight_orig`` without its mask; make the mask permanent
        with :func:`moduli.targets.strip_pruning` first) or is not a trainable
        floating-point parameter (the message names every such weight: the
        walk cannot move them, so the model would miss the sparsity).
    """

    def __init__(self, model: nn.Module, target_sparsity: float, targets=None, structured: str | None = None):
        self.p = _validate.fraction(target_sparsity, "target_sparsity")
        self.structured = structured
        names = target_parameters(model, targets, structured)
        self.offsets = flat_slices(model)
        self.weight_names, self.bias_of = [], {}
        frozen = []
        for wn in names:
            module, attr = _targets.resolve(model, wn)
            if _targets.is_pruned(module, attr):
                raise ValueError(f"targets: {wn!r} is pruned (torch.nn.utils.prune); make its mask permanent "
                                 "with moduli.targets.strip_pruning before sparsifying")
            if wn not in self.offsets:
                frozen.append(wn)
                continue
            self.weight_names.append(wn)
            n = wn.rpartition(".")[0]
            bn = f"{n}.bias" if n else "bias"
            if structured is not None and getattr(module, "bias", None) is not None and bn in self.offsets:
                self.bias_of[wn] = bn
        if frozen:
            # the walk only moves trainable parameters: these would stay dense and the
            # model would miss the requested sparsity
            raise ValueError(f"targets: {', '.join(map(repr, frozen))} cannot be sparsified: not a trainable "
                             "floating-point parameter (requires_grad=False?); the model would miss "
                             f"target_sparsity={self.p}; make it trainable or leave it out with targets=[...]")
        self.masks: dict[str, Tensor] = {}

    def __call__(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """``(P(w), pruned)``: the projection and the boolean mask of the zeroed coordinates."""
        offsets, bias_of = self.offsets, self.bias_of
        ws = {n: w[offsets[n][0] : offsets[n][1]].view(offsets[n][2]) for n in self.weight_names}
        out = w.clone()
        if self.structured is None:
            masks = magnitude_masks(ws, self.p)
            for n in self.weight_names:
                a, b, _ = offsets[n]
                out[a:b] = w[a:b] * masks[n].reshape(-1).to(w.dtype)
        else:
            masks = unit_masks(ws, self.p)
            for n in self.weight_names:
                a, b, shape = offsets[n]
                m = masks[n].to(w.dtype)
                out[a:b] = (w[a:b].view(shape) * m.view(-1, *([1] * (len(shape) - 1)))).reshape(-1)
                if n in bias_of:
                    a2, b2, _ = offsets[bias_of[n]]
                    out[a2:b2] = w[a2:b2] * m
        self.masks = masks
        pruned = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
        for n in self.weight_names:
            a, b, shape = offsets[n]
            m = masks[n]
            if m.shape != shape:
                m = m.view(-1, *([1] * (len(shape) - 1))).expand(shape)
                if n in bias_of:
                    a2, b2, _ = offsets[bias_of[n]]
                    pruned[a2:b2] = ~masks[n]
            pruned[a:b] = ~m.reshape(-1)
        return out, pruned
