"""Elementwise kernels the layers need: fill, add (in place and out of place), copy,
product, channel bias, and the activations (ReLU, LeakyReLU, Sigmoid, Tanh) forward and
backward.

Each works on the flat view of contiguous arrays, one grid-stride loop with int64
indices. Values are written through the array's own dtype (no float64 temporaries:
constants such as 1 and the slope arrive typed as the array's dtype).
"""

from __future__ import annotations

import math

from numba import cuda

from .device import grid_stride, launch_1d


def flat(a):
    """The 1-D view of a contiguous CUDA array."""
    return a.reshape((a.size,))


@cuda.jit
def _fill_kernel(out, value):
    # out (n,) <- value
    i, step = grid_stride()
    while i < out.shape[0]:
        out[i] = value
        i += step


@cuda.jit
def _add_kernel(out, a):
    # out (n,) += a (n,)
    i, step = grid_stride()
    while i < out.shape[0]:
        out[i] += a[i]
        i += step


@cuda.jit
def _sum_kernel(out, a, b):
    # out (n,) <- a (n,) + b (n,)
    i, step = grid_stride()
    while i < out.shape[0]:
        out[i] = a[i] + b[i]
        i += step


@cuda.jit
def _mul_kernel(out, a, b):
    # out (n,) <- a (n,) * b (n,)
    i, step = grid_stride()
    while i < out.shape[0]:
        out[i] = a[i] * b[i]
        i += step


@cuda.jit
def _add_bias_kernel(out, bias):
    # out (N, C, P) += bias (C,) along C
    i, step = grid_stride()
    C, P = out.shape[1], out.shape[2]
    while i < out.shape[0] * C * P:
        n, c, p = i // (C * P), (i // P) % C, i % P
        out[n, c, p] += bias[c]
        i += step


@cuda.jit
def _relu_forward_kernel(out, x):
    # out (n,) <- max(x (n,), 0), NaN kept
    i, step = grid_stride()
    while i < out.shape[0]:
        v = x[i]
        if v <= 0:
            out[i] = 0
        else:
            out[i] = v
        i += step


@cuda.jit
def _relu_backward_kernel(dx, dy, x):
    # dx (n,) <- dy (n,) where x (n,) > 0 (or NaN), else 0
    i, step = grid_stride()
    while i < dx.shape[0]:
        if x[i] <= 0:
            dx[i] = 0
        else:
            dx[i] = dy[i]
        i += step


def fill(out, value) -> None:
    """out[...] = value."""
    o = flat(out)
    launch_1d(_fill_kernel, o.size, o, out.dtype.type(value))


def add_(out, a) -> None:
    """out += a (same shape)."""
    o = flat(out)
    launch_1d(_add_kernel, o.size, o, flat(a))


def copy(out, a) -> None:
    """out = a (same shape), a device-to-device copy."""
    out.copy_to_device(a)


def add(out, a, b) -> None:
    """out = a + b (same shapes)."""
    o = flat(out)
    launch_1d(_sum_kernel, o.size, o, flat(a), flat(b))


def mul(out, a, b) -> None:
    """out = a * b (same shapes)."""
    o = flat(out)
    launch_1d(_mul_kernel, o.size, o, flat(a), flat(b))


def add_bias(out, bias) -> None:
    """out (N, C, *spatial) += bias (C,) broadcast over N and the spatial axes."""
    o = out.reshape((out.shape[0], out.shape[1], out.size // max(1, out.shape[0] * out.shape[1])))
    launch_1d(_add_bias_kernel, out.size, o, bias)


def relu_forward(out, x) -> None:
    """out = max(x, 0) (same shape; NaN propagates as in PyTorch)."""
    o = flat(out)
    launch_1d(_relu_forward_kernel, o.size, o, flat(x))


def relu_backward(dx, dy, x) -> None:
    """dx = dy where x > 0, else 0 (same shapes)."""
    o = flat(dx)
    launch_1d(_relu_backward_kernel, o.size, o, flat(dy), flat(x))


@cuda.jit
def _leaky_relu_forward_kernel(out, x, slope):
    # out (n,) <- x (n,) where x > 0, else slope * x
    i, step = grid_stride()
    while i < out.shape[0]:
        v = x[i]
        out[i] = v if v > 0 else v * slope
        i += step


@cuda.jit
def _leaky_relu_backward_kernel(dx, dy, x, slope):
    # dx (n,) <- dy (n,) where x (n,) > 0, else slope * dy
    i, step = grid_stride()
    while i < dx.shape[0]:
        dx[i] = dy[i] if x[i] > 0 else dy[i] * slope
        i += step


@cuda.jit
def _sigmoid_forward_kernel(out, x, one):
    # out (n,) <- 1 / (1 + exp(-x)); exp of a non-positive number only, so no overflow
    i, step = grid_stride()
    while i < out.shape[0]:
        v = x[i]
        if v >= 0:
            out[i] = one / (one + math.exp(-v))
        else:
            e = math.exp(v)
            out[i] = e / (one + e)
        i += step


@cuda.jit
def _sigmoid_backward_kernel(dx, dy, y, one):
    # dx (n,) <- dy * y * (1 - y), y (n,) the forward output
    i, step = grid_stride()
    while i < dx.shape[0]:
        dx[i] = dy[i] * y[i] * (one - y[i])
        i += step


@cuda.jit
def _tanh_forward_kernel(out, x):
    # out (n,) <- tanh(x (n,))
    i, step = grid_stride()
    while i < out.shape[0]:
        out[i] = math.tanh(x[i])
        i += step


@cuda.jit
def _tanh_backward_kernel(dx, dy, y, one):
    # dx (n,) <- dy * (1 - y * y), y (n,) the forward output
    i, step = grid_stride()
    while i < dx.shape[0]:
        dx[i] = dy[i] * (one - y[i] * y[i])
        i += step


def leaky_relu_forward(out, x, negative_slope: float) -> None:
    """out = x where x > 0, else negative_slope * x."""
    o = flat(out)
    launch_1d(_leaky_relu_forward_kernel, o.size, o, flat(x), x.dtype.type(negative_slope))


def leaky_relu_backward(dx, dy, x, negative_slope: float) -> None:
    """dx = dy where x > 0, else negative_slope * dy."""
    o = flat(dx)
    launch_1d(_leaky_relu_backward_kernel, o.size, o, flat(dy), flat(x), dy.dtype.type(negative_slope))


def sigmoid_forward(out, x) -> None:
    """out = 1 / (1 + exp(-x)), without overflow for large |x|."""
    o = flat(out)
    launch_1d(_sigmoid_forward_kernel, o.size, o, flat(x), x.dtype.type(1))


def sigmoid_backward(dx, dy, y) -> None:
    """dx = dy * y * (1 - y), y the forward output."""
    o = flat(dx)
    launch_1d(_sigmoid_backward_kernel, o.size, o, flat(dy), flat(y), dx.dtype.type(1))


def tanh_forward(out, x) -> None:
    """out = tanh(x)."""
    o = flat(out)
    launch_1d(_tanh_forward_kernel, o.size, o, flat(x))


def tanh_backward(dx, dy, y) -> None:
    """dx = dy * (1 - y * y), y the forward output."""
    o = flat(dx)
    launch_1d(_tanh_backward_kernel, o.size, o, flat(dy), flat(y), dx.dtype.type(1))
