"""Pooling on the GPU: max, average (adaptive and Lp pooling reuse them), max-pool's index
scatter and unpooling, with the CPU backend's op names and signatures.

Windows come from the geometry's per-axis tables (``geom.windows()``: first cell, stop,
count), copied to the GPU once per geometry and cached, so regular, ceil_mode and adaptive
windows share one kernel. Every output cell has one thread. Backward passes write each
input cell from one thread, with no atomics: average pooling gathers over the windows that
hold a cell (per-axis inverse tables: windows are intervals, so those holding a cell are a
range), max pooling's index scatter gives one thread a whole (n, c) plane.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

from .device import grid_stride, launch_1d


@cuda.jit(device=True)
def _cell(j, C, D, H, W):
    # (n, c, d, h, w) of flat index j of an (N, C, D, H, W) array
    w = j % W
    t = j // W
    h = t % H
    t //= H
    d = t % D
    t //= D
    return t // C, t % C, d, h, w


@cuda.jit
def _max_pool_kernel(
    out, idx, x, first_d, stop_d, first_h, stop_h, first_w, stop_w, dil_d, dil_h, dil_w, neg_inf,
    with_indices,
):  # fmt: skip
    # out, idx (N, C, OD, OH, OW) <- max of x (N, C, D, H, W) over each window and (if with_indices) its flat index
    N, C, OD, OH, OW = out.shape
    H, W = x.shape[3], x.shape[4]
    j, step = grid_stride()
    while j < N * C * OD * OH * OW:
        n, c, od, oh, ow = _cell(j, C, OD, OH, OW)
        best = neg_inf
        best_i = (first_d[od] * H + first_h[oh]) * W + first_w[ow]
        for i_d in range(first_d[od], stop_d[od], dil_d):
            for ih in range(first_h[oh], stop_h[oh], dil_h):
                for iw in range(first_w[ow], stop_w[ow], dil_w):
                    v = x[n, c, i_d, ih, iw]
                    if v > best or v != v:  # first maximum wins; NaN wins, the last NaN sticks (PyTorch)
                        best = v
                        best_i = (i_d * H + ih) * W + iw
        out[n, c, od, oh, ow] = best
        if with_indices:
            idx[n, c, od, oh, ow] = best_i
        j += step


@cuda.jit
def _avg_pool_kernel(
    out, x, first_d, stop_d, count_d, first_h, stop_h, count_h, first_w, stop_w, count_w, divisor, zero
):
    # out (N, C, OD, OH, OW) <- window sums of x (N, C, D, H, W) / (divisor, or the counts' product if divisor == 0)
    N, C, OD, OH, OW = out.shape
    j, step = grid_stride()
    while j < N * C * OD * OH * OW:
        n, c, od, oh, ow = _cell(j, C, OD, OH, OW)
        acc = zero
        for i_d in range(first_d[od], stop_d[od]):
            for ih in range(first_h[oh], stop_h[oh]):
                for iw in range(first_w[ow], stop_w[ow]):
                    acc += x[n, c, i_d, ih, iw]
        div = divisor if divisor != 0 else count_d[od] * count_h[oh] * count_w[ow]
        out[n, c, od, oh, ow] = acc / div
        j += step


@cuda.jit
def _avg_pool_backward_kernel(
    dx, dy, lo_d, hi_d, lo_h, hi_h, lo_w, hi_w, count_d, count_h, count_w, divisor, zero
):
    # dx (N, C, D, H, W) <- sum of dy (N, C, OD, OH, OW) / divisor over the windows [lo, hi) per axis holding each cell
    N, C, D, H, W = dx.shape
    j, step = grid_stride()
    while j < N * C * D * H * W:
        n, c, i_d, ih, iw = _cell(j, C, D, H, W)
        acc = zero
        for od in range(lo_d[i_d], hi_d[i_d]):
            for oh in range(lo_h[ih], hi_h[ih]):
                for ow in range(lo_w[iw], hi_w[iw]):
                    div = divisor if divisor != 0 else count_d[od] * count_h[oh] * count_w[ow]
                    acc += dy[n, c, od, oh, ow] / div
        dx[n, c, i_d, ih, iw] = acc
        j += step


@cuda.jit
def _scatter_kernel(out, src, idx, accumulate, zero):
    # out (P, M) <- src (P, K) placed at idx (P, K) in each row, summed if accumulate, else the last write wins
    p, step = grid_stride()
    M = out.shape[1]
    while p < out.shape[0]:  # one thread owns a row (an (n, c) plane): no races
        for m in range(M):
            out[p, m] = zero
        for k in range(src.shape[1]):
            i = idx[p, k]
            if i >= 0 and i < M:
                if accumulate:
                    out[p, i] += src[p, k]
                else:
                    out[p, i] = src[p, k]
        p += step


@cuda.jit
def _gather_kernel(out, src, idx, zero):
    # out (P, K) <- src (P, M) read at idx (P, K) in each row (zero for an index out of range)
    j, step = grid_stride()
    K, M = out.shape[1], src.shape[1]
    while j < out.shape[0] * K:
        p, k = j // K, j % K
        i = idx[p, k]
        out[p, k] = src[p, i] if i >= 0 and i < M else zero
        j += step


@cuda.jit
def _power_kernel(out, x, scale, p):
    # out (n,) <- (scale * x (n,)) ** p
    j, step = grid_stride()
    while j < out.shape[0]:
        out[j] = math.pow(scale * x[j], p)
        j += step


@cuda.jit
def _lp_grad_kernel(g, dy, y, scale, power):
    # g (n,) <- dy * scale * y ** power, zero where y == 0 (PyTorch's convention; power = 1 - p)
    j, step = grid_stride()
    while j < g.shape[0]:
        if y[j] == 0:
            g[j] = 0
        else:
            g[j] = dy[j] * scale * math.pow(y[j], power)
        j += step


@cuda.jit
def _mul_power_kernel(dx, x, power):
    # dx (n,) *= x (n,) ** power
    j, step = grid_stride()
    while j < dx.shape[0]:
        dx[j] *= math.pow(x[j], power)
        j += step


@functools.lru_cache(maxsize=128)
def _tables(geom, dtype, count_include_pad: bool = True) -> tuple:
    """first, stop (int64) and count (in the data's dtype, so a division stays in it) per axis
    (D, H, W), on the GPU; ``count`` is the clipped window size unless ``count_include_pad``."""
    tables = []
    for _, first, stop, count in geom.windows():
        first, stop = np.array(first, np.int64), np.array(stop, np.int64)
        count = np.array(count, np.int64) if count_include_pad else stop - first
        tables += [cuda.to_device(first), cuda.to_device(stop), cuda.to_device(count.astype(dtype))]
    return tuple(tables)


@functools.lru_cache(maxsize=128)
def _inverse_tables(geom) -> tuple:
    """Per axis, the range [lo, hi) of windows that hold each input cell, on the GPU."""
    tables = []
    for (_, first, stop, _), n in zip(geom.windows(), geom.in_size, strict=True):
        cells = np.arange(n)[:, None]
        holds = (np.array(first)[None, :] <= cells) & (cells < np.array(stop)[None, :])
        any_ = holds.any(axis=1)
        lo = np.where(any_, holds.argmax(axis=1), 0).astype(np.int64)
        hi = np.where(any_, holds.shape[1] - holds[:, ::-1].argmax(axis=1), 0).astype(np.int64)
        tables += [cuda.to_device(lo), cuda.to_device(hi)]
    return tuple(tables)


def _planes(a):
    """(N, C, *spatial) -> (N*C, prod(spatial)), a view of a contiguous CUDA array."""
    return a.reshape((a.shape[0] * a.shape[1], math.prod(a.shape[2:])))


def _flat(a):
    return a.reshape((a.size,))


def max_pool_forward(out, indices, x, geom) -> None:
    """out, indices (N, C, OD, OH, OW) <- max pooling of x (N, C, D, H, W); geom lifted to 3-D
    (``PoolGeometry`` or ``AdaptivePoolGeometry``); ``indices=None`` skips them."""
    t = list(_tables(geom, np.dtype(out.dtype)))
    del t[2::3]  # max pooling needs no counts
    idx = _no_indices() if indices is None else indices
    neg_inf = out.dtype.type(-np.inf)
    launch_1d(_max_pool_kernel, out.size, out, idx, x, *t, *geom.dilation, neg_inf, indices is not None)


@functools.cache
def _no_indices():
    return cuda.device_array((1, 1, 1, 1, 1), dtype=np.int64)


def max_pool_backward(dx, dy, indices) -> int:
    """dx (N, C, *in) <- dy (N, C, *out) added at the flat plane positions ``indices``; an
    index outside the plane is skipped, uncounted (device indices are not checked): 0."""
    launch_1d(
        _scatter_kernel,
        dx.shape[0] * dx.shape[1],
        _planes(dx),
        _planes(dy),
        _planes(indices),
        True,
        dx.dtype.type(0),
    )
    return 0


def _divisor(dtype, divisor_override: int):
    return np.dtype(dtype).type(divisor_override)


def avg_pool_forward(out, x, geom, count_include_pad: bool, divisor_override: int) -> None:
    """out (N, C, OD, OH, OW) <- average pooling of x (N, C, D, H, W); divisor_override 0 = none."""
    dtype = np.dtype(out.dtype)
    t = _tables(geom, dtype, bool(count_include_pad))
    launch_1d(_avg_pool_kernel, out.size, out, x, *t, _divisor(dtype, divisor_override), dtype.type(0))


def avg_pool_backward(dx, dy, geom, count_include_pad: bool, divisor_override: int) -> None:
    """dx (N, C, D, H, W) <- gradient of average pooling from dy (N, C, OD, OH, OW)."""
    dtype = np.dtype(dx.dtype)
    counts = _tables(geom, dtype, bool(count_include_pad))[2::3]
    launch_1d(
        _avg_pool_backward_kernel,
        dx.size,
        dx,
        dy,
        *_inverse_tables(geom),
        *counts,
        _divisor(dtype, divisor_override),
        dtype.type(0),
    )


def lp_pool_forward(out, x, norm_type: float, geom) -> None:
    """out = (prod(kernel) * avg_pool(x**p)) ** (1/p), PyTorch's formula (a window clipped by
    ceil_mode is averaged over its cells, then scaled by the full kernel size)."""
    t = out.dtype.type
    xp = cuda.device_array(x.shape, dtype=x.dtype)
    launch_1d(_power_kernel, xp.size, _flat(xp), _flat(x), t(1), t(norm_type))
    avg_pool_forward(out, xp, geom, False, 0)
    launch_1d(_power_kernel, out.size, _flat(out), _flat(out), t(math.prod(geom.kernel)), t(1 / norm_type))


def lp_pool_backward(dx, dy, x, norm_type: float, geom) -> None:
    """dx = avg_pool_backward(dy * K * y**(1-p)) * x**(p-1), with y the forward output and
    K = prod(kernel); zero where y is zero (PyTorch's convention)."""
    t = dx.dtype.type
    y = cuda.device_array(dy.shape, dtype=dy.dtype)
    lp_pool_forward(y, x, norm_type, geom)
    g = cuda.device_array(dy.shape, dtype=dy.dtype)
    launch_1d(
        _lp_grad_kernel, g.size, _flat(g), _flat(dy), _flat(y), t(math.prod(geom.kernel)), t(1 - norm_type)
    )
    avg_pool_backward(dx, g, geom, False, 0)
    launch_1d(_mul_power_kernel, dx.size, _flat(dx), _flat(x), t(norm_type - 1))


def max_unpool_forward(out, x, indices) -> int:
    """out (N, C, *out) <- zeros with x (N, C, *in) placed at the flat plane positions
    ``indices``; an index outside the plane is skipped, uncounted: 0."""
    launch_1d(
        _scatter_kernel,
        out.shape[0] * out.shape[1],
        _planes(out),
        _planes(x),
        _planes(indices),
        False,
        out.dtype.type(0),
    )
    return 0


def max_unpool_backward(dx, dy, indices) -> int:
    """dx (N, C, *in) <- dy (N, C, *out) read at ``indices`` (0 where one lies outside the
    plane, uncounted): 0."""
    launch_1d(_gather_kernel, dx.size, _planes(dx), _planes(dy), _planes(indices), dx.dtype.type(0))
    return 0
