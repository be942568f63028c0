"""Convolution layers: ``Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d``, over ``fastconv.functional``.

Weights are initialised as PyTorch's ``reset_parameters`` does (``kaiming_uniform_(a=sqrt(5))``,
bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``), drawn from ``rng`` (None, an int seed or a
``np.random.Generator``), and stored in ``dtype`` (float32 by default).
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import shapes
from .init import default_init, generator
from .module import Array, Module, Parameter

_SHAPES = """
    Shapes:
        x: (N, C_in, *spatial) with {d} spatial axes, or unbatched (C_in, *spatial)
        weight: {weight}
        bias: (C_out,) when ``bias=True``
        returns: (N, C_out, *spatial_out), same dtype as x
"""


class _ConvNd(Module):
    _d = 0
    _transposed = False

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding,
        dilation,
        groups,
        bias,
        padding_mode,
        dtype,
        rng,
    ):
        super().__init__()
        name = type(self).__name__
        d = self._d
        kernel = shapes.check_conv_layer(
            name, d, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode
        )
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel
        self.stride = shapes.int_tuple("stride", stride, d, 1)
        self.dilation = shapes.int_tuple("dilation", dilation, d, 1)
        self.padding = padding if isinstance(padding, str) else shapes.int_tuple("padding", padding, d, 0)
        self.groups, self.padding_mode = groups, padding_mode
        dtype = shapes.check_float_dtype(dtype)
        w_shape = (
            (in_channels, out_channels // groups)
            if self._transposed
            else (out_channels, in_channels // groups)
        ) + kernel
        self.weight = Parameter(np.empty(w_shape, dtype))
        self.bias = Parameter(np.empty(out_channels, dtype)) if bias else None
        default_init(self.weight, self.bias, generator(rng))

    def _bias(self) -> Array | None:
        return None if self.bias is None else self.bias.data

    def _accumulate_bias(self, grad_output: Array) -> None:
        if self.bias is not None:
            self.bias.accumulate(getattr(F, f"conv{self._d}d_backward_bias")(grad_output))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )


class _Conv(_ConvNd):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype=np.float32,
        rng=None,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            dtype,
            rng,
        )

    def _geometry(self) -> dict:
        return dict(
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            padding_mode=self.padding_mode,
        )

    def forward(self, x: Array) -> Array:
        y = getattr(F, f"conv{self._d}d")(x, self.weight.data, self._bias(), **self._geometry())
        self._save(x)
        return y

    def backward(self, grad_output: Array) -> Array:
        (x,) = self._saved()
        d, geom = self._d, self._geometry()
        dw = getattr(F, f"conv{d}d_backward_weight")(grad_output, x, self.weight.shape, **geom)
        self.weight.accumulate(dw)
        self._accumulate_bias(grad_output)
        return getattr(F, f"conv{d}d_backward_input")(grad_output, self.weight.data, x.shape, **geom)


class _ConvTranspose(_ConvNd):
    _transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        bias: bool = True,
        dilation=1,
        padding_mode: str = "zeros",
        dtype=np.float32,
        rng=None,
    ):
        if padding_mode != "zeros":
            raise ValueError(
                f"{type(self).__name__} only supports padding_mode='zeros', got {padding_mode!r}"
            )
        d = self._d
        padding = shapes.int_tuple("padding", padding, d, 0)
        output_padding = shapes.int_tuple("output_padding", output_padding, d, 0)
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            dtype,
            rng,
        )
        self.output_padding = output_padding

    def _geometry(self) -> dict:
        return dict(
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            groups=self.groups,
            dilation=self.dilation,
        )

    def forward(self, x: Array) -> Array:
        fn = getattr(F, f"conv_transpose{self._d}d")
        y = fn(x, self.weight.data, self._bias(), **self._geometry())
        self._save(x)
        return y

    def backward(self, grad_output: Array) -> Array:
        (x,) = self._saved()
        d, geom = self._d, self._geometry()
        dw = getattr(F, f"conv_transpose{d}d_backward_weight")(grad_output, x, self.weight.shape, **geom)
        self.weight.accumulate(dw)
        self._accumulate_bias(grad_output)
        return getattr(F, f"conv_transpose{d}d_backward_input")(
            grad_output, self.weight.data, x.shape, **geom
        )


def _layer(base, d: int, name: str, weight: str, doc: str):
    cls = type(name, (base,), {"_d": d, "__module__": __name__})
    cls.__doc__ = doc + _SHAPES.format(d=d, weight=weight)
    return cls


_K = {1: "K", 2: "KH, KW", 3: "KD, KH, KW"}
Conv1d, Conv2d, Conv3d = (
    _layer(
        _Conv,
        d,
        f"Conv{d}d",
        f"(C_out, C_in/groups, {_K[d]})",
        f"{d}-D convolution layer, as ``torch.nn.Conv{d}d`` (padding int, tuple, 'same' or "
        "'valid'; padding_mode zeros, reflect, replicate or circular).",
    )
    for d in (1, 2, 3)
)
ConvTranspose1d, ConvTranspose2d, ConvTranspose3d = (
    _layer(
        _ConvTranspose,
        d,
        f"ConvTranspose{d}d",
        f"(C_in, C_out/groups, {_K[d]})",
        f"{d}-D transposed convolution layer, as ``torch.nn.ConvTranspose{d}d``.",
    )
    for d in (1, 2, 3)
)
