"""Pooling: ``max_pool``, ``avg_pool`` and ``lp_pool`` in 1, 2 and 3 dimensions, each with its
backward, side by side (adaptive pooling is in ``adaptive.py``, unpooling in ``unpool.py``).

Same recipe as convolution: validate (``shapes``) -> window geometry -> allocate -> backend
kernel, with 1-D and 2-D problems lifted to 3-D views so every dimensionality shares one set
of compiled kernels.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import shapes
from ..backends import backend_for
from ..shapes import plain_key
from .conv import Array, _batched_input, _grad_output, _input_shape, lift, lift3

LAYOUT = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}
OUT_LAYOUT = {1: "(N, C, L_out)", 2: "(N, C, H_out, W_out)", 3: "(N, C, D_out, H_out, W_out)"}


@functools.lru_cache(maxsize=256, typed=True)
def _cached_geometry(d, in_size, kernel_size, stride, padding, dilation, ceil_mode):
    # N = C = 1 stand in for the batch: pool_geometry reads only in_size (nonzero: checked)
    return shapes.pool_geometry(d, (1, 1, *in_size), kernel_size, stride, padding, dilation, ceil_mode)


def pool_geometry(d, x_shape, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    """``shapes.pool_geometry``, memoised per (spatial size, arguments) when every argument is
    plain (``shapes.plain_key``): validation stays complete (errors are never cached, and a
    cached geometry is one that passed it with equal, same-typed arguments); any other
    argument is validated afresh."""
    in_size = tuple(x_shape[2:])
    key = plain_key(kernel_size, stride, padding, dilation, ceil_mode) if min(in_size) > 0 else None
    if key is not None:
        return _cached_geometry(d, in_size, *key)
    return shapes.pool_geometry(d, x_shape, kernel_size, stride, padding, dilation, ceil_mode)


def batched_indices(indices, shape, unbatched: bool):
    """Check pooling indices against the batched ``shape`` (without its N when ``unbatched``;
    None entries: any size); return them batched."""
    shapes.check_indices(indices, tuple(shape)[1:] if unbatched else shape)
    return indices.reshape((1, *indices.shape)) if unbatched else indices


def run_indexed(kernel, dst, src, indices, plane_size: int, plane: str) -> None:
    """``kernel(dst, src, indices)``, a backend kernel that checks the range of the indices as
    it uses them and returns how many lie outside [0, plane_size) (``plane`` names those
    planes); raise when any did (an empty ``dst`` has no cell for any index)."""
    bad = kernel(dst, src, indices) if dst.size else indices.size
    if bad:
        raise shapes.index_range_error(indices, plane_size, plane)


def max_pool_with_geometry(d, x, unbatched, geom, return_indices):
    """Max pooling of a batched, validated x over ``geom``'s windows (also adaptive ones)."""
    return_indices = shapes.check_bool("return_indices", return_indices)
    backend = backend_for(x=x)
    shape = (*x.shape[:2], *geom.out_size)
    out = backend.empty(shape, x.dtype)
    indices = backend.empty(shape, np.int64) if return_indices else None
    if out.size:
        backend.max_pool_forward(
            lift(out, d), None if indices is None else lift(indices, d), lift(x, d), lift3(geom)
        )
    if not return_indices:
        return out[0] if unbatched else out
    return (out[0], indices[0]) if unbatched else (out, indices)


