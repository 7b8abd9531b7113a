"""Loaders for IDX files (MNIST, Fashion-MNIST) from a local directory.

Nothing is downloaded: point :func:`load_mnist` at a directory that holds the
four standard files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, optionally gzipped).
Fashion-MNIST ships with the same file names.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_idx", "load_mnist"]

# IDX type codes -> big-endian numpy dtypes
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_SPLITS = {"train": "train", "test": "t10k"}


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``).

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    numpy.ndarray, shape=[d_0, ..., d_{k-1}]
        The array with the dimensions and dtype (native byte order) stored in
        the header.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the header is malformed or the payload size does not match it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: bad IDX magic {raw[:4].hex()} (first two bytes must be zero)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dt = _IDX_DTYPES[code]
    expected = int(np.prod(dims)) * dt.itemsize
    if len(raw) - head != expected:
        raise ValueError(f"{path}: payload has {len(raw) - head} bytes, header {dims} of {dt} needs {expected}")
    arr = np.frombuffer(raw, dtype=dt, offset=head).reshape(dims)
    return arr.astype(dt.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"no {stem}[.gz] in {root}")


def load_mnist(
    root: str | os.PathLike,
    split: str = "train",
    *,
    flatten: bool = True,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Load MNIST or Fashion-MNIST images and labels from local IDX files.

    Parameters
    ----------
    root : str or PathLike
        Directory with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.
    split : {"train", "test"}
    flatten : bool, optional
        Return images as ``[n, rows*cols]`` (default) or ``[n, 1, rows, cols]``.
    dtype : torch.dtype, optional
        Floating dtype of the images, scaled to ``[0, 1]``.

    Returns
    -------
    images : Tensor, shape=[n, rows*cols] or [n, 1, rows, cols]
    labels : Tensor, shape=[n], dtype=int64
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {tuple(_SPLITS)}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root is not a directory: {root}")
    prefix = _SPLITS[split]
    images = load_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
    labels = load_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3:
        raise ValueError(f"images must be 3-D [n, rows, cols], got shape {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels of shape {labels.shape} do not match {images.shape[0]} images")
    x = torch.from_numpy(images.astype(np.float64) / 255.0).to(dtype)
    x = x.reshape(x.shape[0], -1) if flatten else x.unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))
