"""Direct convolution kernels on the CPU, forward and both backward passes.

All convolutions arrive lifted to 3-D (a 1-D or 2-D problem has unit leading axes), so one
compiled kernel per pass and dtype serves every shape, and nothing recompiles per call.
Each kernel runs on an input already padded by ``layout.padded_input`` (padding folded into
the layout copy, no branches in the inner loops) and parallelises over output elements it
owns outright: every output value is computed by one thread in a fixed order, so results
are race-free and bitwise identical for any thread count. The innermost loop runs along the
contiguous width axis so LLVM vectorises it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ... import config
from ...config import FASTMATH
from ...shapes import ConvGeometry
from . import conv_simd, layout

_JIT = dict(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")


@njit(**_JIT)
def _conv_forward_kernel(out, xp, w, bias, stride_d, stride_h, stride_w, dil_d, dil_h, dil_w, groups):
    # out (N, O, OD, OH, OW) = valid conv of xp (N, C, Dp, Hp, Wp) with w (O, C/groups, KD, KH, KW) + bias (O,)
    N, O, OD, OH, OW = out.shape
    c_per_group, KD, KH, KW = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    o_per_group = O // groups
    for job in prange(N * O * OD * OH):  # one output row per job
        oh = job % OH
        t = job // OH
        od = t % OD
        t //= OD
        o = t % O
        n = t // O
        c0 = (o // o_per_group) * c_per_group
        row = out[n, o, od, oh]
        row[:] = bias[o]
        for c in range(c_per_group):
            for kd in range(KD):
                for kh in range(KH):
                    xrow = xp[n, c0 + c, od * stride_d + kd * dil_d, oh * stride_h + kh * dil_h]
                    for kw in range(KW):
                        wv = w[o, c, kd, kh, kw]
                        base = kw * dil_w
                        if stride_w == 1:  # unit stride: a contiguous, vectorised loop
                            for ow in range(OW):
                                row[ow] += wv * xrow[base + ow]
                        else:
                            for ow in range(OW):
                                row[ow] += wv * xrow[base + ow * stride_w]


@njit(**_JIT)
def _conv_backward_input_kernel(dxp, dy, w, stride_d, stride_h, stride_w, dil_d, dil_h, dil_w, groups):
    # dxp (N, C, Dp, Hp, Wp) = d loss / d padded input, from dy (N, O, OD, OH, OW) and w (O, C/groups, KD, KH, KW)
    N, C, Dp, Hp, Wp = dxp.shape
    O, OD, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3], dy.shape[4]
    c_per_group, KD, KH, KW = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    o_per_group = O // groups
    for job in prange(N * C * Dp * Hp):  # one padded-input row per job: a gather over (kd, kh)
        ih = job % Hp
        t = job // Hp
        i_d = t % Dp
        t //= Dp
        c = t % C
        n = t // C
        g, cg = c // c_per_group, c % c_per_group
        row = dxp[n, c, i_d, ih]
        row[:] = 0
        for kd in range(KD):
            # input plane i_d is read by output plane od at tap kd iff i_d = od*stride_d + kd*dil_d
            td = i_d - kd * dil_d
            if td < 0 or td % stride_d != 0 or td // stride_d >= OD:
                continue
            od = td // stride_d
            for kh in range(KH):
                th = ih - kh * dil_h
                if th < 0 or th % stride_h != 0 or th // stride_h >= OH:
                    continue
                oh = th // stride_h
                for o in range(g * o_per_group, (g + 1) * o_per_group):
                    dyrow = dy[n, o, od, oh]
                    for kw in range(KW):  # along the row the thread owns, scatter is race-free
                        wv = w[o, cg, kd, kh, kw]
                        base = kw * dil_w
                        if stride_w == 1:
                            for ow in range(OW):
                                row[base + ow] += wv * dyrow[ow]
                        else:
                            for ow in range(OW):
                                row[base + ow * stride_w] += wv * dyrow[ow]


@njit(**_JIT)
def _conv_backward_weight_kernel(dw, dy, xp, stride_d, stride_h, stride_w, dil_d, dil_h, dil_w, groups):
    # dw (O, C/groups, KD, KH, KW) = sum over n and outputs of dy (N, O, OD, OH, OW) * xp (N, C, Dp, Hp, Wp)
    O, c_per_group, KD, KH, KW = dw.shape
    N, OD, OH, OW = dy.shape[0], dy.shape[2], dy.shape[3], dy.shape[4]
    o_per_group = O // groups
    for job in prange(
        O * c_per_group * KD * KH
    ):  # one row of KW weights per job, no reduction across threads
        kh = job % KH
        t = job // KH
        kd = t % KD
        t //= KD
        c = t % c_per_group
        o = t // c_per_group
        ci = (o // o_per_group) * c_per_group + c
        for kw in range(KW):
            acc = dw.dtype.type(0)
            base = kw * dil_w
            for n in range(N):
                for od in range(OD):
                    for oh in range(OH):
                        xrow = xp[n, ci, od * stride_d + kd * dil_d, oh * stride_h + kh * dil_h]
                        dyrow = dy[n, o, od, oh]
                        if stride_w == 1:
                            for ow in range(OW):
                                acc += dyrow[ow] * xrow[base + ow]
                        else:
                            for ow in range(OW):
                                acc += dyrow[ow] * xrow[base + ow * stride_w]
            dw[o, c, kd, kh, kw] = acc


def _ints(geom: ConvGeometry) -> tuple[int, ...]:
    return (*geom.stride, *geom.dilation, geom.groups)


def algorithm(op: str, geom: ConvGeometry, dtype) -> str:
    """``"simd"`` or ``"direct"`` for ``op`` (forward, backward_input, backward_weight): the
    register-blocked SIMD kernels wherever they apply, unless ``config.CONV_ALGORITHM``
    forces one (tests force each path so that every one is exercised)."""
    if config.CONV_ALGORITHM == "direct" or not conv_simd.supports(geom, dtype):
        return "direct"
    return "simd"


def conv_forward(out, x, w, bias, geom: ConvGeometry) -> None:
    """out (N, O, OD, OH, OW) <- conv(x (N, C, D, H, W), w (O, C/g, KD, KH, KW)) + bias (O,) or None."""
    if algorithm("forward", geom, out.dtype) == "simd":
        conv_simd.conv_forward(out, x, w, bias, geom)
        return
    xp = layout.padded_input(x, geom)
    b = np.zeros(out.shape[1], out.dtype) if bias is None else layout.contiguous(bias)
    _conv_forward_kernel(out, xp, layout.contiguous(w), b, *_ints(geom))


def conv_backward_input(dx, dy, w, geom: ConvGeometry) -> None:
    """dx (N, C, D, H, W) <- d loss / d x from dy (N, O, OD, OH, OW) and w (O, C/g, KD, KH, KW)."""
    if algorithm("backward_input", geom, dx.dtype) == "simd":
        conv_simd.conv_backward_input(dx, dy, w, geom)
        return
    dy, w = layout.contiguous(dy), layout.contiguous(w)
    if layout.pad_maps(geom) is None and layout.extents(geom) == tuple(dx.shape[2:]):
        _conv_backward_input_kernel(dx, dy, w, *_ints(geom))
        return
    dxp = np.empty(dx.shape[:2] + layout.extents(geom), dtype=dx.dtype)
    _conv_backward_input_kernel(dxp, dy, w, *_ints(geom))
    layout.fold_padded_grad(dx, dxp, geom)


def conv_backward_weight(dw, dy, x, geom: ConvGeometry) -> None:
    """dw (O, C/g, KD, KH, KW) <- d loss / d w from dy (N, O, OD, OH, OW) and x (N, C, D, H, W)."""
    if algorithm("backward_weight", geom, dw.dtype) == "simd":
        conv_simd.conv_backward_weight(dw, dy, x, geom)
        return
    _conv_backward_weight_kernel(dw, layout.contiguous(dy), layout.padded_input(x, geom), *_ints(geom))


def conv_backward_bias(db, dy) -> None:
    """db (O,) <- sum of dy (N, O, OD, OH, OW) over every axis but channels."""
    db[...] = layout.contiguous(dy).sum(axis=(0, 2, 3, 4), dtype=dy.dtype)  # layout fixes the order
