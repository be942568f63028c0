"""Elementwise activations and softmax: ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``
(backend ops, so NumPy or CUDA arrays), ``Softmax`` (NumPy). Each keeps its output (or
input) for backward; dtype is preserved."""

from __future__ import annotations

import numpy as np

from .. import backends, shapes
from .module import Array, Module

_ANY = tuple(range(8))


class _Elementwise(Module):
    """An activation ``y = f(x)`` computed by the backend ops ``{op}_forward(y, x, *args)``
    and ``{op}_backward(dx, dy, kept, *args)``, so it runs on NumPy and CUDA arrays alike.

    Shapes:
        x: any shape, float32 or float64
        returns: the shape and dtype of x
    """

    _op = ""  # backend op name prefix
    _keeps_output = False  # backward reads y (True) or x (False)

    def _args(self) -> tuple:  # extra scalars of the backend ops
        return ()

    def forward(self, x: Array) -> Array:
        shapes.check_array("x", x, _ANY)
        backend = backends.backend_for(x=x)
        y = backend.empty(x.shape, x.dtype)
        getattr(backend, f"{self._op}_forward")(y, x, *self._args())
        self._save(y if self._keeps_output else x)
        return y

    def backward(self, grad_output: Array) -> Array:
        (kept,) = self._saved()
        shapes.check_layer_grad(type(self).__name__, grad_output, kept.shape)
        backend = backends.backend_for(grad_output=grad_output, x=kept)
        dx = backend.empty(kept.shape, np.result_type(grad_output.dtype, kept.dtype))
        getattr(backend, f"{self._op}_backward")(dx, grad_output, kept, *self._args())
        return dx


class ReLU(_Elementwise):
    __doc__ = """``max(x, 0)``; the gradient at 0 is 0, as in PyTorch.""" + _Elementwise.__doc__
    _op = "relu"


class LeakyReLU(_Elementwise):
    __doc__ = """``x`` for ``x > 0``, else ``negative_slope * x``.""" + _Elementwise.__doc__
    _op = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = shapes.check_real("negative_slope", negative_slope)

    def _args(self) -> tuple:
        return (self.negative_slope,)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Elementwise):
    __doc__ = """``1 / (1 + exp(-x))``, without overflow for large ``|x|``.""" + _Elementwise.__doc__
    _op = "sigmoid"
    _keeps_output = True


class Tanh(_Elementwise):
    __doc__ = """``tanh(x)``.""" + _Elementwise.__doc__
    _op = "tanh"
    _keeps_output = True


class Softmax(Module):
    """``exp(x) / sum(exp(x))`` along ``dim``, computed after subtracting the maximum.

    Shapes:
        x: any shape with axis ``dim``
        returns: the shape and dtype of x; entries along ``dim`` sum to 1
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = shapes.check_int("dim", dim)

    def forward(self, x: Array) -> Array:
        shapes.check_array("x", x, tuple(range(1, 8)))
        shapes.check_host("Softmax", x=x)
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"Softmax(dim={self.dim}) does not fit x of shape {tuple(x.shape)}")
        e = np.exp(x - x.max(axis=self.dim, keepdims=True))
        y = e / e.sum(axis=self.dim, keepdims=True)
        self._save(y)
        return y

    def backward(self, grad_output: Array) -> Array:
        (y,) = self._saved()
        shapes.check_layer_grad("Softmax", grad_output, y.shape)
        return y * (grad_output - (grad_output * y).sum(axis=self.dim, keepdims=True))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
