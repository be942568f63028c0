"""The CPU backend: Numba kernels behind the op names ``functional`` calls.

Every op uses destination passing: ``op(out, *inputs, geometry)``, returns nothing.
"""

from __future__ import annotations

import numpy as np

from .conv import conv_backward_bias, conv_backward_input, conv_backward_weight, conv_forward
from .conv_transpose import (
    conv_transpose_backward_input,
    conv_transpose_backward_weight,
    conv_transpose_forward,
)
from .pool import (
    avg_pool_backward,
    avg_pool_forward,
    lp_pool_backward,
    lp_pool_forward,
    max_pool_backward,
    max_pool_forward,
    max_unpool_backward,
    max_unpool_forward,
)

name = "cpu"


def empty(shape, dtype) -> np.ndarray:
    return np.empty(shape, dtype=dtype)


def zeros(shape, dtype) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def to_device(a) -> np.ndarray:
    """``a`` as a NumPy array: itself if it is one, else copied from the GPU (``Module.to``)."""
    if isinstance(a, np.ndarray | np.generic):
        return np.asarray(a)
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a.get())


__all__ = [
    "conv_backward_bias",
    "conv_backward_input",
    "conv_backward_weight",
    "conv_forward",
    "conv_transpose_backward_input",
    "conv_transpose_backward_weight",
    "conv_transpose_forward",
    "avg_pool_backward",
    "avg_pool_forward",
    "lp_pool_backward",
    "lp_pool_forward",
    "max_pool_backward",
    "max_pool_forward",
    "max_unpool_backward",
    "max_unpool_forward",
    "empty",
    "name",
    "to_device",
    "zeros",
]
