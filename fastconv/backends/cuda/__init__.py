"""The CUDA backend: numba-cuda kernels behind the op names ``functional`` calls.

Same ops and signatures as the CPU backend (destination passing: ``op(out, *inputs,
geometry)``, return nothing), plus ``to_device``/``to_host`` for layers. Arrays stay on the
GPU: every op reads and writes device arrays, and nothing is copied to the host behind the
caller's back. Importing this module needs numba-cuda (``pip install fastconv[cuda]``) but
no GPU; allocating or moving arrays without one raises a ``RuntimeError`` that says so.
Run the tests without a GPU under ``NUMBA_ENABLE_CUDASIM=1``.
"""

from __future__ import annotations

from .conv import conv_backward_bias, conv_backward_input, conv_backward_weight, conv_forward
from .conv_transpose import (
    conv_transpose_backward_input,
    conv_transpose_backward_weight,
    conv_transpose_forward,
)
from .device import empty, is_available, synchronize, to_device, to_host, zeros
from .elementwise import (
    add,
    add_,
    add_bias,
    copy,
    fill,
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
from .norm import (
    batch_norm_apply,
    batch_norm_backward,
    batch_norm_invstd,
    batch_norm_stats,
    batch_norm_update_running,
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

name = "cuda"

__all__ = [
    "add",
    "copy",
    "mul",
    "adam_step",
    "add_",
    "add_bias",
    "avg_pool_backward",
    "avg_pool_forward",
    "batch_norm_apply",
    "batch_norm_backward",
    "batch_norm_invstd",
    "batch_norm_stats",
    "batch_norm_update_running",
    "conv_backward_bias",
    "conv_backward_input",
    "conv_backward_weight",
    "conv_forward",
    "conv_transpose_backward_input",
    "conv_transpose_backward_weight",
    "conv_transpose_forward",
    "empty",
    "fill",
    "is_available",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "lp_pool_backward",
    "lp_pool_forward",
    "max_pool_backward",
    "max_pool_forward",
    "max_unpool_backward",
    "max_unpool_forward",
    "name",
    "relu_backward",
    "relu_forward",
    "sgd_step",
    "sigmoid_backward",
    "sigmoid_forward",
    "synchronize",
    "tanh_backward",
    "tanh_forward",
    "to_device",
    "to_host",
    "zeros",
]
