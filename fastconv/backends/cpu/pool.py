"""Pooling kernels on the CPU: max, average (Lp and adaptive pooling reuse it) and the
index scatters of max pooling's backward and unpooling.

Every pooling arrives lifted to 3-D and describes its windows by per-axis tables from its
geometry (start, first cell, stop, count; see ``shapes.PoolGeometry.windows``), so regular,
ceil_mode and adaptive windows share one compiled kernel per pass and dtype. Padding is never
materialised: a window skips the cells outside the input, so max pooling's -inf padding never
wins and average pooling counts padding only in its divisor. Forward kernels parallelise over
output rows and sweep each window tap along the whole row (visiting every window's cells in
scan order), which LLVM vectorises; backward kernels and scatters parallelise over (n, c)
planes, one thread owning a plane and accumulating in a fixed order. Results are race-free
and bitwise identical for any thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ...config import FASTMATH
from . import layout

_JIT = dict(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")


@njit(**_JIT)
def _max_pool_kernel(
    out,
    idx,
    x,
    first_d,
    stop_d,
    first_h,
    stop_h,
    start_w,
    first_w,
    stop_w,
    taps_w,
    dil_d,
    dil_h,
    dil_w,
    with_indices,
):
    # out, idx (N, C, OD, OH, OW) = max of x (N, C, D, H, W) over each window and (if with_indices) its flat index d*H*W + h*W + w
    N, C, OD, OH, OW = out.shape
    H, W = x.shape[3], x.shape[4]
    for job in prange(N * C * OD * OH):  # one output row per job
        oh = job % OH
        t = job // OH
        od = t % OD
        t //= OD
        c = t % C
        n = t // C
        orow, irow = out[n, c, od, oh], idx[n, c, od, oh] if with_indices else idx[0, 0, 0, 0]
        orow[:] = -np.inf
        if with_indices:  # an all -inf window points at its first cell
            for ow in range(OW):
                irow[ow] = (first_d[od] * H + first_h[oh]) * W + first_w[ow]
        # taps in window scan order (d, h, w), each swept along the row: vectorises over ow
        for i_d in range(first_d[od], stop_d[od], dil_d):
            for ih in range(first_h[oh], stop_h[oh], dil_h):
                xrow = x[n, c, i_d, ih]
                for j in range(taps_w):
                    for ow in range(OW):
                        iw = start_w[ow] + j * dil_w
                        if iw >= first_w[ow] and iw < stop_w[ow]:
                            v = xrow[iw]
                            # first maximum wins; NaN wins and the last NaN sticks (PyTorch)
                            take = v > orow[ow] or v != v
                            orow[ow] = v if take else orow[ow]
                            if with_indices:
                                irow[ow] = (i_d * H + ih) * W + iw if take else irow[ow]


@njit(**_JIT)
def _avg_pool_kernel(
    out,
    x,
    first_d,
    stop_d,
    count_d,
    first_h,
    stop_h,
    count_h,
    start_w,
    first_w,
    stop_w,
    count_w,
    taps_w,
    divisor,
):
    # out (N, C, OD, OH, OW) = window sums of x (N, C, D, H, W) / (divisor, or count_d*count_h*count_w if divisor == 0)
    N, C, OD, OH, OW = out.shape
    for job in prange(N * C * OD * OH):  # one output row per job, taps swept along it
        oh = job % OH
        t = job // OH
        od = t % OD
        t //= OD
        c = t % C
        n = t // C
        orow = out[n, c, od, oh]
        orow[:] = 0
        for i_d in range(first_d[od], stop_d[od]):
            for ih in range(first_h[oh], stop_h[oh]):
                xrow = x[n, c, i_d, ih]
                for j in range(taps_w):
                    for ow in range(OW):
                        iw = start_w[ow] + j
                        if iw >= first_w[ow] and iw < stop_w[ow]:
                            orow[ow] += xrow[iw]
        for ow in range(OW):
            div = divisor if divisor != 0 else count_d[od] * count_h[oh] * count_w[ow]
            orow[ow] /= out.dtype.type(div)


@njit(**_JIT)
def _avg_pool_backward_kernel(
    dx, dy, first_d, stop_d, count_d, first_h, stop_h, count_h, first_w, stop_w, count_w, divisor
):
    # dx (N, C, D, H, W) = sum over the windows holding each cell of dy (N, C, OD, OH, OW) / that window's divisor
    N, C = dx.shape[0], dx.shape[1]
    OD, OH, OW = dy.shape[2], dy.shape[3], dy.shape[4]
    for nc in prange(N * C):  # one thread owns a whole (n, c) plane: no races
        n, c = nc // C, nc % C
        plane = dx[n, c]
        plane[...] = 0
        for od in range(OD):
            for oh in range(OH):
                for ow in range(OW):
                    div = divisor if divisor != 0 else count_d[od] * count_h[oh] * count_w[ow]
                    g = dy[n, c, od, oh, ow] / dx.dtype.type(div)
                    for i_d in range(first_d[od], stop_d[od]):
                        for ih in range(first_h[oh], stop_h[oh]):
                            for iw in range(first_w[ow], stop_w[ow]):
                                plane[i_d, ih, iw] += g


@njit(**_JIT)
def _scatter_kernel(out, src, idx, accumulate):
    # out (P, M) = src (P, K) placed at idx (P, K) within each row; summed if accumulate, else the last write wins
    for p in prange(out.shape[0]):  # one thread owns a row (an (n, c) plane)
        row = out[p]
        row[:] = 0
        for j in range(src.shape[1]):
            if accumulate:
                row[idx[p, j]] += src[p, j]
            else:
                row[idx[p, j]] = src[p, j]


@njit(**_JIT)
def _gather_kernel(out, src, idx):
    # out (P, K) = src (P, M) read at idx (P, K) within each row
    for p in prange(out.shape[0]):
        for j in range(out.shape[1]):
            out[p, j] = src[p, idx[p, j]]


def _tables(geom, count_include_pad: bool = True) -> list[list[np.ndarray]]:
    """Per axis (D, H, W): start, first, stop, count as int64 arrays; ``count`` is the clipped
    window size unless ``count_include_pad``."""
    tables = []
    for start, first, stop, count in geom.windows():
        first, stop = np.array(first, np.int64), np.array(stop, np.int64)
        count = np.array(count, np.int64) if count_include_pad else stop - first
        tables.append([np.array(start, np.int64), first, stop, count])
    return tables


def _planes(a: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) -> (N*C, prod(spatial)), contiguous."""
    return layout.contiguous(a).reshape(a.shape[0] * a.shape[1], math.prod(a.shape[2:]))


