"""Pooling kernels on the CPU: max, average (Lp and adaptive pooling reuse it) and the
index scatters of max pooling's backward and unpooling.

Every pooling arrives lifted to 3-D and describes its windows by per-axis tables from its
geometry (start, first cell, stop, count; see ``shapes.PoolGeometry.windows``), so regular,
ceil_mode and adaptive windows share one compiled kernel per pass and dtype. Padding is never
materialised: a window skips the cells outside the input, so max pooling's -inf padding never
wins and average pooling counts padding only in its divisor. Forward kernels parallelise over
output rows and sweep each window tap along the whole row (visiting every window's cells in
scan order), which LLVM vectorises: max pooling reads the windows lying inside the row
without bounds checks, at a constant stride; backward kernels and scatters parallelise over
(n, c) planes, one thread owning a plane and accumulating in a fixed order. Results are
race-free and bitwise identical for any thread count. The index kernels check each index as
they use it, skip one outside its plane and return how many they skipped (the functional layer
raises): a separate range check was a whole extra read of the int64 indices, a third of max
pooling's backward. A float32 gradient far larger than the caches is scattered plane by plane
into a scratch plane and streamed to memory (``layout.stream_copy``) on CPUs where that pays
(``layout.streams``).

Average pooling whose windows tile the input (kernel == stride, no padding: every window
full, none overlapping) skips the tables: plain block sums, and for global pooling (one window
per plane) one contiguous sum per plane. Tables, tilings and interiors are cached per geometry.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from ...config import FASTMATH
from . import layout
from .simd import fence

_JIT = dict(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
# averages divide exactly, as PyTorch: no "arcp" (it turns a loop-invariant divisor into a
# multiplication by its rounded reciprocal, e.g. 7/3*3 == 7.0000005 in float32)
_JIT_DIV = dict(_JIT, fastmath=FASTMATH - {"arcp"})


@njit(inline="always")
def _take(orow, irow, ow, v, at, with_indices):
    # first maximum wins; NaN wins and the last NaN sticks (PyTorch)
    take = (v > orow[ow]) | (v != v)
    orow[ow] = v if take else orow[ow]
    if with_indices:
        irow[ow] = at if take else irow[ow]


def _max_pool_kernel_for(with_indices: bool):
    """The max pooling kernel with or without indices: a closure constant, not an argument, so
    each variant compiles (and caches) its own branch-free, vectorised loops."""

    @njit(**_JIT)
    def kernel(
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
        stride_w,
        lo_w,
        hi_w,
    ):
        # out, idx (N, C, OD, OH, OW) = max of x (N, C, D, H, W) over each window and (with
        # indices) its flat index d*H*W + h*W + w. Windows lo_w <= ow < hi_w (``_interior_w``)
        # lie inside the row, stride_w apart: read without bounds checks, through slices
        # indexed from 0 (a provably non-negative index is what lets LLVM vectorise)
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
            o_in, i_in = orow[lo_w:hi_w], irow[lo_w:hi_w] if with_indices else irow
            # taps in window scan order (d, h, w), each swept along the row
            for i_d in range(first_d[od], stop_d[od], dil_d):
                for ih in range(first_h[oh], stop_h[oh], dil_h):
                    xrow, row_at = x[n, c, i_d, ih], (i_d * H + ih) * W
                    for j in range(taps_w):  # edge windows skip taps outside the input
                        for edge in range(OW - o_in.size):
                            ow = edge if edge < lo_w else edge + o_in.size
                            iw = start_w[ow] + j * dil_w
                            if iw >= first_w[ow] and iw < stop_w[ow]:
                                _take(orow, irow, ow, xrow[iw], row_at + iw, with_indices)
                    j = 0
                    while j < taps_w:  # interior windows (each still sees its taps in order)
                        iw0 = start_w[lo_w] + j * dil_w  # tap j of window lo_w + k: iw0 + k*stride
                        x_in, at = xrow[max(iw0, 0) :], row_at + iw0
                        if stride_w == 2 and dil_w == 1 and j + 1 < taps_w:
                            for k in range(o_in.size):  # taps j, j + 1: one interleaved load
                                _take(o_in, i_in, k, x_in[2 * k], at + 2 * k, with_indices)
                                _take(o_in, i_in, k, x_in[2 * k + 1], at + 2 * k + 1, with_indices)
                            j += 1
                        elif stride_w == 2:  # constant strides: shuffles, not gathers
                            for k in range(o_in.size):
                                _take(o_in, i_in, k, x_in[2 * k], at + 2 * k, with_indices)
                        elif stride_w == 1:
                            for k in range(o_in.size):
                                _take(o_in, i_in, k, x_in[k], at + k, with_indices)
                        else:
                            for k in range(o_in.size):
                                _take(o_in, i_in, k, x_in[stride_w * k], at + stride_w * k, with_indices)
                        j += 1

    return kernel


_max_pool_kernels = {flag: _max_pool_kernel_for(flag) for flag in (False, True)}


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


@njit(**_JIT_DIV)
def _avg_tiled_kernel(out, x, kd, kh, kw, divisor):
    # out (N, C, OD, OH, OW) = sums of x (N, C, D, H, W) over the kd x kh x kw blocks that tile it
    # (a tail no block reaches is never read) / divisor
    N, C, OD, OH, OW = out.shape
    div = out.dtype.type(divisor)
    for job in prange(N * C * OD):  # one output plane per job, each row summed in scan order
        od = job % OD
        c = job // OD % C
        n = job // (OD * C)
        for oh in range(OH):
            orow = out[n, c, od, oh]
            orow[:] = 0
            for i_d in range(od * kd, od * kd + kd):
                for ih in range(oh * kh, oh * kh + kh):
                    xrow = x[n, c, i_d, ih]
                    if kw == 2:  # a constant stride vectorises (shuffles, not gathers)
                        for ow in range(OW):
                            orow[ow] += xrow[2 * ow] + xrow[2 * ow + 1]
                    else:
                        for j in range(kw):
                            for ow in range(OW):
                                orow[ow] += xrow[ow * kw + j]
            for ow in range(OW):
                orow[ow] /= div


@njit(**_JIT_DIV)
def _avg_tiled_backward_kernel(dx, dy, kd, kh, kw, divisor):
    # dx (N, C, D, H, W) = dy (N, C, OD, OH, OW) / divisor on every cell of its kd x kh x kw block;
    # 0 on the tail no block reaches. One pass, no zero fill first.
    N, C, D, H, W = dx.shape
    OD, OH, OW = dy.shape[2], dy.shape[3], dy.shape[4]
    div = dx.dtype.type(divisor)
    for job in prange(N * C * D):  # one input plane per job
        i_d = job % D
        c = job // D % C
        n = job // (D * C)
        od = i_d // kd
        for ih in range(H):
            xrow = dx[n, c, i_d, ih]
            oh = ih // kh
            end = 0
            if od < OD and oh < OH:
                end = OW * kw
                grow = dy[n, c, od, oh]
                if kw == 2:
                    for ow in range(OW):
                        g = grow[ow] / div
                        xrow[2 * ow] = g
                        xrow[2 * ow + 1] = g
                else:
                    for ow in range(OW):
                        g = grow[ow] / div
                        for iw in range(ow * kw, ow * kw + kw):
                            xrow[iw] = g
            for iw in range(end, W):
                xrow[iw] = 0


@njit(**_JIT_DIV)
def _row_mean_kernel(out, x, divisor):
    # out (P,) = sums of the rows of x (P, L) / divisor: global pooling, a row is an (n, c) plane
    div = x.dtype.type(divisor)
    for p in prange(x.shape[0]):
        row = x[p]
        acc = x.dtype.type(0)
        for j in range(row.shape[0]):  # a vectorised reduction
            acc += row[j]
        out[p] = acc / div


@njit(**_JIT_DIV)
def _row_fill_kernel(dx, dy, divisor):
    # dx (P, L) = dy (P,) / divisor along each row: global pooling's backward
    div = dx.dtype.type(divisor)
    for p in prange(dx.shape[0]):
        row = dx[p]
        g = dy[p] / div
        for j in range(row.shape[0]):
            row[j] = g


@njit(inline="always")
def _scatter_add_row(row, s, ix):
    # row (M,) = s (K,) summed at ix (K,); returns how many ix lie outside [0, M) (skipped).
    # Checking here, not in a pass of its own, saves a read of the indices.
    M, bad = np.uint64(row.shape[0]), 0
    row[:] = 0  # the row stays in cache for the scatter
    for j in range(s.shape[0]):
        i = np.uint64(ix[j])  # unsigned: a negative index is >= 2**63, one comparison
        if i < M:
            row[i] += s[j]
        else:
            bad += 1
    return bad


@njit(**_JIT)
def _scatter_add_kernel(out, src, idx):
    # out (P, M) = src (P, K) summed at idx (P, K) within each row; returns how many idx lie
    # outside [0, M) (skipped)
    bad = np.zeros(out.shape[0], np.int64)
    for p in prange(out.shape[0]):  # one thread owns a row (an (n, c) plane), adds in order
        bad[p] = _scatter_add_row(out[p], src[p], idx[p])
    return bad.sum()


@njit(**_JIT)
def _scatter_add_stream_kernel(out, src, idx):
    # _scatter_add_kernel for float32 rows far larger than the caches: each row summed in a
    # scratch row and streamed to out (``layout.stream_copy``), so out's lines are written
    # without being read first (resnet_maxpool's backward, alternating calls on a loaded host:
    # 0.80-1.00x, median 0.91x, in seven runs fenced by sfence; 0.94-1.00x in four with the
    # portable ``fence``, while the host was slower still)
    bad, M = np.zeros(out.shape[0], np.int64), out.shape[1]
    flat = out.reshape(-1)
    for p in prange(out.shape[0]):
        row = np.empty(M, np.float32)
        bad[p] = _scatter_add_row(row, src[p], idx[p])
        layout.stream_copy(flat, p * M, row, M)
        fence()
    return bad.sum()


@njit(**_JIT)
def _scatter_kernel(out, src, idx):
    # out (P, M) = src (P, K) placed at idx (P, K) within each row, zero elsewhere; the last
    # write wins; returns how many idx lie outside [0, M) (skipped)
    M, bad = np.uint64(out.shape[1]), np.zeros(out.shape[0], np.int64)
    for p in prange(out.shape[0]):  # one thread owns a row (an (n, c) plane)
        row = out[p]
        row[:] = 0
        for j in range(src.shape[1]):
            i = np.uint64(idx[p, j])
            if i < M:
                row[i] = src[p, j]
            else:
                bad[p] += 1
    return bad.sum()


@njit(**_JIT)
def _gather_kernel(out, src, idx):
    # out (P, K) = src (P, M) read at idx (P, K) within each row (0 where idx lies outside
    # [0, M)); returns how many do
    M, bad = np.uint64(src.shape[1]), np.zeros(out.shape[0], np.int64)
    for p in prange(out.shape[0]):
        for j in range(out.shape[1]):
            i = np.uint64(idx[p, j])
            if i < M:
                out[p, j] = src[p, i]
            else:
                out[p, j] = 0
                bad[p] += 1
    return bad.sum()


@functools.lru_cache(maxsize=256)
def _tables(geom, count_include_pad: bool = True) -> tuple[tuple[np.ndarray, ...], ...]:
    """Per axis (D, H, W): start, first, stop, count as int64 arrays; ``count`` is the clipped
    window size unless ``count_include_pad``. Cached per geometry: shared, never written."""
    tables = []
    for start, first, stop, count in geom.windows():
        first, stop = np.array(first, np.int64), np.array(stop, np.int64)
        count = np.array(count, np.int64) if count_include_pad else stop - first
        tables.append((np.array(start, np.int64), first, stop, count))
    return tuple(tables)


@functools.lru_cache(maxsize=256)
def _tile(geom) -> tuple[int, int, int] | None:
    """(kd, kh, kw) when the windows of a lifted geometry tile its input: on every axis window
    ``o`` reads exactly cells ``o*k .. o*k + k - 1`` (kernel == stride, no padding, dilation
    or clipped window; a tail past the last window is never read); else None. Such windows
    are full, so every divisor (with or without ``count_include_pad``) is kd*kh*kw."""
    if any(dil != 1 for dil in geom.dilation):
        return None
    kernel = []
    for start, first, stop, _ in geom.windows():
        k = stop[0] - first[0]
        if start != first or any(
            a != o * k or b != a + k for o, (a, b) in enumerate(zip(first, stop, strict=True))
        ):
            return None
        kernel.append(k)
    return tuple(kernel)


@functools.lru_cache(maxsize=256)
def _interior_w(geom) -> tuple[int, int, int]:
    """(stride, lo, hi): the windows ``lo <= ow < hi`` along W read every tap inside the input
    and start ``stride`` apart (no bounds checks needed); lo = hi = 0 when there are none."""
    start, first, stop, _ = geom.windows()[2]
    span = (geom.kernel[2] - 1) * geom.dilation[2]
    stride = start[1] - start[0] if len(start) > 1 else 1
    inside = [
        s == start[0] + o * stride and f <= s and s + span < b
        for o, (s, f, b) in enumerate(zip(start, first, stop, strict=True))
    ]
    if stride < 1 or True not in inside:
        return 1, 0, 0
    lo = inside.index(True)
    hi = inside.index(False, lo) if False in inside[lo:] else len(inside)
    return stride, lo, hi


def _planes(a: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) -> (N*C, prod(spatial)), contiguous."""
    return layout.contiguous(a).reshape(a.shape[0] * a.shape[1], math.prod(a.shape[2:]))


