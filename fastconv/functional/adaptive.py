"""Adaptive (and global) pooling: ``adaptive_avg_pool{1,2,3}d`` and ``adaptive_max_pool{1,2,3}d``
with their backward passes. The output size is given; output cell ``o`` of an axis of size
``n`` pools input cells ``floor(o*n/out)`` to ``ceil((o+1)*n/out) - 1``, as PyTorch, on the
same kernels as ``avg_pool``/``max_pool`` (only the window tables differ).
"""

from __future__ import annotations

from .. import shapes
from ..backends import backend_for
from .conv import Array, _batched_input, _grad_output, _input_shape, lift, lift3
from .pool import LAYOUT, OUT_LAYOUT, max_pool_backward, max_pool_with_geometry, name


def adaptive_avg_pool(d, x, output_size):
    x, unbatched = _batched_input("x", x, d)
    geom = shapes.adaptive_pool_geometry(d, x.shape, output_size)
    backend = backend_for(x=x)
    out = backend.empty((*x.shape[:2], *geom.out_size), x.dtype)
    if out.size:
        backend.avg_pool_forward(lift(out, d), lift(x, d), lift3(geom), True, 0)
    return out[0] if unbatched else out


def adaptive_avg_pool_backward(d, grad_output, input_shape):
    input_shape, unbatched = _input_shape("input_shape", input_shape, d)
    grad_output = _grad_output(grad_output, d, unbatched)
    shapes.check_pool_grad_output(
        grad_output, (*input_shape[:2], *grad_output.shape[2:]), "adaptive average pooling"
    )
    geom = shapes.adaptive_pool_geometry(d, input_shape, tuple(grad_output.shape[2:]))
    backend = backend_for(grad_output=grad_output)
    dx = backend.empty(input_shape, grad_output.dtype)
    if dx.size:
        backend.avg_pool_backward(lift(dx, d), lift(grad_output, d), lift3(geom), True, 0)
    return dx[0] if unbatched else dx


def adaptive_max_pool(d, x, output_size, return_indices):
    x, unbatched = _batched_input("x", x, d)
    geom = shapes.adaptive_pool_geometry(d, x.shape, output_size)
    return max_pool_with_geometry(d, x, unbatched, geom, return_indices)


def _make(d: int):
    x_layout, out_layout = LAYOUT[d], OUT_LAYOUT[d]
    size = f"""output_size: int or tuple of {d} ints >= 1 (None entries keep the input's size);
    ``output_size=1`` is global pooling."""

    def avg(x: Array, output_size) -> Array:
        return adaptive_avg_pool(d, x, output_size)

    def avg_backward(grad_output: Array, input_shape) -> Array:
        return adaptive_avg_pool_backward(d, grad_output, input_shape)

    def max_(x: Array, output_size, return_indices: bool = False):
        return adaptive_max_pool(d, x, output_size, return_indices)

    def max_backward(grad_output: Array, indices: Array, input_shape) -> Array:
        return max_pool_backward(d, grad_output, indices, input_shape, "adaptive max pooling")

    avg.__doc__ = f"""{d}-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool{d}d``.

    Shapes:
        x: {x_layout} (or unbatched, without N), float32 or float64
        returns: {out_layout} with the spatial size ``output_size``, same dtype
    {size}
    """
    avg_backward.__doc__ = f"""Gradient of ``adaptive_avg_pool{d}d``.

    Shapes:
        grad_output: {out_layout} (or unbatched); its spatial size is the output_size
        input_shape: the shape of x, {x_layout} (or unbatched)
        returns: dx of shape ``input_shape``
    """
    max_.__doc__ = f"""{d}-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool{d}d``.

    Shapes:
        x: {x_layout} (or unbatched, without N), float32 or float64
        returns: {out_layout} with the spatial size ``output_size``, same dtype, and with
            ``return_indices`` the int64 indices, flat within each (n, c) plane of x
    {size}
    """
    max_backward.__doc__ = f"""Gradient of ``adaptive_max_pool{d}d``: grad_output added at ``indices``.

    Shapes:
        grad_output, indices: {out_layout} (or unbatched); indices int64
        input_shape: the shape of x, {x_layout} (or unbatched)
        returns: dx of shape ``input_shape``
    """
    return (
        name(avg, f"adaptive_avg_pool{d}d"),
        name(avg_backward, f"adaptive_avg_pool{d}d_backward"),
        name(max_, f"adaptive_max_pool{d}d"),
        name(max_backward, f"adaptive_max_pool{d}d_backward"),
    )


(adaptive_avg_pool1d, adaptive_avg_pool1d_backward, adaptive_max_pool1d, adaptive_max_pool1d_backward) = (
    _make(1)
)
(adaptive_avg_pool2d, adaptive_avg_pool2d_backward, adaptive_max_pool2d, adaptive_max_pool2d_backward) = (
    _make(2)
)
(adaptive_avg_pool3d, adaptive_avg_pool3d_backward, adaptive_max_pool3d, adaptive_max_pool3d_backward) = (
    _make(3)
)
