"""Transposed ("expanding") convolution: ``conv_transpose{1,2,3}d`` and its backward passes.

The notes' expanding layer scatters every input cell through the kernel onto an output
``stride`` times larger: ``z[o, i*stride + k] += w[c, o, k] * x[c, i]``. That is exactly the
adjoint of convolution, so the backend runs it on the convolution kernels (see
``backends/cpu/conv_transpose.py``).
"""

from __future__ import annotations

from .. import shapes
from ..backends import backend_for
from .conv import Array, _batched_input, _grad_output, _input_shape, lift, lift3

_LAYOUT = {1: "(N, C_in, L)", 2: "(N, C_in, H, W)", 3: "(N, C_in, D, H, W)"}
_OUT = {1: "(N, C_out, L_out)", 2: "(N, C_out, H_out, W_out)", 3: "(N, C_out, D_out, H_out, W_out)"}
_KERNEL = {
    1: "(C_in, C_out/groups, K)",
    2: "(C_in, C_out/groups, KH, KW)",
    3: "(C_in, C_out/groups, KD, KH, KW)",
}


def _out_shape(x_shape, w_shape, groups: int, geom) -> tuple[int, ...]:
    return (x_shape[0], w_shape[1] * groups, *geom.in_size)


def conv_transpose_forward(d, x, weight, bias, stride, padding, output_padding, groups, dilation):
    x, unbatched = _batched_input("x", x, d)
    shapes.check_array("weight", weight, d + 2, _KERNEL[d])
    geom = shapes.conv_transpose_geometry(
        d, x.shape, weight.shape, stride, padding, output_padding, groups, dilation
    )
    shapes.check_bias(bias, weight.shape[1] * geom.groups)
    dtype = shapes.check_same_dtype(x=x, weight=weight, bias=bias)
    backend = backend_for(x=x, weight=weight, bias=bias)
    out = backend.empty(_out_shape(x.shape, weight.shape, geom.groups, geom), dtype)
    if out.size:
        backend.conv_transpose_forward(lift(out, d), lift(x, d), lift(weight, d), bias, lift3(geom))
    return out[0] if unbatched else out


def conv_transpose_backward_input(
    d, grad_output, weight, input_shape, stride, padding, output_padding, groups, dilation
):
    input_shape, unbatched = _input_shape("input_shape", input_shape, d)
    grad_output = _grad_output(grad_output, d, unbatched)
    shapes.check_array("weight", weight, d + 2, _KERNEL[d])
    dtype = shapes.check_same_dtype(grad_output=grad_output, weight=weight)
    geom = shapes.conv_transpose_geometry(
        d, input_shape, weight.shape, stride, padding, output_padding, groups, dilation
    )
    shapes.check_grad_output(grad_output, _out_shape(input_shape, weight.shape, geom.groups, geom))
    backend = backend_for(grad_output=grad_output, weight=weight)
    dx = backend.empty(input_shape, dtype)
    if dx.size:
        backend.conv_transpose_backward_input(lift(dx, d), lift(grad_output, d), lift(weight, d), lift3(geom))
    return dx[0] if unbatched else dx


def conv_transpose_backward_weight(
    d, grad_output, x, weight_shape, stride, padding, output_padding, groups, dilation
):
    x, unbatched = _batched_input("x", x, d)
    grad_output = _grad_output(grad_output, d, unbatched)
    weight_shape = shapes.check_shape("weight_shape", weight_shape, d + 2)
    dtype = shapes.check_same_dtype(grad_output=grad_output, x=x)
    geom = shapes.conv_transpose_geometry(
        d, x.shape, weight_shape, stride, padding, output_padding, groups, dilation
    )
    shapes.check_grad_output(grad_output, _out_shape(x.shape, weight_shape, geom.groups, geom))
    backend = backend_for(grad_output=grad_output, x=x)
    if x.shape[0] == 0:  # empty batch: the gradient is exactly zero
        return backend.zeros(weight_shape, dtype)
    dw = backend.empty(weight_shape, dtype)
    backend.conv_transpose_backward_weight(lift(dw, d), lift(grad_output, d), lift(x, d), lift3(geom))
    return dw


_DOC_ARGS = """
    stride, dilation: int or tuple of {d} ints, >= 1.
    padding: int or tuple of {d} ints >= 0, the padding of the convolution this is the
        adjoint of: that many cells are cropped from both ends of the full output.
    output_padding: int or tuple of {d} ints, each smaller than max(stride, dilation): cells
        added at the end of each axis (the sizes a strided convolution rounds away).
    groups: int dividing C_in; C_out = weight.shape[1] * groups.
"""
_SIZE = "``(size - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1``"


def _make(d: int):
    x_layout, out_layout, k_layout = _LAYOUT[d], _OUT[d], _KERNEL[d]
    args = _DOC_ARGS.format(d=d)

    def forward(
        x: Array,
        weight: Array,
        bias: Array | None = None,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        dilation=1,
    ) -> Array:
        return conv_transpose_forward(d, x, weight, bias, stride, padding, output_padding, groups, dilation)

    def backward_input(
        grad_output: Array,
        weight: Array,
        input_shape,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        dilation=1,
    ) -> Array:
        return conv_transpose_backward_input(
            d, grad_output, weight, input_shape, stride, padding, output_padding, groups, dilation
        )

    def backward_weight(
        grad_output: Array,
        x: Array,
        weight_shape,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        dilation=1,
    ) -> Array:
        return conv_transpose_backward_weight(
            d, grad_output, x, weight_shape, stride, padding, output_padding, groups, dilation
        )

    forward.__doc__ = f"""{d}-D transposed convolution, as ``torch.nn.functional.conv_transpose{d}d``:
    the adjoint of ``conv{d}d`` (the notes' expanding convolution).

    Shapes:
        x: {x_layout} (or unbatched, without N), float32 or float64
        weight: {k_layout}, same dtype as x
        bias: (C_out,) or None
        returns: {out_layout}, same dtype; spatial size
            {_SIZE}
{args}"""
    backward_input.__doc__ = f"""Gradient of ``conv_transpose{d}d`` with respect to its input
    (a plain ``conv{d}d`` of grad_output).

    Shapes:
        grad_output: {out_layout}
        weight: {k_layout}
        input_shape: the shape of x, {x_layout} (or unbatched)
        returns: dx of shape ``input_shape``
{args}"""
    backward_weight.__doc__ = f"""Gradient of ``conv_transpose{d}d`` with respect to its weight.

    Shapes:
        grad_output: {out_layout}
        x: {x_layout}, the forward input
        weight_shape: {k_layout}
        returns: dw of shape ``weight_shape`` (exact zeros for an empty batch)
{args}"""
    fns = {"": forward, "_backward_input": backward_input, "_backward_weight": backward_weight}
    for suffix, fn in fns.items():
        fn.__name__ = fn.__qualname__ = f"conv_transpose{d}d{suffix}"
        fn.__module__ = "fastconv.functional"
    return fns.values()


conv_transpose1d, conv_transpose1d_backward_input, conv_transpose1d_backward_weight = _make(1)
conv_transpose2d, conv_transpose2d_backward_input, conv_transpose2d_backward_weight = _make(2)
conv_transpose3d, conv_transpose3d_backward_input, conv_transpose3d_backward_weight = _make(3)
