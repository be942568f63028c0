"""Transposed convolution on the CPU, entirely from the convolution kernels.

Transposed convolution is the adjoint of convolution, so no kernel of its own is needed: its
forward is conv's backward-input, its backward-input is conv's forward, and its
backward-weight is conv's backward-weight with x and grad_output in swapped roles. ``geom`` is
the geometry of that convolution (``shapes.conv_transpose_geometry``), lifted to 3-D.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ...config import FASTMATH
from ...shapes import ConvGeometry
from .conv import conv_backward_input, conv_backward_weight, conv_forward


def _disjoint_blocks(geom: ConvGeometry) -> bool:
    """kernel == stride, no padding, dilation or output_padding: every input cell writes its
    own kernel-sized block of the output (U-Net's 2x2/stride-2 up-convolution)."""
    return (
        geom.kernel == geom.stride
        and not any(geom.pad_lo)
        and all(d == 1 for d in geom.dilation)
        and geom.in_size == tuple(o * k for o, k in zip(geom.out_size, geom.kernel, strict=True))
    )


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _depth_to_space(out, z, kd, kh, kw):
    # out[n, o, d*kd + i, h*kh + j, w*kw + k] <- z (N, O*kd*kh*kw, D, H, W) channel ((o*kd + i)*kh + j)*kw + k
    N, O, D, H, W = out.shape[0], out.shape[1], z.shape[2], z.shape[3], z.shape[4]
    for job in prange(N * O * D):
        n, o, d = job // (O * D), job // D % O, job % D
        for i in range(kd):
            for h in range(H):
                for j in range(kh):
                    dst = out[n, o, d * kd + i, h * kh + j]
                    for k in range(kw):
                        src = z[n, ((o * kd + i) * kh + j) * kw + k, d, h]
                        for w in range(W):
                            dst[w * kw + k] = src[w]


def _blocks_forward(out, x, w, bias, geom: ConvGeometry) -> None:
    """The disjoint-blocks case as a 1x1 convolution to C_out*KD*KH*KW channels (one per block
    cell, on the fast forward kernels) followed by a depth-to-space copy."""
    (n, c_in), (_, opg) = x.shape[:2], w.shape[:2]
    groups, taps, c_out = geom.groups, math.prod(geom.kernel), out.shape[1]
    # w1[(g*opg + o)*taps + t, c] = w[g*cpg + c, o, t]
    w1 = w.reshape(groups, c_in // groups, opg, taps).transpose(0, 2, 3, 1)
    w1 = np.ascontiguousarray(w1).reshape(c_out * taps, c_in // groups, 1, 1, 1)
    b1 = None if bias is None else np.repeat(bias, taps)
    size = geom.out_size
    geom1 = ConvGeometry((1, 1, 1), (0, 0, 0), (0, 0, 0), (1, 1, 1), groups, size, (1, 1, 1), size)
    z = np.empty((n, c_out * taps, *size), out.dtype)
    conv_forward(z, x, w1, b1, geom1)
    _depth_to_space(out, z, *geom.kernel)


def conv_transpose_forward(out, x, w, bias, geom: ConvGeometry) -> None:
    """out (N, C_out, *out) <- conv_transpose(x (N, C_in, *in), w (C_in, C_out/g, *k)) + bias."""
    if _disjoint_blocks(geom):
        _blocks_forward(out, x, w, bias, geom)
        return
    conv_backward_input(out, x, w, geom)
    if bias is not None:
        out += bias.reshape(-1, 1, 1, 1)


def conv_transpose_backward_input(dx, dy, w, geom: ConvGeometry) -> None:
    """dx (N, C_in, *in) <- conv(dy (N, C_out, *out), w)."""
    conv_forward(dx, dy, w, None, geom)


def conv_transpose_backward_weight(dw, dy, x, geom: ConvGeometry) -> None:
    """dw (C_in, C_out/g, *k) <- conv's weight gradient with x as its grad_output and dy as its input."""
    conv_backward_weight(dw, x, dy, geom)
