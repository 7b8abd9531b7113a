"""The protocol between :mod:`moduli` and a neural-network framework.

The math of a prior (inhibitors, embeddings, coefficient matrices, Eq. 6)
lives in :mod:`moduli.regularizers` and only sees tensors. Everything that
knows a framework lives behind :class:`Backend`:

1. **finding targets** -- which weights of a model a target spec selects and
   how their rows and columns map to neurons (:class:`TargetLayout`);
2. **reading weights** -- the effective weight a layer computes with, also
   after pruning has reparametrized it;
3. **building a prior set** -- the stateful object holding embeddings and
   coefficients, with ``penalty()``, ``terms``, ``parameters()``,
   ``freeze()``, ``add_penalty_grad_(lam)``, ``state_dict()`` and
   ``load_state_dict()`` (see :class:`PriorSetProtocol`).

A second backend (JAX/flax, say) implements the four methods of
:class:`Backend`, registers itself with :func:`register_backend`, and runs the
contract suite ``tests/test_backend_contract.py`` by adding a case to its
``CASES`` list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Protocol, Sequence, Union, runtime_checkable

__all__ = [
    "TargetLayout", "Backend", "PriorSetProtocol", "TargetSpec", "KINDS", "register_backend",
    "get_backend", "registered_backends",
]

KINDS = ("recurrent", "linear", "conv")

#: What ``attach(..., targets=...)`` accepts: a kind, a list of kinds and/or
#: parameter names, or a predicate ``(name, weight) -> bool``.
TargetSpec = Union[str, Sequence[str], Callable[[str, Any], bool]]


@dataclass(frozen=True)
class TargetLayout:
    """How one weight's entries map to pairs of neurons.

    A weight of shape ``(blocks * n_out, n_in // groups, *kernel)`` connects
    ``n_in`` input neurons (columns) to ``n_out`` output neurons (rows); the
    ``blocks`` gate blocks of an LSTM/GRU recurrent matrix all connect the
    same neurons. Neurons are named by *groups*: two weights with the same
    ``out_group`` share one embedding of their rows.

    Attributes
    ----------
    name : str
        The parameter's name in the model, as before any pruning
        (``"rnn.weight_hh_l0"``, never ``"rnn.weight_hh_l0_orig"``).
    kind : {"recurrent", "linear", "conv"}
    shape : tuple of int
        The weight's shape.
    n_out, n_in : int
        Number of output (row) and input (column) neurons.
    out_group, in_group : str
        Embedding keys; equal for a square recurrent matrix.
    blocks : int
        Gate blocks stacked along the rows (4 for LSTM, 3 for GRU, else 1).
    groups : int
        Convolution groups: output channel ``o`` sees input channels
        ``(o // (n_out // groups)) * (n_in // groups) + j``.
    slice_norm : bool
        Penalize the L2 norm of each kernel slice ``T[o, i]`` (convolutions).
    """

    name: str
    kind: str
    shape: tuple
    n_out: int
    n_in: int
    out_group: str
    in_group: str
    blocks: int = 1
    groups: int = 1
    slice_norm: bool = False

    @property
    def shared(self) -> bool:
        """Rows and columns are the same neurons (one embedding)."""
        return self.out_group == self.in_group

    @property
    def coefficient_shape(self) -> tuple:
        """Shape of :meth:`coefficients` of a term: the weight's shape for
        matrices, ``(out_channels, in_channels // groups)`` for convolutions."""
        return (self.blocks * self.n_out, self.n_in // self.groups)


@runtime_checkable
class PriorSetProtocol(Protocol):
    """What ``attach`` returns, whatever the backend."""

    terms: dict

    def penalty(self) -> Any: ...

    def parameters(self) -> Iterable[Any]: ...

    def freeze(self) -> "PriorSetProtocol": ...

    def unfreeze(self) -> "PriorSetProtocol": ...

    def add_penalty_grad_(self, lam: float) -> Any: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


class Backend:
    """A framework adapter. Subclass and implement the four methods."""

    #: Short name ("torch").
    name: str = "abstract"

    def accepts(self, model: Any) -> bool:
        """Whether ``model`` belongs to this framework."""
        raise NotImplementedError

    def find_targets(self, model: Any, targets: TargetSpec) -> list[TargetLayout]:
        """Resolve a target spec into layouts, in the model's parameter order.

        Must raise ``ValueError`` when nothing matches, a name does not exist,
        or a selected weight has no neuron layout (a bias, say).
        """
        raise NotImplementedError

    def read_weight(self, model: Any, name: str) -> Any:
        """The effective weight called ``name`` (its layout's name), as the
        layer computes with it -- ``orig * mask`` after pruning."""
        raise NotImplementedError

    def build(self, model: Any, prior: Any, layouts: list[TargetLayout], *,
              points: Optional[dict] = None, generator: Any = None) -> PriorSetProtocol:
        """Create the prior set: draw (or take) embeddings, compute coefficients."""
        raise NotImplementedError


_REGISTRY: list[Backend] = []


def register_backend(backend: Backend, *, first: bool = False) -> Backend:
    """Add a backend; ``attach`` uses the first one whose ``accepts(model)`` is true."""
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be a moduli.backends.Backend; got {type(backend).__name__}")
    if any(b.name == backend.name for b in _REGISTRY):
        raise ValueError(f"a backend named {backend.name!r} is already registered")
    if first:
        _REGISTRY.insert(0, backend)
    else:
        _REGISTRY.append(backend)
    return backend


def registered_backends() -> list[Backend]:
    """The registered backends, in lookup order."""
    return list(_REGISTRY)


def get_backend(model: Any) -> Backend:
    """The backend for ``model``; ``TypeError`` if none accepts it."""
    for backend in _REGISTRY:
        if backend.accepts(model):
            return backend
    names = ", ".join(b.name for b in _REGISTRY) or "none"
    raise TypeError(
        f"no moduli backend accepts a model of type {type(model).__name__} (registered: {names}); "
        "pass a torch.nn.Module"
    )
