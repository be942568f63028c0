"""The fully connected head of a network: ``Flatten`` then ``Linear``, in NumPy (BLAS)."""

from __future__ import annotations

import math

import numpy as np

from .. import backends, shapes
from .. import functional as F
from .init import default_init, generator
from .module import Array, Module, Parameter


class Linear(Module):
    """``y = x @ weight.T + bias``, as ``torch.nn.Linear``; PyTorch's default initialisation
    (``U(-1/sqrt(in_features), 1/sqrt(in_features))``) drawn from ``rng``.

    Shapes:
        x: (*, in_features), same dtype as the weight
        weight: (out_features, in_features)
        bias: (out_features,) when ``bias=True``
        returns: (*, out_features)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32, rng=None):
        super().__init__()
        self.in_features = shapes.check_int("in_features", in_features, 1)
        self.out_features = shapes.check_int("out_features", out_features, 1)
        dtype = shapes.check_float_dtype(dtype)
        self.weight = Parameter(np.empty((out_features, in_features), dtype))
        self.bias = Parameter(np.empty(out_features, dtype)) if bias else None
        default_init(self.weight, self.bias, generator(rng))

    def forward(self, x: Array) -> Array:
        shapes.check_array("x", x, tuple(range(1, 8)), "(*, in_features)")
        shapes.check_same_dtype(weight=self.weight.data, x=x)
        shapes.check_features(type(self).__name__, x, -1, self.in_features)
        self._save(x)
        if backends.device_of(x) == "cuda":
            return self._forward_cuda(x)
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad_output: Array) -> Array:
        (x,) = self._saved()
        shapes.check_layer_grad("Linear", grad_output, (*x.shape[:-1], self.out_features))
        if backends.device_of(x) == "cuda":
            return self._backward_cuda(x, grad_output)
        g2 = grad_output.reshape(-1, self.out_features)
        self.weight.accumulate(g2.T @ x.reshape(-1, self.in_features))
        if self.bias is not None:
            self.bias.accumulate(g2.sum(axis=0))
        return grad_output @ self.weight.data

    # On CUDA arrays a linear layer is a 1x1 convolution over rows: (M, in, 1) -> (M, out, 1).

    def _rows(self, a: Array, features: int) -> Array:
        return a.reshape((math.prod(a.shape[:-1]), features, 1))

    def _forward_cuda(self, x: Array) -> Array:
        w = self.weight.data.reshape((self.out_features, self.in_features, 1))
        bias = None if self.bias is None else self.bias.data
        y = F.conv1d(self._rows(x, self.in_features), w, bias)
        return y.reshape((*x.shape[:-1], self.out_features))

    def _backward_cuda(self, x: Array, grad_output: Array) -> Array:
        g, x3 = self._rows(grad_output, self.out_features), self._rows(x, self.in_features)
        w_shape = (self.out_features, self.in_features, 1)
        self.weight.accumulate(F.conv1d_backward_weight(g, x3, w_shape).reshape(self.weight.shape))
        if self.bias is not None:
            self.bias.accumulate(F.conv1d_backward_bias(g))
        dx = F.conv1d_backward_input(g, self.weight.data.reshape(w_shape), x3.shape)
        return dx.reshape(x.shape)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


class Flatten(Module):
    """Merge axes ``start_dim..end_dim`` into one, as ``torch.nn.Flatten``.

    Shapes:
        x: (N, C, H, W) for example
        returns: (N, C*H*W) with the defaults ``start_dim=1, end_dim=-1``
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = shapes.check_int("start_dim", start_dim)
        self.end_dim = shapes.check_int("end_dim", end_dim)

    def forward(self, x: Array) -> Array:
        shapes.check_array("x", x, tuple(range(1, 8)))
        start, end = (d % x.ndim if -x.ndim <= d < x.ndim else None for d in (self.start_dim, self.end_dim))
        if start is None or end is None or start > end:
            raise ValueError(
                f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) does not fit x of "
                f"shape {tuple(x.shape)}: need valid axes with start_dim <= end_dim"
            )
        y = x.reshape(*x.shape[:start], math.prod(x.shape[start : end + 1]), *x.shape[end + 1 :])
        self._save(x.shape, y.shape)
        return y

    def backward(self, grad_output: Array) -> Array:
        x_shape, y_shape = self._saved()
        shapes.check_layer_grad("Flatten", grad_output, y_shape)
        return grad_output.reshape(x_shape)
