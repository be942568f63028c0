"""Convolution on the GPU: forward and both backward passes as implicit GEMMs.

Every pass is one ``gemm.run`` whose device functions say what A, B and C are (and how a flat
index decodes: output pixels by division, taps through a small table ``_taps``):

- forward: A = im2col(x) (taps x output pixels), B = w (taps x output channels);
- backward input, a gather (no atomics): A = dy read through the taps that touch each input
  cell (output-channel taps x input pixels), B = w (output-channel taps x input channels);
  with a non-zero padding mode the GEMM fills the padded gradient and ``padding.fold``
  sums it back onto the input;
- backward weight: A = dy (output pixels x output channels), B = im2col(x) (output pixels x
  taps), split over K (N x output pixels) with a fixed-order sum of the slices.

Padding is never materialised: the loaders read x through ``padding.source``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from numba import cuda, int64
from numba.np import numpy_support

from ...shapes import ConvGeometry
from . import gemm
from .device import grid_stride, launch, launch_1d, threads
from .padding import MODES, fold, source


class Geo(NamedTuple):
    """Plain ints every loader reads (a numba named tuple in the kernels)."""

    out_d: int  # convolution output (dy) spatial size
    out_h: int
    out_w: int
    k_d: int
    k_h: int
    k_w: int
    stride_d: int
    stride_h: int
    stride_w: int
    dil_d: int
    dil_h: int
    dil_w: int
    off_d: int  # coordinate added to every position: -pad_lo when reading x, +pad_lo for dx
    off_h: int
    off_w: int
    grid_d: int  # spatial size of the pixel grid the rows of C enumerate when it is not dy's
    grid_h: int
    grid_w: int
    mode: int  # padding.MODES
    c_per_group: int
    o_per_group: int
    has_bias: int


@cuda.jit(device=True)
def _pixel(m, size_d, size_h, size_w):
    # (n, d, h, w) of flat pixel m of an (N, size_d, size_h, size_w) grid
    w = m % size_w
    t = m // size_w
    h = t % size_h
    t //= size_h
    return t // size_d, t % size_d, h, w


# -- contexts (gemm.GemmOp): what a flat index of K, the rows or the columns of C stands for --


@cuda.jit(device=True)
def _tap_ctx(geo, taps, k):
    # (channel, kd, kh, kw) of flat tap k, from the table of taps
    return taps[k, 0], taps[k, 1], taps[k, 2], taps[k, 3]


@cuda.jit(device=True)
def _out_pixel_ctx(geo, taps, m):
    # (n, od, oh, ow) of flat output pixel m
    return _pixel(m, geo.out_d, geo.out_h, geo.out_w)


@cuda.jit(device=True)
def _grid_pixel_ctx(geo, taps, m):
    # (n, d, h, w) of flat cell m of the grid dx (or the padded dx) is computed on
    return _pixel(m, geo.grid_d, geo.grid_h, geo.grid_w)


@cuda.jit(device=True)
def _index_ctx(geo, taps, i):
    # a channel index needs no decoding
    return i, int64(0), int64(0), int64(0)


@cuda.jit(device=True)
def _input_at(x, geo, n, c, od, oh, ow, kd, kh, kw, zero):
    # x (N, C, D, H, W) under tap (kd, kh, kw) of output pixel (od, oh, ow), through the padding mode
    i_d = source(od * geo.stride_d + kd * geo.dil_d + geo.off_d, x.shape[2], geo.mode)
    i_h = source(oh * geo.stride_h + kh * geo.dil_h + geo.off_h, x.shape[3], geo.mode)
    i_w = source(ow * geo.stride_w + kw * geo.dil_w + geo.off_w, x.shape[4], geo.mode)
    if i_d < 0 or i_h < 0 or i_w < 0:
        return zero
    return x[n, c, i_d, i_h, i_w]


@cuda.jit(device=True)
def _reader(p, k, dil, stride, size):
    # output index whose tap k reads padded coordinate p, or -1 if none does
    t = p - k * dil
    if t < 0 or t % stride != 0 or t // stride >= size:
        return -1
    return t // stride


# -- forward: out[n, g*og + o, pixel] = sum_(c, taps) x[...] * w[g*og + o, c, taps] (+ bias) --


@cuda.jit(device=True)
def _forward_load_x(x, geo, g, tap, pixel, zero):
    c, kd, kh, kw = tap
    n, od, oh, ow = pixel
    return _input_at(x, geo, n, g * geo.c_per_group + c, od, oh, ow, kd, kh, kw, zero)


@cuda.jit(device=True)
def _forward_load_w(w, geo, g, tap, o_ctx, zero):
    c, kd, kh, kw = tap
    return w[g * geo.o_per_group + o_ctx[0], c, kd, kh, kw]


@cuda.jit(device=True)
def _forward_store(out, bias, geo, g, split, m, o, value):
    n, od, oh, ow = _pixel(m, geo.out_d, geo.out_h, geo.out_w)
    oc = g * geo.o_per_group + o
    if geo.has_bias:
        value += bias[oc]
    out[n, oc, od, oh, ow] = value


# -- backward input: dx[n, g*cg + c, cell] = sum_(o, taps reading cell) dy[...] * w[..., c, taps] --


@cuda.jit(device=True)
def _backward_input_load_dy(dy, geo, g, tap, cell, zero):
    o, kd, kh, kw = tap
    n, p_d, p_h, p_w = cell
    od = _reader(p_d + geo.off_d, kd, geo.dil_d, geo.stride_d, geo.out_d)
    oh = _reader(p_h + geo.off_h, kh, geo.dil_h, geo.stride_h, geo.out_h)
    ow = _reader(p_w + geo.off_w, kw, geo.dil_w, geo.stride_w, geo.out_w)
    if od < 0 or oh < 0 or ow < 0:
        return zero
    return dy[n, g * geo.o_per_group + o, od, oh, ow]


@cuda.jit(device=True)
def _backward_input_load_w(w, geo, g, tap, c_ctx, zero):
    o, kd, kh, kw = tap
    return w[g * geo.o_per_group + o, c_ctx[0], kd, kh, kw]


@cuda.jit(device=True)
def _backward_input_store(dx, aux, geo, g, split, m, c, value):
    n, p_d, p_h, p_w = _pixel(m, geo.grid_d, geo.grid_h, geo.grid_w)
    dx[n, g * geo.c_per_group + c, p_d, p_h, p_w] = value


# -- backward weight: dw[g*og + o, (c, taps)] = sum_(n, pixel) dy[n, g*og + o, pixel] * x[...] --


@cuda.jit(device=True)
def _backward_weight_load_dy(dy, geo, g, pixel, o_ctx, zero):
    n, od, oh, ow = pixel
    return dy[n, g * geo.o_per_group + o_ctx[0], od, oh, ow]


@cuda.jit(device=True)
def _backward_weight_load_x(x, geo, g, pixel, tap, zero):
    n, od, oh, ow = pixel
    c, kd, kh, kw = tap
    return _input_at(x, geo, n, g * geo.c_per_group + c, od, oh, ow, kd, kh, kw, zero)


@cuda.jit(device=True)
def _backward_weight_store(slabs, aux, geo, g, split, o, col, value):
    slabs[split, g * geo.o_per_group + o, col] = value


# (k_ctx, m_ctx, n_ctx, load_a, load_b, store, a_k_fast)
FORWARD = gemm.GemmOp(
    _tap_ctx, _out_pixel_ctx, _index_ctx, _forward_load_x, _forward_load_w, _forward_store, False
)
BACKWARD_INPUT = gemm.GemmOp(
    _tap_ctx,
    _grid_pixel_ctx,
    _index_ctx,
    _backward_input_load_dy,
    _backward_input_load_w,
    _backward_input_store,
    False,
)
BACKWARD_WEIGHT = gemm.GemmOp(
    _out_pixel_ctx,
    _index_ctx,
    _tap_ctx,
    _backward_weight_load_dy,
    _backward_weight_load_x,
    _backward_weight_store,
    True,
)


@functools.lru_cache(maxsize=64)
def _taps(channels: int, kernel: tuple[int, int, int]):
    """The table of taps on the GPU: row k is (channel, kd, kh, kw) of flat tap k."""
    rows = np.arange(channels * math.prod(kernel))
    return cuda.to_device(np.stack(np.unravel_index(rows, (channels, *kernel)), axis=1).astype(np.int64))


@cuda.jit
def _sum_slabs_kernel(out, slabs, zero):
    # out (P,) <- sum over s of slabs (S, P), in order s = 0, 1, ...
    i, step = grid_stride()
    while i < out.shape[0]:
        acc = zero
        for s in range(slabs.shape[0]):
            acc += slabs[s, i]
        out[i] = acc
        i += step


@functools.cache
def _bias_kernel(dtype, nt: int):
    T = numpy_support.from_dtype(dtype)

    @cuda.jit
    def bias_backward(db, dy, zero):
        # db (O,) <- sum of dy (N, O, D, H, W) over all axes but O: block o, a tree in shared memory
        o = int64(cuda.blockIdx.x)
        tid = int64(cuda.threadIdx.x)
        N, D, H, W = dy.shape[0], dy.shape[2], dy.shape[3], dy.shape[4]
        acc = zero
        j = tid
        while j < N * D * H * W:
            n, d, h, w = _pixel(j, D, H, W)
            acc += dy[n, o, d, h, w]
            j += nt
        buf = cuda.shared.array(nt, T)
        buf[tid] = acc
        cuda.syncthreads()
        width = nt // 2
        while width > 0:
            if tid < width:
                buf[tid] += buf[tid + width]
            cuda.syncthreads()
            width //= 2
        if tid == 0:
            db[o] = buf[0]

    return bias_backward


@functools.cache
def _placeholder(dtype):
    """A one-element array passed where a kernel takes an array it will not read."""
    return cuda.device_array(1, dtype=dtype)


def _geo(geom: ConvGeometry, w_shape, off, grid=(1, 1, 1), has_bias=False) -> Geo:
    o, c_per_group = w_shape[0], w_shape[1]
    return Geo(
        *geom.out_size,
        *geom.kernel,
        *geom.stride,
        *geom.dilation,
        *off,
        *grid,
        MODES[geom.padding_mode],
        c_per_group,
        o // geom.groups,
        int(has_bias),
    )


def _neg(t):
    return tuple(-v for v in t)


def conv_forward(out, x, w, bias, geom: ConvGeometry) -> None:
    """out (N, O, OD, OH, OW) <- conv(x (N, C, D, H, W), w (O, C/g, KD, KH, KW)) + bias (O,) or None."""
    geo = _geo(geom, w.shape, _neg(geom.pad_lo), has_bias=bias is not None)
    aux = _placeholder(out.dtype) if bias is None else bias
    rows = out.shape[0] * math.prod(geom.out_size)
    depth = w.shape[1] * math.prod(geom.kernel)
    taps = _taps(w.shape[1], geom.kernel)
    gemm.run(FORWARD, out, aux, x, w, taps, geo, geom.groups, rows, geo.o_per_group, depth)


def _extents(geom: ConvGeometry) -> tuple[int, ...]:
    """Padded size each axis needs: the last cell the last window touches, plus one."""
    return tuple(
        (o - 1) * s + (k - 1) * dil + 1
        for o, s, k, dil in zip(geom.out_size, geom.stride, geom.kernel, geom.dilation, strict=True)
    )


def conv_backward_input(dx, dy, w, geom: ConvGeometry) -> None:
    """dx (N, C, D, H, W) <- d loss / d x from dy (N, O, OD, OH, OW) and w (O, C/g, KD, KH, KW)."""
    direct = geom.padding_mode == "zeros" or not any(geom.pad_lo + geom.pad_hi)
    # zeros: C's rows are the input cells (padded coordinate = cell + pad_lo); otherwise
    # they are the padded cells, folded back onto the input afterwards
    target = dx if direct else cuda.device_array(dx.shape[:2] + _extents(geom), dtype=dx.dtype)
    geo = _geo(geom, w.shape, geom.pad_lo if direct else (0, 0, 0), grid=target.shape[2:])
    rows = target.shape[0] * math.prod(target.shape[2:])
    depth = geo.o_per_group * math.prod(geom.kernel)
    taps = _taps(geo.o_per_group, geom.kernel)
    gemm.run(BACKWARD_INPUT, target, target, dy, w, taps, geo, geom.groups, rows, w.shape[1], depth)
    if not direct:
        fold(dx, target, geom.pad_lo, geom.padding_mode)


def conv_backward_weight(dw, dy, x, geom: ConvGeometry) -> None:
    """dw (O, C/g, KD, KH, KW) <- d loss / d w from dy (N, O, OD, OH, OW) and x (N, C, D, H, W)."""
    geo = _geo(geom, dw.shape, _neg(geom.pad_lo))
    rows, cols = geo.o_per_group, dw.shape[1] * math.prod(geom.kernel)
    depth = dy.shape[0] * math.prod(geom.out_size)
    splits = gemm.split_count(rows, cols, geom.groups, depth)
    flat = dw.reshape((1, dw.shape[0], cols))
    slabs = flat if splits == 1 else cuda.device_array((splits,) + flat.shape[1:], dtype=dw.dtype)
    taps = _taps(dw.shape[1], geom.kernel)
    gemm.run(BACKWARD_WEIGHT, slabs, slabs, dy, x, taps, geo, geom.groups, rows, cols, depth, splits)
    if splits > 1:
        out = dw.reshape((dw.size,))
        launch_1d(_sum_slabs_kernel, out.size, out, slabs.reshape((splits, out.size)), dw.dtype.type(0))


def conv_backward_bias(db, dy) -> None:
    """db (O,) <- sum of dy (N, O, OD, OH, OW) over every axis but channels."""
    nt = 1 << (threads().bit_length() - 1)
    launch(_bias_kernel(np.dtype(db.dtype), nt), db.shape[0], nt, db, dy, db.dtype.type(0))
