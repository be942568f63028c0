"""The CPU backend: Numba kernels behind the op names ``functional`` calls.

Every op uses destination passing: ``op(out, *inputs, geometry)``, returns nothing. Each
op that runs a parallel kernel is wrapped by ``threads.guarded`` (one lock for all callers;
a clear error in an unsafe forked child), applied once at the end of this module.
"""

from __future__ import annotations

import numpy as np

from . import kernel_cache  # noqa: F401  (first: it stamps the cache of every kernel decorated after it)
from .conv import conv_backward_bias, conv_backward_input, conv_backward_weight, conv_forward
from .conv_transpose import (
    conv_transpose_backward_input,
    conv_transpose_backward_weight,
    conv_transpose_forward,
)
from .elementwise import (
    add,
    copy,
    leaky_relu_backward,
    leaky_relu_forward,
    mul,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from .optim import adam_step, sgd_step
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
from .startup import defer_blas_check
from .threads import guarded

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
    "add",
    "copy",
    "mul",
    "adam_step",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "relu_backward",
    "relu_forward",
    "sgd_step",
    "sigmoid_backward",
    "sigmoid_forward",
    "tanh_backward",
    "tanh_forward",
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

for _op in __all__:
    if _op not in ("empty", "zeros", "name", "to_device"):
        globals()[_op] = guarded(globals()[_op])
del _op

defer_blas_check()  # no kernel has loaded yet: Numba's SciPy BLAS check waits (startup.py)
