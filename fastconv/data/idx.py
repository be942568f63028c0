"""A reader for IDX files (the MNIST format), for data sets a user already has.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values, big-endian, row-major.
Files ending in ``.gz`` are decompressed on the fly.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file into a NumPy array of its stored shape and type (native byte order).

    Shapes:
        returns: (d0, d1, ...) as the header says, e.g. (60000, 28, 28) uint8 for MNIST images
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise ValueError(f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_TYPES[raw[2]])
    need = header + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(raw) != need:
        raise ValueError(f"{path}: IDX header says shape {shape} ({need} bytes), file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: str, name: str) -> str:
    for candidate in (name, name + ".gz", name.replace("-idx", ".idx")):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{directory}: no {name} (or {name}.gz) found; expected MNIST file names")


def load_mnist(
    directory: str | os.PathLike, split: str = "train", size: int = 32, dtype=np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """An MNIST-format data set from a folder holding the four standard IDX files.

    Images are scaled to [0, 1], zero-padded equally on all sides to ``size`` x ``size``
    (28 -> 32, as LeNet-5 was fed) and normalised with MNIST's customary pixel mean and
    deviation (0.1307, 0.3081), the same constants for every split.

    Shapes:
        returns: x (N, 1, size, size) of ``dtype``; y (N,) int64
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"dataset folder {directory!r} does not exist")
    images = read_idx(_find(directory, MNIST_FILES[split][0]))
    labels = read_idx(_find(directory, MNIST_FILES[split][1]))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{directory}: images {images.shape} and labels {labels.shape} do not match")
    h, w = images.shape[1:]
    if h > size or w > size:
        raise ValueError(f"size={size} is smaller than the images ({h}x{w})")
    top, left = (size - h) // 2, (size - w) // 2
    x = np.zeros((len(images), 1, size, size))
    x[:, 0, top : top + h, left : left + w] = images / 255.0
    x = (x - MNIST_MEAN) / MNIST_STD
    return x.astype(dtype), labels.astype(np.int64)
