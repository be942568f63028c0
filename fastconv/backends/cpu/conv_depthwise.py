"""Depthwise convolution (groups = C_in = C_out), float32, straight from and to NCDHW.

Every channel only talks to itself, so each pass is a set of independent plane problems
(a plane: one (n, c) slice, D x H x W) and needs no layout conversion:

* forward: one job per (n, c) plane. With zero padding, width stride 1 and the strips'
  shapes on AVX-512 (``_direct_plan``), the strips read the plane in place, the padding
  being the lanes their masked loads leave zero (``simd.vload_lanes``). Otherwise the job
  gathers its padded input plane into a small scratch buffer g (L1/L2 resident; every
  ``padding_mode`` is an index map per axis, as in ``layout``; zero padding at width stride
  1 copies each row's run of cells in whole vectors, prefetching ahead), then computes the
  output 16 pixels of a row (one vector) at a time, stored once (a row's last, partial
  vector in a few plain stores). A width stride is folded into the gather: each row of g
  holds ``stride`` phases (cells p, p + s, p + 2s, ...), so for any stride and dilation
  every tap reads 16 consecutive outputs' inputs with one vector load. An output far larger
  than the caches leaves the direct strips in non-temporal stores on CPUs where that pays
  (``layout.streams``).
* backward-input: the adjoint is a stride-1 correlation, with the flipped kernel, of dy
  zero-inserted between rows/columns by the stride and zero-padded by the kernel's reach
  (at stride 1 with zero padding, the direct strips run on dy: ``_adjoint_pads``); else
  the gather builds that plane through index maps and the forward's plane kernel runs on
  it. With zero padding it writes dx directly; with the other modes it computes the
  gradient of the padded plane in scratch and folds it back onto the x cells each padded
  cell read, in the same job.
* backward-weight: one job per channel c, summing over n in order: gather x[n, c] as the
  forward does, then accumulate dy x g per tap into vector partial sums, reduced in a fixed
  order at the end. No reduction crosses threads.

The plane kernels come in two methods, generated per method (``codegen``) with the
parallel kernels around them. Strips (the common case: at least R output rows, 2 to 8
kernel rows (5 on AVX2), row stride 1 or 2, no row dilation) work on R output rows x 16
pixels, R = 4 (``_STRIPS``): the kernel row's weights sit in registers and each gathered
input row is loaded once and used by every output row that reads it (3x3: 12 FMAs per 9
loads). Tiles (any geometry) take 8 row vectors at a time with one load per FMA.

Each job owns its output and all sums run in a fixed order: results are bitwise identical
for any thread count. The passes are memory-bound: x and y (or dy) cross memory once,
everything else stays in cache.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ...config import FASTMATH
from ...shapes import ConvGeometry
from . import codegen, layout, simd
from .simd import (
    _I32,
    _MASK,
    _VEC,
    LANES,
    U64,
    _element_ptr,
    f32x16,
    first_lanes,
    vadd,
    vbcast,
    vfma,
    vload,
    vload_first,
    vstore,
    vstore_first,
    vzero,
)

_JIT = dict(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy", boundscheck=False)
_INNER = dict(cache=True, fastmath=FASTMATH, error_model="numpy", boundscheck=False)


def _splat64(builder, v):
    """<16 x i64> of the i64 v in every lane."""
    vec = ir.VectorType(ir.IntType(64), LANES)
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), v, ir.Constant(_I32, 0))
    return builder.shuffle_vector(
        one, ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
    )


def _lane_pointers(context, builder, arrty, arr, idx, step):
    """<16 x ptr>: the addresses of arr[idx + i*step], i < 16."""
    base = builder.ptrtoint(_element_ptr(context, builder, arrty, arr, idx), ir.IntType(64))
    iota = ir.Constant(ir.VectorType(ir.IntType(64), LANES), list(range(LANES)))
    offsets = builder.mul(iota, _splat64(builder, builder.mul(step, ir.Constant(ir.IntType(64), 4))))
    return builder.inttoptr(
        builder.add(_splat64(builder, base), offsets), ir.VectorType(ir.PointerType(), LANES)
    )


@intrinsic
def _vload_strided(typingctx, arr, idx, step, n):
    """arr[idx + i*step] in lane i < n (0 < n <= 16), zeros after: one vector gather."""

    def codegen(context, builder, sig, args):
        step = context.cast(builder, args[2], sig.args[2], types.int64)
        ptrs = _lane_pointers(context, builder, sig.args[0], args[0], args[1], step)
        mask = first_lanes(builder, context.cast(builder, args[3], sig.args[3], types.int64))
        fnty = ir.FunctionType(_VEC, [ptrs.type, _I32, _MASK, _VEC])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.gather.v16f32.v16p0")
        return builder.call(fn, [ptrs, ir.Constant(_I32, 4), mask, ir.Constant(_VEC, [0.0] * LANES)])

    return f32x16(arr, idx, step, n), codegen


@intrinsic
def _vload_stride2(typingctx, arr, idx, n):
    """arr[idx + 2i] in lane i < n (0 < n <= 16), zeros after: two masked loads and one
    shuffle (a width stride of 2, the common one; faster than a gather)."""

    def codegen(context, builder, sig, args):
        n = context.cast(builder, args[2], sig.args[2], types.int64)
        cells = builder.sub(builder.add(n, n), ir.Constant(ir.IntType(64), 1))  # 2n - 1 read
        fnty = ir.FunctionType(_VEC, [ir.PointerType(), _I32, _MASK, _VEC])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.load.v16f32.p0")
        zero = ir.Constant(_VEC, [0.0] * LANES)
        halves = []
        for h in range(2):
            idx = builder.add(args[1], context.get_constant(sig.args[1], h * LANES))
            ptr = _element_ptr(context, builder, sig.args[0], args[0], idx)
            left = builder.sub(cells, ir.Constant(ir.IntType(64), h * LANES))
            halves.append(builder.call(fn, [ptr, ir.Constant(_I32, 4), first_lanes(builder, left), zero]))
        even = ir.Constant(ir.VectorType(_I32, LANES), list(range(0, 2 * LANES, 2)))
        return builder.shuffle_vector(halves[0], halves[1], even)

    return f32x16(arr, idx, n), codegen


@intrinsic
def _vstore_strided(typingctx, arr, idx, step, vec, n):
    """arr[idx + i*step] = lane i of vec for i < n (0 < n <= 16): one vector scatter."""

    def codegen(context, builder, sig, args):
        step = context.cast(builder, args[2], sig.args[2], types.int64)
        ptrs = _lane_pointers(context, builder, sig.args[0], args[0], args[1], step)
        mask = first_lanes(builder, context.cast(builder, args[4], sig.args[4], types.int64))
        fnty = ir.FunctionType(ir.VoidType(), [_VEC, ptrs.type, _I32, _MASK])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.scatter.v16f32.v16p0")
        builder.call(fn, [args[3], ptrs, ir.Constant(_I32, 4), mask])
        return context.get_dummy_value()

    return types.void(arr, idx, step, vec, n), codegen


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the cache line of arr[idx] into the caches (``llvm.prefetch``: a read, kept
    close); it never faults, so an index past the end is harmless."""

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        fnty = ir.FunctionType(ir.VoidType(), [ir.PointerType(), _I32, _I32, _I32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


# ---- per-plane building blocks (called inside the parallel jobs) --------------------------


@njit(**_INNER)
def _fill_zero(a, start, count):
    # a[start : start + count] = 0
    for t in range(0, count, LANES):
        vstore_first(a, start + t, vzero(), min(LANES, count - t))


@njit(**_INNER)
def _inside(start, size):
    # the lane bits (``simd.vload_lanes``) of the cells start + i (i < 16) inside [0, size)
    lo, hi = max(0, -start), min(LANES, size - start)
    return (1 << hi) - (1 << lo) if hi > lo else 0


@njit(**_INNER)
def _gather(g, x, xbase, H, W, map_d, map_h, ops, L):
    # g (Dp, Hp, L) <- the plane of x at xbase (D, H, W): row (i, j) is x row (map_d[i], map_h[j]),
    # or zeros where either is -1, built by the vector ops of _row_ops (the same for each row)
    Dp, Hp = map_d.shape[0], map_h.shape[0]
    of = ops.reshape(-1)  # read through unsigned flat indices (``simd.U64``)
    for i in range(Dp):
        for j in range(Hp):
            row = (i * Hp + j) * L
            src_d, src_h = map_d[i], map_h[j]
            if src_d < 0 or src_h < 0:
                _fill_zero(g, row, L)
                continue
            src = xbase + (src_d * H + src_h) * W
            for o in range(0, of.shape[0], 6):
                kind, dst, n = of[U64(o)], row + of[U64(o + 1)], of[U64(o + 3)]
                at = src + of[U64(o + 2)]
                if kind == _ZERO:
                    vstore_first(g, dst, vzero(), n)
                elif kind == _COPY:  # the interior
                    vstore_first(g, dst, vload_first(x, at, n), n)
                elif kind == _STRIDE2:  # a phase of a width stride of 2
                    vstore_first(g, dst, _vload_stride2(x, at, n), n)
                else:  # other strides, reflections, zero insertion: gather and scatter
                    step, dstep = of[U64(o + 4)], of[U64(o + 5)]
                    _vstore_strided(g, dst, dstep, _vload_strided(x, at, step, n), n)


@njit(**_INNER)
def _gather_run(g, x, xbase, H, W, map_d, map_h, ops, L):
    # _gather where ops is the one op (_RUN, a, s0, m): each row is zeros, then m consecutive
    # cells of x from cell s0 at cell a, then zeros (zero padding, width stride 1). In whole
    # vectors: the zeros before the run, the run, the zeros after it (which overwrite what the
    # run's last vector read past its end; only at the very end of x is that vector a masked
    # load, 3x slower). A store may spill up to 15 cells into the next row, which is written
    # after it, or into g's 16 spare cells; no part-vector stores (several stores each). Each
    # row hints the cells 4 KB ahead into the caches, so the plane's reads wait on memory less.
    # mobilenet's 3x3 forward kernel, alternating calls on the Zen 3 machine: 2.81 ms with
    # _gather, 2.52 with this copy, 2.23 with the prefetch too (another run: 3.25, 2.99, 2.66)
    Dp, Hp = map_d.shape[0], map_h.shape[0]
    a, s0, m = ops[0, 1], ops[0, 2], ops[0, 3]
    full = m - m % LANES
    for i in range(Dp):
        for j in range(Hp):
            row = (i * Hp + j) * L
            src_d, src_h = map_d[i], map_h[j]
            if src_d < 0 or src_h < 0:
                for t in range(0, L, LANES):
                    vstore(g, row + t, vzero())
                continue
            src = xbase + (src_d * H + src_h) * W + s0
            for t in range(0, m, LANES):  # the lines 4 KB ahead (rows of this or the next plane)
                _prefetch(x, src + _AHEAD + t)
            for t in range(0, a, LANES):
                vstore(g, row + t, vzero())
            for t in range(0, full, LANES):
                vstore(g, row + a + t, vload(x, src + t))
            if full < m and src + full + LANES <= x.shape[0]:
                vstore(g, row + a + full, vload(x, src + full))
            elif full < m:
                vstore(g, row + a + full, vload_first(x, src + full, m - full))
            for t in range(a + m, L, LANES):
                vstore(g, row + t, vzero())


@njit(**_INNER)
def _fold(dx, dxbase, D, H, W, gp, Hp, L, map_d, map_h, segs):
    # dx plane at dxbase (D, H, W) <- sum of the cells of the padded plane gp (Dp, Hp, L) onto
    # the x cells they read (the maps and width segments of the padding), in a fixed order
    _fill_zero(dx, dxbase, D * H * W)
    for i in range(map_d.shape[0]):
        for j in range(Hp):
            src_d, src_h = map_d[i], map_h[j]
            if src_d < 0 or src_h < 0:
                continue
            dst = dxbase + (src_d * H + src_h) * W
            row = (i * Hp + j) * L
            for s in range(segs.shape[0]):
                k0, count, dk, s0, ds = segs[s, 0], segs[s, 1], segs[s, 2], segs[s, 3], segs[s, 4]
                if dk == 1 and ds == 1:
                    for t in range(0, count, LANES):
                        n = min(LANES, count - t)
                        v = vadd(vload_first(dx, dst + s0 + t, n), vload_first(gp, row + k0 + t, n))
                        vstore_first(dx, dst + s0 + t, v, n)
                else:
                    for t in range(count):
                        dx[dst + s0 + t * ds] += gp[row + k0 + t * dk]


@njit(**_INNER)
def _tiles_forward(out, obase, g, wf, wbase, b, tiles, toff):
    # out tiles at obase <- b + sum over taps k of wf[wbase + k] * g[tile + toff[k] : ... + 16]
    # (see _plane_plan), eight tiles at a time (eight FMA chains hide the FMA latency); when fewer
    # remain, the last eight are recomputed (the same bits stored twice)
    ntiles, taps = tiles.shape[0], toff.shape[0]
    last = ntiles - 1
    for t in range(0, ntiles, 8):
        t0 = max(min(t, ntiles - 8), 0)
        i0, i1, i2, i3 = t0, min(t0 + 1, last), min(t0 + 2, last), min(t0 + 3, last)
        i4, i5, i6, i7 = min(t0 + 4, last), min(t0 + 5, last), min(t0 + 6, last), min(t0 + 7, last)
        g0, g1, g2, g3 = tiles[i0, 0], tiles[i1, 0], tiles[i2, 0], tiles[i3, 0]
        g4, g5, g6, g7 = tiles[i4, 0], tiles[i5, 0], tiles[i6, 0], tiles[i7, 0]
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = b
        for k in range(taps):
            wv = vbcast(wf, wbase + k)
            o = toff[k]
            a0 = vfma(vload(g, g0 + o), wv, a0)
            a1 = vfma(vload(g, g1 + o), wv, a1)
            a2 = vfma(vload(g, g2 + o), wv, a2)
            a3 = vfma(vload(g, g3 + o), wv, a3)
            a4 = vfma(vload(g, g4 + o), wv, a4)
            a5 = vfma(vload(g, g5 + o), wv, a5)
            a6 = vfma(vload(g, g6 + o), wv, a6)
            a7 = vfma(vload(g, g7 + o), wv, a7)
        vstore_first(out, obase + tiles[i0, 1], a0, tiles[i0, 2])
        vstore_first(out, obase + tiles[i1, 1], a1, tiles[i1, 2])
        vstore_first(out, obase + tiles[i2, 1], a2, tiles[i2, 2])
        vstore_first(out, obase + tiles[i3, 1], a3, tiles[i3, 2])
        vstore_first(out, obase + tiles[i4, 1], a4, tiles[i4, 2])
        vstore_first(out, obase + tiles[i5, 1], a5, tiles[i5, 2])
        vstore_first(out, obase + tiles[i6, 1], a6, tiles[i6, 2])
        vstore_first(out, obase + tiles[i7, 1], a7, tiles[i7, 2])


@njit(**_INNER)
def _tiles_weight(acc, dy, dybase, g, tiles, toff):
    # acc (taps, 4, 16) += per tap k, the dy tiles at dybase times the g tiles shifted by
    # toff[k]; tile i goes to partial sum i % 4 (a fixed order); masked lanes read zeros
    # from both sides, so no product of a cell outside the convolution is ever formed
    ntiles, taps = tiles.shape[0], toff.shape[0]
    full = ntiles - ntiles % 4
    for k in range(taps):
        a = k * 4 * LANES
        a0, a1 = vload(acc, a), vload(acc, a + LANES)
        a2, a3 = vload(acc, a + 2 * LANES), vload(acc, a + 3 * LANES)
        o = toff[k]
        for t in range(0, full, 4):
            n0, n1, n2, n3 = tiles[t, 2], tiles[t + 1, 2], tiles[t + 2, 2], tiles[t + 3, 2]
            a0 = vfma(vload_first(g, tiles[t, 0] + o, n0), vload_first(dy, dybase + tiles[t, 1], n0), a0)
            a1 = vfma(
                vload_first(g, tiles[t + 1, 0] + o, n1), vload_first(dy, dybase + tiles[t + 1, 1], n1), a1
            )
            a2 = vfma(
                vload_first(g, tiles[t + 2, 0] + o, n2), vload_first(dy, dybase + tiles[t + 2, 1], n2), a2
            )
            a3 = vfma(
                vload_first(g, tiles[t + 3, 0] + o, n3), vload_first(dy, dybase + tiles[t + 3, 1], n3), a3
            )
        for t in range(full, ntiles):
            n0 = tiles[t, 2]
            a0 = vfma(vload_first(g, tiles[t, 0] + o, n0), vload_first(dy, dybase + tiles[t, 1], n0), a0)
        vstore(acc, a, a0)
        vstore(acc, a + LANES, a1)
        vstore(acc, a + 2 * LANES, a2)
        vstore(acc, a + 3 * LANES, a3)


# ---- generated kernels -------------------------------------------------------------------
#
# The parallel kernels are generated per plane method, so that the strip kernels can keep
# their taps and accumulators in named registers. "tiles" (any geometry) runs the
# _tiles_* loops above; ("strip", kh, sh, dh, R, S) works on strips of R output rows x 16
# pixels: the kh weights of one (kd, kw) sit in registers and every gathered input row is
# loaded once per strip and used by each output row that reads it (row j at tap t reads
# strip row j*sh + t*dh), so a 3x3 strip does 12 FMAs per 9 loads instead of one load each.

# Strips per instruction set (``simd.ISA``): (R output rows per strip, the most kernel rows
# kh, S partial sums per tap in backward-weight). R = 4 on both. On AVX-512, kh weights + 4
# accumulators (+ 4 dy rows and 2*kh sums in backward-weight; 2*kh*kh for 3x3,
# ``_weight_taps``) fit 32 zmm; R = 8 fits too, but on the 2-core AMD EPYC host (alternating
# calls) R = 4 ran mobilenet's depthwise 3x3 (8x128x56x56, far larger than the L2) forward in
# 0.69-0.72x the time of R = 8, its input gradient 0.77-0.80x, its weight gradient 0.86x;
# other planes larger than the caches 0.77-0.97x (5x5, 3x3x3 and 112x112 ones among them),
# planes in cache 0.97-1.09x (14x14 forward: 1.09x). An 8-row strip reads 10 input rows and
# writes 8 output rows at once, which memory serves worse; with the next strips' rows
# prefetched, R = 8 still took 1.45x R = 4's time. AVX2 (16 ymm, two per vector; a broadcast
# weight takes one): 4 rows x 2 + kh + 2 for the loaded row fit for kh <= 5, and
# backward-weight keeps one sum per tap.
_STRIPS = {"avx512": (4, 8, 2), "avx2": (4, 5, 1)}

_KERNELS = """
import numpy as np

from fastconv.backends.cpu.conv_depthwise import (
    _INNER, _fold, {gather}, _tiles_forward, _tiles_weight,
)
from fastconv.backends.cpu.simd import vload_first, vstore_first
{planes}

@njit(**_JIT)
def forward(out, x, w, bias, map_d, map_h, ops, L, tiles, toff, dims):
    # out (N, C, OD, OH, OW) <- per (n, c): gather the plane of x (N, C, D, H, W) into g
    # (Dp, Hp, L), then the plane of g times w (C, taps), plus bias (C,)
    N, C = out.shape[0], out.shape[1]
    plane_out = out.shape[2] * out.shape[3] * out.shape[4]
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    taps = w.shape[1]
    xf, of, wf = x.reshape(-1), out.reshape(-1), w.reshape(-1)
    for job in prange(N * C):  # job = n * C + c owns output plane (n, c)
        c = job % C
        g = np.empty(map_d.shape[0] * map_h.shape[0] * L + 16, np.float32)  # 16 spare cells
        {gather}(g, xf, job * D * H * W, H, W, map_d, map_h, ops, L)
        plane_forward(of, job * plane_out, g, wf, c * taps, vbcast(bias, c), tiles, toff, dims)


@njit(**_JIT)
def backward_input_fold(
    dx, dy, w, map_d, map_h, ops, L, tiles, toff, dims, Dp, Hp, Wp, fold_d, fold_h, fold_segs
):
    # dx (N, C, D, H, W) <- per (n, c): the gradient of the padded plane (Dp, Hp, Wp), computed
    # like forward from dy (N, C, OD, OH, OW) with the flipped w, folded onto x's cells
    N, C = dx.shape[0], dx.shape[1]
    D, H, W = dx.shape[2], dx.shape[3], dx.shape[4]
    OD, OH, OW = dy.shape[2], dy.shape[3], dy.shape[4]
    taps = w.shape[1]
    dxf, dyf, wf = dx.reshape(-1), dy.reshape(-1), w.reshape(-1)
    for job in prange(N * C):
        c = job % C
        g = np.empty(map_d.shape[0] * map_h.shape[0] * L + 16, np.float32)  # 16 spare cells
        {gather}(g, dyf, job * OD * OH * OW, OH, OW, map_d, map_h, ops, L)
        gp = np.empty(Dp * Hp * Wp, np.float32)
        plane_forward(gp, 0, g, wf, c * taps, vzero(), tiles, toff, dims)
        _fold(dxf, job * D * H * W, D, H, W, gp, Hp, Wp, fold_d, fold_h, fold_segs)


@njit(**_JIT)
def backward_weight(dw, dy, x, map_d, map_h, ops, L, tiles, toff, dims):
    # dw (C, taps) <- sum over n (in order) and outputs of dy (N, C, OD, OH, OW) times the
    # gathered planes of x (N, C, D, H, W); one job per channel, no reduction across threads
    C, taps = dw.shape
    N = dy.shape[0]
    plane_out = dy.shape[2] * dy.shape[3] * dy.shape[4]
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    dyf, xf = dy.reshape(-1), x.reshape(-1)
    for c in prange(C):
        g = np.empty(map_d.shape[0] * map_h.shape[0] * L + 16, np.float32)  # 16 spare cells
        acc = np.zeros(taps * 4 * 16, np.float32)  # (taps, 4 partial sums, 16 lanes)
        for n in range(N):
            {gather}(g, xf, (n * C + c) * D * H * W, H, W, map_d, map_h, ops, L)
            plane_weight(acc, dyf, (n * C + c) * plane_out, g, tiles, toff, dims)
        for k in range(taps):
            a = k * 64
            s = np.float32(0)
            for lane in range(16):
                s += (acc[a + lane] + acc[a + 16 + lane]) + (acc[a + 32 + lane] + acc[a + 48 + lane])
            dw[c, k] = s
"""

_TILES_PLANES = """
@njit(**_INNER)
def plane_forward(out, obase, g, wf, wbase, b, tiles, toff, dims):
    _tiles_forward(out, obase, g, wf, wbase, b, tiles, toff)


@njit(**_INNER)
def plane_weight(acc, dy, dybase, g, tiles, toff, dims):
    _tiles_weight(acc, dy, dybase, g, tiles, toff)
"""

_STRIP_PLANES = """
@njit(**_INNER)
def plane_forward(out, obase, g, wf, wbase, b, tiles, toff, dims):
    # out plane (OD, OH >= {R}, OW) at obase <- b + the taps of wf (KD, {kh}, KW) at wbase over g
    # (Dp, Hp, L), strip by strip; the last strip of a plane overlaps (same bits stored twice)
    OD, OH, OW, Hp, L, sd, KD, KW = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7]
    for od in range(OD):
        for s in range(0, OH, {R}):
            r0 = min(s, OH - {R})
            for v in range(0, OW, 16):
                base = (od * sd * Hp + r0 * {sh}) * L + v
                {acc} = b
                if KD == 1:  # 2-D: no loop over kd, which LLVM schedules worse (mobilenet, computing alone: 0.40 -> 0.33 ms)
                    kd = 0
{fwd_taps}
                else:
                    for kd in range(KD):
{fwd_taps_3d}
                n = min(16, OW - v)
                o = obase + (od * OH + r0) * OW + v
{fwd_store}


@njit(**_INNER)
def plane_weight(acc, dy, dybase, g, tiles, toff, dims):
    # acc (taps, 4, 16) += the products of the dy plane (OD, OH, OW) at dybase and g under each
    # tap: full strips here (tap t, output row j -> partial sum (t, j % {S})), the rows past the
    # last full strip of each plane by _tiles_weight (tiles holds just those)
    OD, OH, OW, Hp, L, sd, KD, KW = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7]
    full = OH - OH % {R}
{wgt_taps}
    _tiles_weight(acc, dy, dybase, g, tiles, toff)
"""


_DIRECT = """
import numpy as np

from fastconv.backends.cpu.conv_depthwise import _INNER, _inside
from fastconv.backends.cpu.layout import stream_copy
from fastconv.backends.cpu.simd import fence, vload_lanes, vstore_first


@njit(**_INNER)
def plane_forward(out, obase, x, xbase, wf, wbase, b, dims, sc):
    # out plane (OD, OH >= {R}, OW) at obase <- b + the taps of wf (KD, {kh}, {kh}) at wbase over
    # the x plane (D, H, W) at xbase, read in place, strip by strip (the last one overlaps):
    # a cell outside the plane (zero padding) is a lane the masked loads leave zero (mask:
    # the row's bits m<r> and the tap's columns cm), a kernel depth outside it is skipped;
    # a 2-D strip whose 16 columns lie inside the plane for every tap loads plainly, with no
    # mask to build per load (alternating calls on the AMD EPYC host: mobilenet's forward
    # 0.78-0.91x, 16 planes in cache 0.72x, 112x112 ones 0.78x; 28x28 planes under a 5x5
    # kernel, where no strip is inside, 1.03-1.13x)
    # With dims[13] (stream), a strip goes to sc ({R} x OW) and from there to out in
    # non-temporal stores (its {R} rows are one run of out)
    D, H, W, OD, OH, OW = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]
    sd, pd, ph, pw, dd, dw, KD = dims[6], dims[7], dims[8], dims[9], dims[10], dims[11], dims[12]
    stream = dims[13] != 0
    for od in range(OD):
        for s in range(0, OH, {R}):
            r0 = min(s, OH - {R})
            top = r0 * {sh} - ph  # the x row of strip row 0
            first = obase + (od * OH + r0) * OW  # the strip's first output cell
            dst, o0 = (sc, 0) if stream else (out, first)
{row_bits}
            rows_in = top >= 0 and top + {strip_rows} <= H
            for v in range(0, OW, 16):
                {acc} = b
                if KD == 1 and rows_in and v >= pw and v - pw + {span} * dw + 16 <= W:
                    kd = 0  # 2-D, every tap's row and 16 columns inside: plain loads
{taps_plain}
                elif KD == 1:  # 2-D: no loop over kd (as in the gathered strips)
                    kd = 0
{taps_2d}
                else:
                    for kd in range(KD):
{taps_3d}
                n = min(16, OW - v)
                o = o0 + v
{store}
            if stream:
                stream_copy(out, first, sc, {R} * OW)


@njit(**_JIT)
def forward(out, x, w, bias, dims):
    # out (N, C, OD, OH, OW) <- per (n, c) plane: bias (C,) + the taps of w (C, taps) over
    # the plane of x (N, C, D, H, W), zero-padded by pad (dims)
    N, C = out.shape[0], out.shape[1]
    plane_out = out.shape[2] * out.shape[3] * out.shape[4]
    plane_in = x.shape[2] * x.shape[3] * x.shape[4]
    taps = w.shape[1]
    xf, of, wf = x.reshape(-1), out.reshape(-1), w.reshape(-1)
    for job in prange(N * C):  # job = n * C + c owns output plane (n, c)
        c = job % C
        sc = np.empty({R} * out.shape[4] + 16 if dims[13] else 16, np.float32)
        plane_forward(of, job * plane_out, xf, job * plane_in, wf, c * taps, vbcast(bias, c), dims, sc)
        if dims[13]:
            fence()  # the plane's streamed stores, before the loop's end joins the threads
"""


def _direct_taps(kh: int, sh: int, rows: int, indent: int, masked: bool = True) -> str:
    """The direct strip's taps of one kd (source, ``indent`` spaces in): the kh weights of
    one width tap at a time; each x row loaded once per width tap, masked to the plane.
    The same products in the same order as the gathered strips (``_forward_taps``).
    ``masked=False``: plain loads, for strips that read only cells inside the plane."""
    i0, i1, i2 = (" " * (indent + k) for k in (0, 4, 8))
    taps = [
        f"{i0}xd = od * sd - pd + kd * dd",
        f"{i0}if 0 <= xd < D:",
        f"{i1}row = xbase + (xd * H + top) * W",
        f"{i1}for kw in range({kh}):",
        f"{i2}col = v - pw + kw * dw",
        f"{i2}p, wk = row + col, wbase + kd * {kh * kh} + kw",
    ]
    taps += [f"{i2}cm = _inside(col, W)"] if masked else []
    taps += [f"{i2}w{t} = vbcast(wf, wk + {t * kh})" for t in range(kh)]
    for r, row in _row_pairs(kh, sh, 1, rows).items():
        load = f"vload_lanes(x, p + {r} * W, cm & m{r})" if masked else f"vload(x, p + {r} * W)"
        taps.append(f"{i2}xr = {load}")
        taps += [f"{i2}a{j} = vfma(xr, w{t}, a{j})" for j, t in row]
    return "\n".join(taps)


def _direct_source(kh: int, sh: int, rows: int) -> str:
    strip_rows = (rows - 1) * sh + kh
    return _DIRECT.format(
        R=rows,
        kh=kh,
        sh=sh,
        row_bits="\n".join(
            f"{' ' * 12}m{r} = 0xFFFF if 0 <= top + {r} < H else 0" for r in range(strip_rows)
        ),
        acc=" = ".join(f"a{j}" for j in range(rows)),
        strip_rows=strip_rows,
        span=kh - 1,
        taps_plain=_direct_taps(kh, sh, rows, 20, masked=False),
        taps_2d=_direct_taps(kh, sh, rows, 20),
        taps_3d=_direct_taps(kh, sh, rows, 24),
        store="\n".join(f"{' ' * 16}vstore_first(dst, o + {j} * OW, a{j}, n)" for j in range(rows)),
    )


@functools.cache
def _direct_kernels(kh: int, sh: int, rows: int):
    """The generated module of the direct strips of (kh, sh, rows)."""
    name = f"depthwise_direct_{kh}_{sh}_{rows}"
    return codegen.load(name, _direct_source(kh, sh, rows))


def _row_pairs(kh: int, sh: int, dh: int, rows: int) -> dict[int, list[tuple[int, int]]]:
    """Strip row r -> the (output row j < rows, tap t) pairs that read it: j*sh + t*dh = r."""
    pairs: dict[int, list[tuple[int, int]]] = {}
    for j in range(rows):
        for t in range(kh):
            pairs.setdefault(j * sh + t * dh, []).append((j, t))
    return dict(sorted(pairs.items()))


def _forward_taps(kh: int, sh: int, dh: int, rows: int, indent: int) -> str:
    """The forward strip's taps of one kd (source, ``indent`` spaces in): the kh weights of
    one width tap at a time, each gathered row loaded once per width tap."""
    i5, i6 = " " * indent, " " * (indent + 4)
    taps = [
        f"{i5}for kw in range({kh}):  # square (KW = {kh}): a constant trip count, which LLVM unrolls",
        f"{i6}p = base + toff[np.uint64(kd * {kh} * KW + kw)]",
        f"{i6}wk = wbase + kd * {kh} * KW + kw",
    ]
    taps += [f"{i6}w{t} = vbcast(wf, wk + {t} * KW)" for t in range(kh)]
    for r, row in _row_pairs(kh, sh, dh, rows).items():
        taps.append(f"{i6}x = vload(g, p + {r} * L)")
        taps += [f"{i6}a{j} = vfma(x, w{t}, a{j})" for j, t in row]
    return "\n".join(taps)


def _weight_taps(kh: int, sh: int, dh: int, rows: int, sums: int) -> str:
    """The backward-weight strips' loops over the taps and the plane (source, 4 spaces in).
    Where the partial sums of all kh*kh taps fit in registers beside the dy rows and one
    gathered row's kh loads (3x3 on AVX-512), the width taps run inside the strip: each dy
    row and gathered row is loaded once per strip instead of once per width tap (alternating
    calls: mobilenet's weight gradient 0.92-0.93x, a 3x3x3 one 0.89x). Otherwise one width
    tap at a time, its kh taps' sums in registers. Each sum adds the same products in the
    same order either way: the same bits."""
    pairs = _row_pairs(kh, sh, dh, rows)
    i2, i3 = " " * 8, " " * 12
    every = simd.fits(rows + kh * kh * sums + kh)
    widths = range(kh) if every else [None]  # width taps in registers; None: the loop's kw
    slots = [(t, k, s) for t in range(kh) for k in widths for s in range(sums)]  # (row tap, width tap, sum)

    def name(t, k, s):
        return f"c{t}_{s}" if k is None else f"c{t}_{k}_{s}"

    def cell(t, k):  # the tap's index in toff and acc
        return f"q + {t} * KW" + ("" if k is None else f" + {k}")

    head = ["    for kd in range(KD):"]
    if every:
        head += [f"{i2}q = kd * {kh} * KW"]
        head += [f"{i2}o{k} = toff[np.uint64(q + {k})]" for k in widths]
        ind = i2
    else:
        head += [f"{i2}for kw in range(KW):", f"{i3}q = kd * {kh} * KW + kw", f"{i3}o = toff[np.uint64(q)]"]
        ind = i3
    lines = head + [f"{ind}{name(t, k, s)} = vload(acc, ({cell(t, k)}) * 64 + {s * 16})" for t, k, s in slots]
    lines += [
        f"{ind}for od in range(OD):",
        f"{ind}    for r0 in range(0, full, {rows}):",
        f"{ind}        for v in range(0, OW, 16):",
        f"{ind}            n = min(16, OW - v)",
        f"{ind}            p = (od * sd * Hp + r0 * {sh}) * L + v",
        f"{ind}            d = dybase + (od * OH + r0) * OW + v",
    ]
    body = ind + " " * 12
    lines += [f"{body}d{j} = vload_first(dy, d + {j} * OW, n)" for j in range(rows)]
    for r, row in pairs.items():
        for k in widths:
            x = "x" if k is None else f"x{k}"
            lines.append(f"{body}{x} = vload_first(g, p + {r} * L + {'o' if k is None else f'o{k}'}, n)")
            lines += [
                f"{body}{name(t, k, j % sums)} = vfma({x}, d{j}, {name(t, k, j % sums)})" for j, t in row
            ]
    lines += [f"{ind}vstore(acc, ({cell(t, k)}) * 64 + {s * 16}, {name(t, k, s)})" for t, k, s in slots]
    return "\n".join(lines)


def _strip_source(kh: int, sh: int, dh: int, rows: int, sums: int) -> str:
    return _STRIP_PLANES.format(
        R=rows,
        S=sums,
        kh=kh,
        sh=sh,
        acc=" = ".join(f"a{j}" for j in range(rows)),
        fwd_taps=_forward_taps(kh, sh, dh, rows, 20),
        fwd_taps_3d=_forward_taps(kh, sh, dh, rows, 24),
        fwd_store="\n".join(f"{' ' * 16}vstore_first(out, o + {j} * OW, a{j}, n)" for j in range(rows)),
        wgt_taps=_weight_taps(kh, sh, dh, rows, sums),
    )


@functools.cache
def _kernels(method: tuple, run: bool = False):
    """The generated module of ``method``: ("tiles",) or ("strip", kh, sh, dh, R, S); its
    planes gathered by ``_gather_run`` if ``run`` (the plan's row op is _RUN), else by
    ``_gather``: one gather per module (a gather holding both paths compiled in 4.1 s, against
    1.5 s for ``_gather`` alone and 2.0 s for ``_gather_run``)."""
    planes = _TILES_PLANES if method[0] == "tiles" else _strip_source(*method[1:])
    name = "depthwise_" + "_".join(map(str, method)) + ("_run" if run else "")
    gather = "_gather_run" if run else "_gather"
    return codegen.load(name, _KERNELS.format(planes=planes, gather=gather))


def _module(method: tuple, plan):
    """The kernels of ``method`` for ``plan`` (its row ops pick the gather)."""
    return _kernels(method, bool(plan[2][0, 0] == _RUN))


def _method(kernel, stride, dilation, out_rows: int) -> tuple:
    """Strips where a plane has a full strip of rows, rows are shared (kh > 1), the taps fit
    in registers, and the geometry is a common one (each variant compiles on its own):
    square kernels, whose width taps the strips sweep with a constant trip count (LLVM
    unrolls it: a 56x56 plane 1.85 -> 1.2 us on the Zen 3 machine)."""
    kh, sh, dh = kernel[1], stride[1], dilation[1]
    rows, max_taps, sums = _STRIPS[simd.ISA]
    if out_rows >= rows and 1 < kh <= max_taps and kernel[2] == kh and sh <= 2 and dh == 1:
        return ("strip", kh, sh, dh, rows, sums)
    return ("tiles",)


# ---- plans: index maps, segments, tiles (the same for every call of a geometry) ----------


def _segments(table: np.ndarray):
    """Row gather of ``table`` (cell k reads source ``table[k]``, or 0 where -1) as segments
    (k0, count, dk, s0, ds): cells k0 + t*dk read s0 + t*ds (t < count), found greedily."""
    segs: list[list[int]] = []
    for k in np.flatnonzero(table >= 0).tolist():
        s = int(table[k])
        if segs:
            k0, count, dk, s0, ds = segs[-1]
            if count == 1:
                segs[-1] = [k0, 2, k - k0, s0, s - s0]
                continue
            if k == k0 + count * dk and s == s0 + count * ds:
                segs[-1][1] += 1
                continue
        segs.append([k, 1, 1, s, 1])
    return np.array(segs, np.int64).reshape(-1, 5)


_ZERO, _COPY, _STRIDE2, _STRIDED, _RUN = 0, 1, 2, 3, 4  # kinds of row ops
_AHEAD = 1024  # floats: how far ahead _gather_run prefetches


def _row_ops(table: np.ndarray) -> np.ndarray:
    """The row gather of ``table`` as vector ops (kind, dst, src, lanes, src step, dst step),
    each one load and store of the first ``lanes`` of 16, in order: first zeros (a prefix
    and a suffix, or the whole row where reads and zeros interleave), then the segments 16
    cells at a time. A row of zeros, one run of consecutive cells, zeros (zero padding with
    width stride 1, the common case) is the single op (_RUN, first cell, first source,
    cells) instead, which ``_gather_run`` copies in whole vectors."""
    L = len(table)
    read = np.flatnonzero(table >= 0)
    if len(read) and np.array_equal(table[read[0] : read[-1] + 1], table[read[0]] + np.arange(len(read))):
        return np.array([[_RUN, read[0], table[read[0]], len(read), 0, 0]], np.int64)  # _gather_run
    ops = []
    if len(read) < L:
        contiguous = len(read) and read[-1] + 1 - read[0] == len(read)
        spans = [(0, read[0]), (read[-1] + 1, L)] if contiguous else [(0, L)]
        ops += [(_ZERO, k, 0, min(LANES, hi - k), 0, 0) for lo, hi in spans for k in range(lo, hi, LANES)]
    for k0, count, dk, s0, ds in _segments(table):
        kind = _COPY if (dk, ds) == (1, 1) else _STRIDE2 if (dk, ds) == (1, 2) else _STRIDED
        for t in range(0, count, LANES):
            ops.append((kind, k0 + t * dk, s0 + t * ds, min(LANES, count - t), ds, dk))
    return np.array(ops, np.int64).reshape(-1, 6)


def _plane_plan(method, out_size, kernel, stride, dilation, Hp: int, L: int, woff):
    """tiles, tap offsets and dims for the plane kernels of ``method``: out_size (OD, OH, OW)
    read from g (Dp, Hp, L) with the (D, H) stride and dilation; woff[kw]: tap kw along a row.

    tiles (tiles, 3): per 16-pixel tile of the output, row-major: the offset of its first
    gathered input cell in g, its offset in the output plane, its lanes (the strips'
    backward-weight keeps only the rows past the last full strip of each plane).
    toff (taps,): the offset in g of tap (kd, kh, kw), row-major.
    dims: (OD, OH, OW, Hp, L, sd, KD, KW), the ints the strips need.
    """
    (OD, OH, OW), (KD, KH, KW), (sd, sh, _), (dd, dh, _) = out_size, kernel, stride, dilation
    od, oh, v = np.meshgrid(np.arange(OD), np.arange(OH), np.arange(-(-OW // LANES)), indexing="ij")
    tiles = np.stack(
        [
            ((od * sd) * Hp + oh * sh) * L + v * LANES,
            (od * OH + oh) * OW + v * LANES,
            np.minimum(LANES, OW - v * LANES),
        ],
        axis=-1,
    ).astype(np.int64)
    if method[0] == "strip":
        tiles = tiles[:, OH - OH % method[4] :]
    rows = (np.arange(KD)[:, None] * dd * Hp + np.arange(KH)[None, :] * dh) * L
    toff = (rows[:, :, None] + np.asarray(woff, np.int64)[None, None, :]).ravel()
    dims = np.array([OD, OH, OW, Hp, L, sd, KD, KW], np.int64)
    return tiles.reshape(-1, 3), toff, dims


@functools.lru_cache(maxsize=64)
def _forward_plan(geom: ConvGeometry):
    """(method, arguments after the weight and bias of the forward and backward-weight
    kernels). The padded input plane (Dp, Hp, Wp) is gathered with each row split into
    ``sw`` phases of ``wq`` cells (row length L = sw*wq), so tap kw of output ow reads phase
    (kw*dw) % sw at ow + (kw*dw) // sw: contiguous in ow for any stride and dilation."""
    sw, dw, KW = geom.stride[2], geom.dilation[2], geom.kernel[2]
    Dp, Hp, Wp = layout.extents(geom)
    maps = layout.index_maps(geom.in_size, geom.pad_lo, (Dp, Hp, Wp), geom.padding_mode)
    wq = -(-geom.out_size[2] // LANES) * LANES + (KW - 1) * dw // sw
    cells = np.arange(sw)[:, None] + np.arange(wq)[None, :] * sw  # (phase, j) -> padded cell
    table = np.where(cells < Wp, maps[2][np.minimum(cells, Wp - 1)], -1).ravel()
    woff = [(k * dw) % sw * wq + (k * dw) // sw for k in range(KW)]
    L = sw * wq
    method = _method(geom.kernel, geom.stride, geom.dilation, geom.out_size[1])
    plane = _plane_plan(method, geom.out_size, geom.kernel, geom.stride, geom.dilation, Hp, L, woff)
    return method, (maps[0], maps[1], _row_ops(table), L, *plane)


def _adjoint_map(size: int, lo: int, out: int, stride: int, k: int, dil: int) -> np.ndarray:
    """Map of one axis of the backward-input gather: cell m of the (zero-inserted, padded)
    grad_output plane reads dy[(m + lo - (k-1)*dil) / stride] where that is a whole index in
    range(out), else 0. ``size`` cells: the outputs wanted plus the kernel's reach."""
    q = np.arange(size + (k - 1) * dil) + lo - (k - 1) * dil
    return np.where((q >= 0) & (q % stride == 0) & (q // stride < out), q // stride, -1)


@functools.lru_cache(maxsize=64)
def _backward_input_plan(geom: ConvGeometry):
    """(method, size, arguments after the weight of the forward-type kernels): the cells of
    dx computed, (D, H, W) with zero padding or the padded extent otherwise, as a stride-1
    correlation (dilation kept) of the zero-inserted, padded dy with the flipped kernel."""
    zeros = geom.padding_mode == "zeros"
    size = geom.in_size if zeros else layout.extents(geom)
    lo = geom.pad_lo if zeros else (0, 0, 0)
    maps = [
        _adjoint_map(*a)
        for a in zip(size, lo, geom.out_size, geom.stride, geom.kernel, geom.dilation, strict=True)
    ]
    dw, KW = geom.dilation[2], geom.kernel[2]
    L = -(-size[2] // LANES) * LANES + (KW - 1) * dw
    table = np.full(L, -1, np.int64)
    table[: len(maps[2])] = maps[2]
    method = _method(geom.kernel, (1, 1, 1), geom.dilation, size[1])
    plane = _plane_plan(
        method, size, geom.kernel, (1, 1, 1), geom.dilation, len(maps[1]), L, np.arange(KW) * dw
    )
    return method, size, (maps[0], maps[1], _row_ops(table), L, *plane)


@functools.lru_cache(maxsize=64)
def _fold_plan(geom: ConvGeometry):
    """Maps and width segments that fold the padded-plane gradient back onto x."""
    ext = layout.extents(geom)
    maps = layout.index_maps(geom.in_size, geom.pad_lo, ext, geom.padding_mode)
    return maps[0], maps[1], _segments(maps[2])


@functools.lru_cache(maxsize=64)
def _direct_plan(in_size, out_size, kernel, stride, dilation, pad_lo, stream: bool = False):
    """(kh, sh, R) and dims of the direct strips, for a zero-padded plane problem (in_size
    -> out_size, pad_lo cells of zeros before each axis), or None. They read x in place, so
    no plane is gathered first (alternating calls, 3x3: 16 planes of 56x56 in cache 0.78-0.84x,
    256 planes 0.89x, mobilenet's 1024 planes, memory-bound on a loaded host, 0.98-1.05x; its
    input gradient 0.94x). Where the strips apply, on AVX-512 (masked loads are native), with
    width stride 1 (a tap reads 16 consecutive cells of a row; a strided width is the gather's
    phases). With ``stream`` (``layout.streams``) each strip's rows go to memory in
    non-temporal stores (mobilenet's forward, alternating calls: 0.85-0.99x in six runs fenced
    by sfence, 0.94-1.02x in four with the portable ``fence``, on a host slower still)."""
    method = _method(kernel, stride, dilation, out_size[1])
    if simd.ISA != "avx512" or method[0] != "strip" or stride[2] != 1:
        return None
    (_, kh, sh, _, rows, _), (sd, _, _), (dd, _, dw) = method, stride, dilation
    dims = np.array([*in_size, *out_size, sd, *pad_lo, dd, dw, kernel[0], stream], np.int64)
    return (kh, sh, rows), dims


def _adjoint_pads(geom: ConvGeometry) -> tuple[int, ...]:
    """The zero padding before each axis of backward-input at stride 1 as a correlation of
    dy with the flipped kernel: the kernel's reach less the forward's padding (negative:
    the first cells of dy are never read)."""
    return tuple((k - 1) * d - p for k, d, p in zip(geom.kernel, geom.dilation, geom.pad_lo, strict=True))


# ---- entry points (float32, C-contiguous destinations; geometry lifted to 3-D) ------------


def _weights(w: np.ndarray, flip: bool = False) -> np.ndarray:
    """w (C, 1, KD, KH, KW) -> (C, taps) float32, C-contiguous; flipped for the adjoint."""
    w = w[:, 0]
    w = w[:, ::-1, ::-1, ::-1] if flip else w
    return np.ascontiguousarray(w, dtype=np.float32).reshape(w.shape[0], -1)


def forward(out, x, w, bias, geom: ConvGeometry) -> None:
    """out (N, C, OD, OH, OW) <- depthwise conv of x (N, C, D, H, W) with w (C, 1, KD, KH, KW)
    + bias (C,) or None."""
    if out.size == 0:
        return
    b = np.zeros(out.shape[1], np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    direct = geom.padding_mode == "zeros" and _direct_plan(
        geom.in_size, geom.out_size, geom.kernel, geom.stride, geom.dilation, geom.pad_lo, layout.streams(out)
    )
    if direct:
        _direct_kernels(*direct[0]).forward(out, layout.contiguous(x), _weights(w), b, direct[1])
        return
    method, plan = _forward_plan(geom)
    _module(method, plan).forward(out, layout.contiguous(x), _weights(w), b, *plan)


def backward_input(dx, dy, w, geom: ConvGeometry) -> None:
    """dx (N, C, D, H, W) <- d loss / d x from dy (N, C, OD, OH, OW) and w (C, 1, KD, KH, KW)."""
    if dx.size == 0:
        return
    direct = (geom.padding_mode, geom.stride) == ("zeros", (1, 1, 1)) and _direct_plan(
        geom.out_size,
        geom.in_size,
        geom.kernel,
        geom.stride,
        geom.dilation,
        _adjoint_pads(geom),
        layout.streams(dx),
    )
    if direct:
        zeros = np.zeros(dx.shape[1], np.float32)
        _direct_kernels(*direct[0]).forward(
            dx, layout.contiguous(dy), _weights(w, flip=True), zeros, direct[1]
        )
        return
    method, size, plan = _backward_input_plan(geom)
    dy, wf, kernels = layout.contiguous(dy), _weights(w, flip=True), _module(method, plan)
    if geom.padding_mode == "zeros":  # dx is the whole correlation
        kernels.forward(dx, dy, wf, np.zeros(dx.shape[1], np.float32), *plan)
    else:
        kernels.backward_input_fold(dx, dy, wf, *plan, *size, *_fold_plan(geom))


def backward_weight(dw, dy, x, geom: ConvGeometry) -> None:
    """dw (C, 1, KD, KH, KW) <- sum over n and outputs of dy (N, C, OD, OH, OW) times the
    padded x (N, C, D, H, W) under each tap."""
    method, plan = _forward_plan(geom)
    result = np.empty((dw.shape[0], math.prod(dw.shape[2:])), np.float32)
    _module(method, plan).backward_weight(result, layout.contiguous(dy), layout.contiguous(x), *plan)
    dw[:, 0] = result.reshape(dw.shape[0], *dw.shape[2:])