def max_pool(d, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    x, unbatched = _batched_input("x", x, d)
    geom = pool_geometry(d, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return max_pool_with_geometry(d, x, unbatched, geom, return_indices)


def max_pool_backward(d, grad_output, indices, input_shape, op="max pooling"):
    input_shape, unbatched = _input_shape("input_shape", input_shape, d)
    grad_output = _grad_output(grad_output, d, unbatched)
    shapes.check_pool_grad_output(grad_output, (*input_shape[:2], *grad_output.shape[2:]), op)
    indices = batched_indices(indices, grad_output.shape, unbatched)
    backend = backend_for(grad_output=grad_output, indices=indices)
    dx = backend.empty(input_shape, grad_output.dtype)
    plane = shapes.math_prod(input_shape[2:])
    run_indexed(backend.max_pool_backward, dx, grad_output, indices, plane, "the input planes")
    return dx[0] if unbatched else dx


def _avg_args(d, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    geom = pool_geometry(d, x_shape, kernel_size, stride, padding, 1, ceil_mode)
    count_include_pad = shapes.check_bool("count_include_pad", count_include_pad)
    return geom, count_include_pad, shapes.check_divisor_override(divisor_override)


def avg_pool(d, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x, unbatched = _batched_input("x", x, d)
    geom, *avg = _avg_args(
        d, x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    backend = backend_for(x=x)
    out = backend.empty((*x.shape[:2], *geom.out_size), x.dtype)
    if out.size:
        backend.avg_pool_forward(lift(out, d), lift(x, d), lift3(geom), *avg)
    return out[0] if unbatched else out


def avg_pool_backward(
    d, grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
):
    input_shape, unbatched = _input_shape("input_shape", input_shape, d)
    grad_output = _grad_output(grad_output, d, unbatched)
    geom, *avg = _avg_args(
        d, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    shapes.check_pool_grad_output(grad_output, (*input_shape[:2], *geom.out_size), "average pooling")
    backend = backend_for(grad_output=grad_output)
    dx = backend.empty(input_shape, grad_output.dtype)
    if dx.size:
        backend.avg_pool_backward(lift(dx, d), lift(grad_output, d), lift3(geom), *avg)
    return dx[0] if unbatched else dx


def lp_pool(d, x, norm_type, kernel_size, stride, ceil_mode):
    x, unbatched = _batched_input("x", x, d)
    norm_type = shapes.check_norm_type(norm_type)
    geom = pool_geometry(d, x.shape, kernel_size, stride, 0, 1, ceil_mode)
    backend = backend_for(x=x)
    out = backend.empty((*x.shape[:2], *geom.out_size), x.dtype)
    if out.size:
        backend.lp_pool_forward(lift(out, d), lift(x, d), norm_type, lift3(geom))
    return out[0] if unbatched else out


def lp_pool_backward(d, grad_output, x, norm_type, kernel_size, stride, ceil_mode):
    x, unbatched = _batched_input("x", x, d)
    grad_output = _grad_output(grad_output, d, unbatched)
    norm_type = shapes.check_norm_type(norm_type)
    dtype = shapes.check_same_dtype(grad_output=grad_output, x=x)
    geom = pool_geometry(d, x.shape, kernel_size, stride, 0, 1, ceil_mode)
    shapes.check_pool_grad_output(grad_output, (*x.shape[:2], *geom.out_size), "Lp pooling")
    backend = backend_for(grad_output=grad_output, x=x)
    dx = backend.empty(x.shape, dtype)
    if dx.size:
        backend.lp_pool_backward(lift(dx, d), lift(grad_output, d), lift(x, d), norm_type, lift3(geom))
    return dx[0] if unbatched else dx


def name(fn, op_name: str):
    fn.__name__ = fn.__qualname__ = op_name
    fn.__module__ = "fastconv.functional"
    return fn


_WINDOW = """Output spatial size: ``floor((size + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1``,
    or ``ceil`` in ceil_mode, where the last window must start inside the input or the left
    padding (padding 0 and dilation 1 where the function has none)."""


def _make_max(d: int):
    x_layout, out_layout = LAYOUT[d], OUT_LAYOUT[d]

    def forward(
        x: Array,
        kernel_size,
        stride=None,
        padding=0,
        dilation=1,
        ceil_mode: bool = False,
        return_indices: bool = False,
    ):
        return max_pool(d, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)

    def backward(grad_output: Array, indices: Array, input_shape) -> Array:
        return max_pool_backward(d, grad_output, indices, input_shape)

    forward.__doc__ = f"""{d}-D max pooling, as ``torch.nn.functional.max_pool{d}d``.

    Padding cells are -inf (never chosen); ties go to the first maximum in scan order; a
    window holding NaN yields NaN (index: its last NaN, as PyTorch).

    Shapes:
        x: {x_layout} (or unbatched, without N), float32 or float64
        returns: {out_layout}, same dtype, and with ``return_indices`` the int64 indices of
            the same shape, flat within each (n, c) plane of x (``h*W + w`` in 2-D)
    {_WINDOW}
    kernel_size, stride, dilation: int or tuple of {d} ints >= 1 (stride defaults to
    kernel_size); padding: int or tuple of {d} ints, at most half the kernel.
    """
    backward.__doc__ = f"""Gradient of ``max_pool{d}d``: grad_output added at ``indices``
    (overlapping windows accumulate).

    Shapes:
        grad_output, indices: {out_layout} (or unbatched); indices int64
        input_shape: the shape of x, {x_layout} (or unbatched)
        returns: dx of shape ``input_shape``
    """
    return name(forward, f"max_pool{d}d"), name(backward, f"max_pool{d}d_backward")


def _make_avg(d: int):
    x_layout, out_layout = LAYOUT[d], OUT_LAYOUT[d]

    def forward(
        x: Array,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> Array:
        return avg_pool(d, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)

    def backward(
        grad_output: Array,
        input_shape,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> Array:
        return avg_pool_backward(
            d,
            grad_output,
            input_shape,
            kernel_size,
            stride,
            padding,
            ceil_mode,
            count_include_pad,
            divisor_override,
        )

    forward.__doc__ = f"""{d}-D average pooling, as ``torch.nn.functional.avg_pool{d}d``.

    Each window sum is divided by ``divisor_override`` if given, else by the window's size
    counting zero padding (``count_include_pad``, clipped where a ceil_mode window runs past
    the right padding) or counting only input cells.

    Shapes:
        x: {x_layout} (or unbatched, without N), float32 or float64
        returns: {out_layout}, same dtype
    {_WINDOW}
    kernel_size, stride: int or tuple of {d} ints >= 1 (stride defaults to kernel_size);
    padding: int or tuple of {d} ints, at most half the kernel.
    """
    backward.__doc__ = f"""Gradient of ``avg_pool{d}d`` (same arguments as the forward).

    Shapes:
        grad_output: {out_layout} (or unbatched)
        input_shape: the shape of x, {x_layout} (or unbatched)
        returns: dx of shape ``input_shape``
    """
    return name(forward, f"avg_pool{d}d"), name(backward, f"avg_pool{d}d_backward")


def _make_lp(d: int):
    x_layout, out_layout = LAYOUT[d], OUT_LAYOUT[d]

    def forward(x: Array, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False):
        return lp_pool(d, x, norm_type, kernel_size, stride, ceil_mode)

    def backward(
        grad_output: Array, x: Array, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False
    ) -> Array:
        return lp_pool_backward(d, grad_output, x, norm_type, kernel_size, stride, ceil_mode)

    forward.__doc__ = f"""{d}-D power-average (Lp) pooling, as ``torch.nn.functional.lp_pool{d}d``:
    ``(sum over the window of x**p) ** (1/p)`` (p = 1: sum pooling, p = 2: L2 pooling). As
    PyTorch, a ceil_mode window clipped by the input edge is averaged over its cells and scaled
    by the full kernel size.

    Shapes:
        x: {x_layout} (or unbatched, without N), float32 or float64
        returns: {out_layout}, same dtype
    {_WINDOW}
    norm_type: finite p > 0; kernel_size, stride: int or tuple of {d} ints >= 1 (stride
    defaults to kernel_size).
    """
    backward.__doc__ = f"""Gradient of ``lp_pool{d}d`` (zero where a window's sum is zero).

    Shapes:
        grad_output: {out_layout} (or unbatched)
        x: {x_layout}, the forward input
        returns: dx of the shape of x
    """
    return name(forward, f"lp_pool{d}d"), name(backward, f"lp_pool{d}d_backward")


max_pool1d, max_pool1d_backward = _make_max(1)
max_pool2d, max_pool2d_backward = _make_max(2)
max_pool3d, max_pool3d_backward = _make_max(3)
avg_pool1d, avg_pool1d_backward = _make_avg(1)
avg_pool2d, avg_pool2d_backward = _make_avg(2)
avg_pool3d, avg_pool3d_backward = _make_avg(3)
lp_pool1d, lp_pool1d_backward = _make_lp(1)
lp_pool2d, lp_pool2d_backward = _make_lp(2)
