"""Pooling layers over ``fastconv.functional``, for 1, 2 and 3 spatial axes: ``MaxPool``,
``AvgPool``, ``LPPool`` (1d/2d), ``AdaptiveAvgPool``, ``AdaptiveMaxPool`` and ``MaxUnpool``.

Max pooling always computes its indices (backward scatters through them); with
``return_indices=True`` the forward returns ``(y, indices)`` as PyTorch does, and backward
still takes the gradient of ``y`` only.
"""

from __future__ import annotations

from .. import functional as F
from .module import Array, Module

_SHAPES = """
    Shapes:
        x: (N, C, *spatial) with {d} spatial axes, or unbatched (C, *spatial)
        returns: (N, C, *spatial_out), same dtype as x
"""


class _MaxPool(Module):
    _d = 0

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        dilation=1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, x: Array):
        y, indices = getattr(F, f"max_pool{self._d}d")(
            x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, return_indices=True
        )
        self._save(indices, x.shape)
        return (y, indices) if self.return_indices else y

    def backward(self, grad_output: Array) -> Array:
        indices, x_shape = self._saved()
        return getattr(F, f"max_pool{self._d}d_backward")(grad_output, indices, x_shape)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _AvgPool(Module):
    _d = 0

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override=None,
    ):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def _args(self) -> tuple:
        return (
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def forward(self, x: Array) -> Array:
        y = getattr(F, f"avg_pool{self._d}d")(x, *self._args())
        self._save(x.shape)
        return y

    def backward(self, grad_output: Array) -> Array:
        (x_shape,) = self._saved()
        return getattr(F, f"avg_pool{self._d}d_backward")(grad_output, x_shape, *self._args())

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _LPPool(Module):
    _d = 0

    def __init__(self, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False):
        super().__init__()
        self.norm_type, self.kernel_size, self.stride, self.ceil_mode = (
            norm_type,
            kernel_size,
            stride,
            ceil_mode,
        )

    def _args(self) -> tuple:
        return self.norm_type, self.kernel_size, self.stride, self.ceil_mode

    def forward(self, x: Array) -> Array:
        y = getattr(F, f"lp_pool{self._d}d")(x, *self._args())
        self._save(x)
        return y

    def backward(self, grad_output: Array) -> Array:
        (x,) = self._saved()
        return getattr(F, f"lp_pool{self._d}d_backward")(grad_output, x, *self._args())

    def extra_repr(self) -> str:
        return f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}"


class _AdaptiveAvgPool(Module):
    _d = 0

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Array) -> Array:
        y = getattr(F, f"adaptive_avg_pool{self._d}d")(x, self.output_size)
        self._save(x.shape)
        return y

    def backward(self, grad_output: Array) -> Array:
        (x_shape,) = self._saved()
        return getattr(F, f"adaptive_avg_pool{self._d}d_backward")(grad_output, x_shape)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class _AdaptiveMaxPool(Module):
    _d = 0

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, x: Array):
        fn = getattr(F, f"adaptive_max_pool{self._d}d")
        y, indices = fn(x, self.output_size, return_indices=True)
        self._save(indices, x.shape)
        return (y, indices) if self.return_indices else y

    def backward(self, grad_output: Array) -> Array:
        indices, x_shape = self._saved()
        return getattr(F, f"adaptive_max_pool{self._d}d_backward")(grad_output, indices, x_shape)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class _MaxUnpool(Module):
    _d = 0

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Array, indices: Array, output_size=None) -> Array:
        fn = getattr(F, f"max_unpool{self._d}d")
        y = fn(x, indices, self.kernel_size, self.stride, self.padding, output_size)
        self._save(indices)
        return y

    def backward(self, grad_output: Array) -> Array:
        (indices,) = self._saved()
        return getattr(F, f"max_unpool{self._d}d_backward")(grad_output, indices)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _layer(base, d: int, name: str, doc: str):
    cls = type(name, (base,), {"_d": d, "__module__": __name__})
    cls.__doc__ = doc + _SHAPES.format(d=d)
    return cls


MaxPool1d, MaxPool2d, MaxPool3d = (
    _layer(
        _MaxPool,
        d,
        f"MaxPool{d}d",
        f"{d}-D max pooling, as ``torch.nn.MaxPool{d}d`` (stride defaults to kernel_size; "
        "padding is -inf; NaN propagates).",
    )
    for d in (1, 2, 3)
)
AvgPool1d, AvgPool2d, AvgPool3d = (
    _layer(_AvgPool, d, f"AvgPool{d}d", f"{d}-D average pooling, as ``torch.nn.AvgPool{d}d``.")
    for d in (1, 2, 3)
)


LPPool1d, LPPool2d = (
    _layer(
        _LPPool,
        d,
        f"LPPool{d}d",
        f"{d}-D power-average pooling ``(sum x**p)**(1/p)`` per window, as ``torch.nn.LPPool{d}d``.",
    )
    for d in (1, 2)
)
AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d = (
    _layer(
        _AdaptiveAvgPool,
        d,
        f"AdaptiveAvgPool{d}d",
        f"{d}-D average pooling to a fixed ``output_size`` (int or tuple; None keeps an axis), "
        f"as ``torch.nn.AdaptiveAvgPool{d}d``.",
    )
    for d in (1, 2, 3)
)
AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d = (
    _layer(
        _AdaptiveMaxPool,
        d,
        f"AdaptiveMaxPool{d}d",
        f"{d}-D max pooling to a fixed ``output_size``, as ``torch.nn.AdaptiveMaxPool{d}d``; "
        "with ``return_indices=True`` the forward returns ``(y, indices)``.",
    )
    for d in (1, 2, 3)
)
MaxUnpool1d, MaxUnpool2d, MaxUnpool3d = (
    _layer(
        _MaxUnpool,
        d,
        f"MaxUnpool{d}d",
        f"Partial inverse of ``MaxPool{d}d``, as ``torch.nn.MaxUnpool{d}d``: "
        "``forward(x, indices, output_size=None)`` puts each value of x at its index (int64 "
        "indices of the shape of x, as max pooling returns them), zeros elsewhere; output size "
        "``(size - 1) * stride - 2 * padding + kernel_size`` or ``output_size``. backward "
        "returns the gradient of x (indices are not differentiable).",
    )
    for d in (1, 2, 3)
)