def max_pool_forward(out, indices, x, geom) -> None:
    """out, indices (N, C, OD, OH, OW) <- max pooling of x (N, C, D, H, W); geom lifted to 3-D
    (``PoolGeometry`` or ``AdaptivePoolGeometry``); ``indices=None`` skips them."""
    (_, first_d, stop_d, _), (_, first_h, stop_h, _), (start_w, first_w, stop_w, _) = _tables(geom)
    with_indices = indices is not None
    idx = indices if with_indices else np.empty((1, 1, 1, 1, 1), np.int64)
    _max_pool_kernels[with_indices](
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
        *_interior_w(geom),
    )


def max_pool_backward(dx, dy, indices) -> int:
    """dx (N, C, *in) <- dy (N, C, *out) added at the flat plane positions ``indices`` (any
    indices, repeats accumulate: PyTorch's scatter-add); returns how many indices lie outside
    the plane (skipped: the caller raises)."""
    stream = dx.dtype == np.float32 and layout.streams(dx)
    kernel = _scatter_add_stream_kernel if stream else _scatter_add_kernel
    return int(kernel(_planes(dx), _planes(dy), _planes(indices)))


def avg_pool_forward(out, x, geom, count_include_pad: bool, divisor_override: int) -> None:
    """out (N, C, OD, OH, OW) <- average pooling of x (N, C, D, H, W); divisor_override 0 = none."""
    x, tile = layout.contiguous(x), _tile(geom)
    if tile is None:
        d_axis, h_axis, w_axis = _tables(geom, count_include_pad)
        _avg_pool_kernel(out, x, *d_axis[1:], *h_axis[1:], *w_axis, geom.kernel[2], divisor_override)
    elif tile == geom.in_size and out.flags.c_contiguous:  # global: one window per plane
        _row_mean_kernel(out.reshape(-1), _planes(x), divisor_override or math.prod(tile))
    else:
        _avg_tiled_kernel(out, x, *tile, divisor_override or math.prod(tile))


