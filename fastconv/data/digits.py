"""The bundled digits set: 1,797 real handwritten 8x8 digits, resized to 32x32 for LeNet-5.

``digits.npz`` holds scikit-learn's ``load_digits()`` images (uint8, 0..16) and labels,
extracted once (the UCI optical-recognition digits set, shipped by scikit-learn under the
BSD-3-Clause licence), so training needs neither a download nor scikit-learn, and the
indices of the fixed split (drawn once: ``np.random.default_rng(1797).permutation(1797)``,
the first 1,437 for training), stored so no NumPy version can change them.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

NUM_CLASSES = 10


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D bilinear resizing with half-pixel centres (PyTorch's
    ``interpolate(mode="bilinear", align_corners=False)``, OpenCV's ``INTER_LINEAR``)."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Resize square images bilinearly (half-pixel centres, edge values clamped).

    Shapes:
        images: (N, H, H)
        returns: (N, size, size), float64
    """
    m = _bilinear_matrix(images.shape[-1], size)
    return m @ images.astype(np.float64) @ m.T


def load_digits(split: str = "train", size: int = 32, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits, one split of the fixed train/test partition.

    Each 8x8 image (values 0..16) is scaled to [0, 1], resized bilinearly to ``size`` x
    ``size`` and normalised with the training split's mean and standard deviation. The
    partition is a permutation with a fixed seed: the first 1,437 images train, the other
    360 test, the same on every machine.

    Shapes:
        returns: x (N, 1, size, size) of ``dtype``; y (N,) int64 labels 0..9
            (N = 1437 for ``"train"``, 360 for ``"test"``)
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    with resources.files(__package__).joinpath("digits.npz").open("rb") as f, np.load(f) as npz:
        images, labels, train, test = (npz[k] for k in ("images", "labels", "train_index", "test_index"))
    x = resize_bilinear(images / 16.0, size)
    mean, std = x[train].mean(), x[train].std()
    idx = train if split == "train" else test
    x = ((x[idx] - mean) / std)[:, None].astype(dtype)
    return x, labels[idx].astype(np.int64)