def max_pool_forward(out, indices, x, geom) -> None:
    """out, indices (N, C, OD, OH, OW) <- max pooling of x (N, C, D, H, W); geom lifted to 3-D
    (``PoolGeometry`` or ``AdaptivePoolGeometry``); ``indices=None`` skips them."""
    (_, first_d, stop_d, _), (_, first_h, stop_h, _), (start_w, first_w, stop_w, _) = _tables(geom)
    with_indices = indices is not None
    idx = indices if with_indices else np.empty((1, 1, 1, 1, 1), np.int64)
    _max_pool_kernel(
        out,
        idx,
        layout.contiguous(x),
        first_d,
        stop_d,
        first_h,
        stop_h,
        start_w,
        first_w,
        stop_w,
        geom.kernel[2],
        *geom.dilation,
        with_indices,
    )


def max_pool_backward(dx, dy, indices) -> None:
    """dx (N, C, *in) <- dy (N, C, *out) added at the flat plane positions ``indices``."""
    _scatter_kernel(_planes(dx), _planes(dy), _planes(indices), True)


def avg_pool_forward(out, x, geom, count_include_pad: bool, divisor_override: int) -> None:
    """out (N, C, OD, OH, OW) <- average pooling of x (N, C, D, H, W); divisor_override 0 = none."""
    d_axis, h_axis, w_axis = _tables(geom, count_include_pad)
    _avg_pool_kernel(
        out, layout.contiguous(x), *d_axis[1:], *h_axis[1:], *w_axis, geom.kernel[2], divisor_override
    )


def avg_pool_backward(dx, dy, geom, count_include_pad: bool, divisor_override: int) -> None:
    """dx (N, C, D, H, W) <- gradient of average pooling from dy (N, C, OD, OH, OW)."""
    d_axis, h_axis, w_axis = _tables(geom, count_include_pad)
    _avg_pool_backward_kernel(
        dx, layout.contiguous(dy), *d_axis[1:], *h_axis[1:], *w_axis[1:], divisor_override
    )


def lp_pool_forward(out, x, norm_type: float, geom) -> None:
    """out = (prod(kernel) * avg_pool(x**p)) ** (1/p), PyTorch's formula (a window clipped by
    ceil_mode is averaged over its cells, then scaled by the full kernel size)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        avg_pool_forward(out, np.power(x, norm_type), geom, False, 0)
        out *= math.prod(geom.kernel)
        np.power(out, 1.0 / norm_type, out=out)


def lp_pool_backward(dx, dy, x, norm_type: float, geom) -> None:
    """dx = avg_pool_backward(dy * K * y**(1-p)) * x**(p-1), with y the forward output and
    K = prod(kernel); zero where y is zero (PyTorch's convention)."""
    y = np.empty(dy.shape, dy.dtype)
    lp_pool_forward(y, x, norm_type, geom)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        scale = np.zeros_like(y)
        np.power(y, 1.0 - norm_type, out=scale, where=y != 0)
        g = dy * scale * y.dtype.type(math.prod(geom.kernel))
        avg_pool_backward(dx, g, geom, False, 0)
        dx *= np.power(x, norm_type - 1.0)


def max_unpool_forward(out, x, indices) -> None:
    """out (N, C, *out) <- zeros with x (N, C, *in) placed at the flat plane positions ``indices``."""
    _scatter_kernel(_planes(out), _planes(x), _planes(indices), False)


def max_unpool_backward(dx, dy, indices) -> None:
    """dx (N, C, *in) <- dy (N, C, *out) read at ``indices``."""
    _gather_kernel(_planes(dx), _planes(dy), _planes(indices))
