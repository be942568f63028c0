"""Augmentation of image batches: random crop with padding, horizontal flip, translation.

Each function takes a batch and a ``numpy.random.Generator`` (so a seed fixes the result),
draws one choice per image, and returns a new array; the input is never modified.
"""

from __future__ import annotations

import numpy as np


def _check_batch(x: np.ndarray) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"x must be a NumPy array (N, C, H, W), got {getattr(x, 'shape', type(x))}")


def random_crop(
    x: np.ndarray, size: int | tuple[int, int], rng: np.random.Generator, padding: int = 0
) -> np.ndarray:
    """Zero-pad each image by ``padding`` on every side, then crop a random ``size`` window
    (``torchvision.transforms.RandomCrop``).

    Shapes:
        x: (N, C, H, W)
        returns: (N, C, size_h, size_w)
    """
    _check_batch(x)
    sh, sw = (size, size) if isinstance(size, int) else size
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = x.shape
    if not (0 < sh <= h + 2 * padding and 0 < sw <= w + 2 * padding):
        raise ValueError(f"size={(sh, sw)} must fit in the padded image {(h + 2 * padding, w + 2 * padding)}")
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    top = rng.integers(0, h + 2 * padding - sh + 1, size=n)
    left = rng.integers(0, w + 2 * padding - sw + 1, size=n)
    out = np.empty((n, c, sh, sw), x.dtype)
    for i in range(n):
        out[i] = padded[i, :, top[i] : top[i] + sh, left[i] : left[i] + sw]
    return out


def random_horizontal_flip(x: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right with probability ``p``.

    Shapes:
        x: (N, C, H, W)
        returns: (N, C, H, W)
    """
    _check_batch(x)
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    flip = rng.random(len(x)) < p
    out = x.copy()
    out[flip] = x[flip, :, :, ::-1]
    return out


def random_translate(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each image by a random whole number of pixels in [-max_shift, max_shift] along
    each axis; uncovered pixels take the image's minimum (its background after normalising).

    Shapes:
        x: (N, C, H, W)
        returns: (N, C, H, W)
    """
    _check_batch(x)
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    n, c, h, w = x.shape
    if x.size == 0:
        return x.copy()
    out = np.empty_like(x)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    for i, (dy, dx) in enumerate(shifts):
        out[i] = x[i].min()
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[i, :, yd, xd] = x[i, :, ys, xs]
    return out
