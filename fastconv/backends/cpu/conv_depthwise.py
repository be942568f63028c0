"""Depthwise convolution (groups = C_in = C_out) for float32 in the channel-blocked layout.

Each output pixel's 16 channels are one vector: out = sum over taps of x_vector * w_vector,
with no reduction across channels. The forward works on 4 pixels at a time (4 independent
FMA chains hide the FMA latency); backward-input is the same kernel on grad_output with the
kernel flipped (per stride phase, see ``conv_simd``); backward-weight keeps 4 partial sums
per tap, combined in a fixed order at the end. Memory-bound: the blocked layout makes every
load a full 64-byte vector.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...config import FASTMATH
from . import blocked
from .simd import LANES, vadd, vfma, vload, vstore, vzero

_JIT = dict(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy", boundscheck=False)


@njit(**_JIT)
def _forward_kernel(out, xb, wb, bias, sd, sh, sw, dd, dh, dw, off_d, off_h, off_w):
    # out (N, Cb, OD, OH, OWp, 16) = depthwise conv of xb (N, Cb, Dp, Hp, Wp, 16) from (off_d, off_h, off_w) with wb (Cb, KD, KH, KW, 16) + bias
    N, Cb, OD, OH, OWp = out.shape[0], out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    Dp, Hp, Wp = xb.shape[2], xb.shape[3], xb.shape[4]
    KD, KH, KW = wb.shape[1], wb.shape[2], wb.shape[3]
    xf, wf, of = xb.reshape(-1), wb.reshape(-1), out.reshape(-1)
    xs = sw * 16
    for job in prange(N * Cb * OD * OH):
        oh = job % OH
        t = job // OH
        od = t % OD
        t //= OD
        cb = t % Cb
        n = t // Cb
        b = vload(bias, cb * 16)
        orow = (((n * Cb + cb) * OD + od) * OH + oh) * OWp * 16
        for ow0 in range(0, OWp, 4):  # OWp is a multiple of 4
            a0, a1, a2, a3 = b, b, b, b
            for kd in range(KD):
                for kh in range(KH):
                    xrow = (
                        ((n * Cb + cb) * Dp + off_d + od * sd + kd * dd) * Hp + off_h + oh * sh + kh * dh
                    ) * Wp
                    for kw in range(KW):
                        wv = vload(wf, (((cb * KD + kd) * KH + kh) * KW + kw) * 16)
                        xk = (xrow + off_w + ow0 * sw + kw * dw) * 16
                        a0 = vfma(vload(xf, xk), wv, a0)
                        a1 = vfma(vload(xf, xk + xs), wv, a1)
                        a2 = vfma(vload(xf, xk + 2 * xs), wv, a2)
                        a3 = vfma(vload(xf, xk + 3 * xs), wv, a3)
            o = orow + ow0 * 16
            vstore(of, o, a0)
            vstore(of, o + 16, a1)
            vstore(of, o + 32, a2)
            vstore(of, o + 48, a3)


@njit(**_JIT)
def _backward_weight_kernel(dwb, dyb, xb, sd, sh, sw, dd, dh, dw):
    # dwb (Cb, KD, KH, KW, 16) = sum over n and outputs of dyb (N, Cb, OD, OH, OW, 16) * xb (N, Cb, Dp, Hp, Wp, 16)
    Cb, KD, KH, KW = dwb.shape[0], dwb.shape[1], dwb.shape[2], dwb.shape[3]
    N, OD, OH, OW = dyb.shape[0], dyb.shape[2], dyb.shape[3], dyb.shape[4]
    Dp, Hp, Wp = xb.shape[2], xb.shape[3], xb.shape[4]
    dwf, dyf, xf = dwb.reshape(-1), dyb.reshape(-1), xb.reshape(-1)
    xs = sw * 16
    for job in prange(Cb * KD * KH):
        kh = job % KH
        t = job // KH
        kd = t % KD
        cb = t // KD
        for kw in range(KW):
            a0, a1, a2, a3 = vzero(), vzero(), vzero(), vzero()
            for n in range(N):
                for od in range(OD):
                    for oh in range(OH):
                        dyrow = (((n * Cb + cb) * OD + od) * OH + oh) * OW * 16
                        xrow = (
                            (((n * Cb + cb) * Dp + od * sd + kd * dd) * Hp + oh * sh + kh * dh) * Wp + kw * dw
                        ) * 16
                        ow = 0
                        while ow + 4 <= OW:
                            xk = xrow + ow * xs
                            g = dyrow + ow * 16
                            a0 = vfma(vload(xf, xk), vload(dyf, g), a0)
                            a1 = vfma(vload(xf, xk + xs), vload(dyf, g + 16), a1)
                            a2 = vfma(vload(xf, xk + 2 * xs), vload(dyf, g + 32), a2)
                            a3 = vfma(vload(xf, xk + 3 * xs), vload(dyf, g + 48), a3)
                            ow += 4
                        while ow < OW:
                            a0 = vfma(vload(xf, xrow + ow * xs), vload(dyf, dyrow + ow * 16), a0)
                            ow += 1
            vstore(dwf, (((cb * KD + kd) * KH + kh) * KW + kw) * 16, vadd(vadd(a0, a1), vadd(a2, a3)))


def plan_width(out_channels: int, out_width: int) -> int:
    """Padded output width: a multiple of the 4-pixel block."""
    return -(-out_width // 4) * 4


def adjoint_weight(w: np.ndarray) -> np.ndarray:
    """The weight of the adjoint (backward-input) convolution, before flipping: unchanged,
    since every channel only talks to itself."""
    return w


def run_blocked(out, xb, w, bias, stride, dilation, offsets=(0, 0, 0), phase=((0, 0, 0), (1, 1, 1))) -> None:
    """out (N, C, OD, OH, OW) = depthwise conv of blocked xb from ``offsets`` with
    w (C, 1, KD, KH, KW) + bias (C,) or None; only ``blocked.phase_view(out, phase)``."""
    shape = blocked.phase_view(out, phase).shape
    owp = plan_width(shape[1], shape[4])
    cb = blocked.blocks(shape[1])
    ob = blocked.scratch("output", (shape[0], cb, *shape[2:4], owp, LANES))
    _forward_kernel(
        ob, xb, _weight_to_blocked(w), blocked.bias_to_blocked(bias, cb), *stride, *dilation, *offsets
    )
    blocked.from_blocked(out, ob, phase)


def backward_weight_blocked(dw, dyb, xb, stride, dilation) -> None:
    """dw (C, 1, KD, KH, KW) <- from blocked dyb (N, Cb, OD, OH, OW, 16) and xb."""
    dwb = np.empty((dyb.shape[1], *dw.shape[2:], LANES), np.float32)
    _backward_weight_kernel(dwb, dyb, xb, *stride, *dilation)
    dw[:, 0] = np.moveaxis(dwb, -1, 1).reshape(-1, *dw.shape[2:])[: dw.shape[0]]


def _weight_to_blocked(w: np.ndarray) -> np.ndarray:
    """w (C, 1, KD, KH, KW) -> (Cb, KD, KH, KW, 16), zero-padded channels."""
    c = w.shape[0]
    padded = np.zeros((blocked.blocks(c) * LANES, *w.shape[2:]), np.float32)
    padded[:c] = w[:, 0]
    return np.ascontiguousarray(np.moveaxis(padded.reshape(-1, LANES, *w.shape[2:]), 1, -1))
