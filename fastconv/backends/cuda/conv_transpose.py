"""Transposed convolution on the GPU, entirely from the convolution kernels.

Transposed convolution is the adjoint of convolution: its forward is conv's backward-input,
its backward-input is conv's forward, and its backward-weight is conv's backward-weight with
x and grad_output in swapped roles. ``geom`` is the geometry of that convolution
(``shapes.conv_transpose_geometry``), lifted to 3-D.
"""

from __future__ import annotations

from ...shapes import ConvGeometry
from .conv import conv_backward_input, conv_backward_weight, conv_forward
from .elementwise import add_bias


def conv_transpose_forward(out, x, w, bias, geom: ConvGeometry) -> None:
    """out (N, C_out, *out) <- conv_transpose(x (N, C_in, *in), w (C_in, C_out/g, *k)) + bias."""
    conv_backward_input(out, x, w, geom)
    if bias is not None:
        add_bias(out, bias)


def conv_transpose_backward_input(dx, dy, w, geom: ConvGeometry) -> None:
    """dx (N, C_in, *in) <- conv(dy (N, C_out, *out), w)."""
    conv_forward(dx, dy, w, None, geom)


def conv_transpose_backward_weight(dw, dy, x, geom: ConvGeometry) -> None:
    """dw (C_in, C_out/g, *k) <- conv's weight gradient with x as its grad_output and dy as its input."""
    conv_backward_weight(dw, x, dy, geom)
