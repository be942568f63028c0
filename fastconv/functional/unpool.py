"""Max unpooling: ``max_unpool{1,2,3}d``, the partial inverse of ``max_pool`` (each value goes
back to the position its index names, every other cell is zero), and its backward (a gather
through the same indices).
"""

from __future__ import annotations

from .. import shapes
from ..backends import backend_for
from .conv import Array, _batched_input
from .pool import LAYOUT, OUT_LAYOUT, batched_indices, name, run_indexed


def max_unpool(d, x, indices, kernel_size, stride, padding, output_size):
    x, unbatched = _batched_input("x", x, d)
    kernel = shapes.int_tuple("kernel_size", kernel_size, d, 1)
    stride = kernel if stride is None else shapes.int_tuple("stride", stride, d, 1)
    pad = shapes.int_tuple("padding", padding, d, 0)
    size = shapes.unpool_output_size(d, x.shape[2:], kernel, stride, pad, output_size)
    indices = batched_indices(indices, x.shape, unbatched)
    backend = backend_for(x=x, indices=indices)
    out = backend.empty((*x.shape[:2], *size), x.dtype)
    plane = shapes.math_prod(size)
    run_indexed(backend.max_unpool_forward, out, x, indices, plane, f"the output planes of size {size}")
    return out[0] if unbatched else out


def max_unpool_backward(d, grad_output, indices):
    shapes.check_array("grad_output", grad_output, (d + 1, d + 2), f"{OUT_LAYOUT[d]} or unbatched")
    unbatched = grad_output.ndim == d + 1
    if unbatched:
        grad_output = grad_output.reshape((1, *grad_output.shape))
    plane = shapes.math_prod(grad_output.shape[2:])
    shape = (*grad_output.shape[:2], *(None,) * d)
    indices = batched_indices(indices, shape, unbatched)
    backend = backend_for(grad_output=grad_output, indices=indices)
    dx = backend.empty(indices.shape, grad_output.dtype)
    run_indexed(backend.max_unpool_backward, dx, grad_output, indices, plane, "the planes of grad_output")
    return dx[0] if unbatched else dx


def _make(d: int):
    x_layout, out_layout = LAYOUT[d], OUT_LAYOUT[d]

    def forward(x: Array, indices: Array, kernel_size, stride=None, padding=0, output_size=None) -> Array:
        return max_unpool(d, x, indices, kernel_size, stride, padding, output_size)

    def backward(grad_output: Array, indices: Array) -> Array:
        return max_unpool_backward(d, grad_output, indices)

    forward.__doc__ = f"""{d}-D max unpooling, as ``torch.nn.functional.max_unpool{d}d``: zeros,
    with each value of x written at the flat position its index names in its (n, c) plane.

    Shapes:
        x: {out_layout} (or unbatched), the pooled values, float32 or float64
        indices: int64, the shape of x, as returned by ``max_pool{d}d(..., return_indices=True)``
        returns: {x_layout}, same dtype; spatial size ``output_size`` (d entries, or a full
            shape), default ``(size - 1)*stride - 2*padding + kernel_size``
    kernel_size, stride: int or tuple of {d} ints >= 1 (stride defaults to kernel_size);
    padding: int or tuple of {d} ints >= 0.
    """
    backward.__doc__ = f"""Gradient of ``max_unpool{d}d``: grad_output read at ``indices``.

    Shapes:
        grad_output: {x_layout} (or unbatched), the unpooled output's gradient
        indices: int64, the shape of max_unpool's input x
        returns: dx of the shape of indices
    """
    return name(forward, f"max_unpool{d}d"), name(backward, f"max_unpool{d}d_backward")


max_unpool1d, max_unpool1d_backward = _make(1)
max_unpool2d, max_unpool2d_backward = _make(2)
max_unpool3d, max_unpool3d_backward = _make(3)
