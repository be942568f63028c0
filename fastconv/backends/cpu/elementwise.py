"""Elementwise ops in NumPy (copy, sum, product, activations), under the CUDA backend's op
names and signatures.

Destination passing as every op: ``op(out, *inputs, scalars)``, return nothing. Backward
ops read what the layer kept: the input for ReLU and LeakyReLU, the output for Tanh and
Sigmoid. Any strides are accepted; dtype follows ``out``.
"""

from __future__ import annotations

import numpy as np


def copy(out, a) -> None:
    """out = a (same shape)."""
    out[...] = a


def add(out, a, b) -> None:
    """out = a + b (same shapes)."""
    np.add(a, b, out=out)


def mul(out, a, b) -> None:
    """out = a * b (same shapes)."""
    np.multiply(a, b, out=out)


def relu_forward(out, x) -> None:
    """out = max(x, 0) (NaN propagates)."""
    np.maximum(x, 0, out=out)


def relu_backward(dx, dy, x) -> None:
    """dx = dy where x > 0, else 0."""
    dx[...] = np.where(x > 0, dy, 0)


def leaky_relu_forward(out, x, negative_slope: float) -> None:
    """out = x where x > 0, else negative_slope * x."""
    out[...] = np.where(x > 0, x, x * negative_slope)


def leaky_relu_backward(dx, dy, x, negative_slope: float) -> None:
    """dx = dy where x > 0, else negative_slope * dy."""
    dx[...] = np.where(x > 0, dy, dy * negative_slope)


def sigmoid_forward(out, x) -> None:
    """out = 1 / (1 + exp(-x)), as exp(-log(1 + exp(-x))) so large |x| cannot overflow."""
    out[...] = np.exp(-np.logaddexp(0, -x))


def sigmoid_backward(dx, dy, y) -> None:
    """dx = dy * y * (1 - y), y the forward output."""
    dx[...] = dy * y * (1 - y)


def tanh_forward(out, x) -> None:
    """out = tanh(x)."""
    np.tanh(x, out=out)


def tanh_backward(dx, dy, y) -> None:
    """dx = dy * (1 - y * y), y the forward output."""
    dx[...] = dy * (1 - y * y)
