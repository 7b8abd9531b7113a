"""Where a run trains: the ``--device`` option, one device per worker, and what a record says of it.

``device`` is an execution option, not a hyperparameter: it is not part of a
run's configuration or id, so a sweep started on one device resumes on
another. Every record names the device it was trained on
(:func:`device_record`).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Optional, Union

import torch
from torch import nn

from ..manifolds.base import generator_device

__all__ = ["DEVICE_CHOICES", "resolve_device", "worker_devices", "device_record", "parse_device", "run_rnn",
           "move_to", "sampling_device"]

#: What ``--device`` accepts (besides ``cuda:N``).
DEVICE_CHOICES = ("auto", "cpu", "cuda")
_CUDA_INDEX = re.compile(r"^cuda:(\d+)$")


def parse_device(device: Union[str, torch.device, None]) -> str:
    """``device`` as one of ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (checked, not resolved).

    Raises
    ------
    TypeError
        If ``device`` is not a string or a ``torch.device``.
    ValueError
        If it names anything else.
    """
    if device is None:
        return "cpu"
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu', 'cuda', 'cuda:1' or 'auto'; got "
                        f"{type(device).__name__}")
    text = device.strip().lower()
    if text in DEVICE_CHOICES or _CUDA_INDEX.match(text):
        return text
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}")


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """The ``torch.device`` of ``device``: ``auto`` is ``cuda`` when CUDA is present, else ``cpu``.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')

    Raises
    ------
    ValueError
        If CUDA is asked for and is not available, or ``cuda:N`` names a GPU
        this machine does not have.
    """
    text = parse_device(device)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {text!r}: CUDA is not available on this machine (torch {torch.__version__}, "
                         f"built {'with CUDA ' + torch.version.cuda if torch.version.cuda else 'without CUDA'}); "
                         "use --device cpu or --device auto")
    m = _CUDA_INDEX.match(text)
    if m is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise ValueError(f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return torch.device(text)


def worker_devices(device: Union[str, torch.device, None], workers: int,
                   device_count: Optional[int] = None) -> list[str]:
    """The device of each of ``workers`` local worker processes.

    ``cuda`` (no index) with several GPUs gives the workers ``cuda:0``,
    ``cuda:1``, ... round-robin, so ``--workers N`` on an N-GPU machine trains
    one run per GPU; ``cuda:N`` and ``cpu`` put every worker there.

    Parameters
    ----------
    device : str or torch.device
    workers : int
    device_count : int, optional
        Number of CUDA devices (default: ``torch.cuda.device_count()``).

    Examples
    --------
    >>> worker_devices("cuda", 3, device_count=2)
    ['cuda:0', 'cuda:1', 'cuda:0']
    >>> worker_devices("cpu", 2)
    ['cpu', 'cpu']
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    text = parse_device(device)
    if device_count is None:
        text = str(resolve_device(text))
        device_count = torch.cuda.device_count() if text.startswith("cuda") else 0
    elif text == "auto":
        text = "cuda" if device_count > 0 else "cpu"
    if text == "cuda":
        if device_count < 1:
            raise ValueError("device 'cuda': no CUDA device")
        return [f"cuda:{i % device_count}" for i in range(workers)]
    return [text] * workers


def device_record(device: torch.device) -> dict:
    """What a record says of the device it was trained on.

    ``device`` (``cpu`` or ``cuda:N``), ``device_name`` (the GPU's name, or
    the CPU's architecture), ``cuda_version`` and ``cudnn_version`` (None on
    the CPU or in a CPU build of torch).
    """
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {"device": f"cuda:{index}", "device_name": torch.cuda.get_device_name(index),
                "cuda_version": torch.version.cuda, "cudnn_version": torch.backends.cudnn.version()}
    import platform

    return {"device": str(device), "device_name": platform.machine() or platform.processor() or "cpu",
            "cuda_version": torch.version.cuda, "cudnn_version": None}


#: The start of the warning cuDNN gives when an RNN's weights are not views of one flat buffer.
_COMPACTION_WARNING = "RNN module weights are not part of single contiguous chunk of memory"


def run_rnn(rnn: nn.RNNBase, *args):
    """``rnn(*args)``, without cuDNN's weight-compaction warning for pruned weights.

    A weight pruned with ``torch.nn.utils.prune`` is recomputed as
    ``w_orig * w_mask`` at every forward, so it cannot be a view of the flat
    weight buffer ``flatten_parameters`` builds. cuDNN then copies the
    weights into one buffer for that call (one pass over the weights: 64 MiB
    at Ng = 4096, against the ~3 GFLOP of one recurrent step of a batch of
    200) and runs its fused kernels as usual; gradients flow back to
    ``w_orig``. This is not a fallback to another kernel, so the warning,
    which suggests ``flatten_parameters()`` (impossible for a computed
    weight), is silenced here and only for CUDA inputs.
    """
    if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_cuda:
        return rnn(*args)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_COMPACTION_WARNING)
        return rnn(*args)


def move_to(value, device: torch.device):
    """``value`` with every tensor and module in it on ``device`` (inside tuples, lists, dicts and dataclasses too)."""
    if isinstance(value, (torch.Tensor, nn.Module)):
        return value.to(device)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: move_to(getattr(value, f.name), device)
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(move_to(v, device) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(move_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: move_to(v, device) for k, v in value.items()}
    return value


def sampling_device(generator: Optional[torch.Generator], device=None) -> Optional[torch.device]:
    """Where a task draws a batch: the generator's device (``device``, when given, must agree), else ``device``
    (None when neither is given: torch's default).

    Raises
    ------
    ValueError
        If ``device`` and the generator's device differ
        (:func:`moduli.manifolds.base.generator_device`).
    """
    if generator is None and device is None:
        return None
    return generator_device(generator, device)