def avg_pool_backward(dx, dy, geom, count_include_pad: bool, divisor_override: int) -> None:
    """dx (N, C, D, H, W) <- gradient of average pooling from dy (N, C, OD, OH, OW)."""
    dy, tile = layout.contiguous(dy), _tile(geom)
    if tile is None:
        d_axis, h_axis, w_axis = _tables(geom, count_include_pad)
        _avg_pool_backward_kernel(dx, dy, *d_axis[1:], *h_axis[1:], *w_axis[1:], divisor_override)
    elif tile == geom.in_size and dx.flags.c_contiguous:  # global: one window per plane
        _row_fill_kernel(_planes(dx), dy.reshape(-1), divisor_override or math.prod(tile))
    else:
        _avg_tiled_backward_kernel(dx, dy, *tile, divisor_override or math.prod(tile))


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


def max_unpool_forward(out, x, indices) -> int:
    """out (N, C, *out) <- zeros with x (N, C, *in) placed at the flat plane positions
    ``indices``; returns how many lie outside the plane (skipped)."""
    return int(_scatter_kernel(_planes(out), _planes(x), _planes(indices)))


def max_unpool_backward(dx, dy, indices) -> int:
    """dx (N, C, *in) <- dy (N, C, *out) read at ``indices`` (0 where one lies outside the
    plane); returns how many do."""
    return int(_gather_kernel(_planes(dx), _planes(dy), _planes(indices)))
