"""Tiled implicit GEMM: the engine of every convolution pass on the GPU.

For one group ``g`` a pass computes ``C[m, n] = sum_k A[k, m] * B[k, n]`` without forming A
or B: the op supplies device functions that load one element of each (an im2col gather
through the padding mode, a weight read) and one that stores a result. A block computes a
``BM x BN`` tile of C with ``TM x TN`` threads, each owning an ``RM x RN`` register tile
(rows ``tm, tm + TM, ...`` so neighbouring threads touch neighbouring pixels and global
loads and stores coalesce); the reduction walks K in steps of ``BK`` staged through shared
memory. ``blockIdx.z`` enumerates (group, split): with split-K each split sums its own
slice of K into its own output slab and the op reduces the slabs in a fixed order, so
results are deterministic and no atomics are used. Index arithmetic is int64 throughout.

Index decoding (a flat pixel into (n, d, h, w), a flat tap into (c, kd, kh, kw)) would cost
more than the multiply-adds if done per loaded element, so it is hoisted: the op turns an
index into a "context" (a 4-tuple of ints) with ``k_ctx``/``m_ctx``/``n_ctx``, and each
thread loads a fixed row (``m``) of A in every step, or a fixed ``k`` of A and B in a step,
so a context is decoded once per block or once per step. Taps are read from a small table.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from numba import cuda, int64
from numba.np import numpy_support

from .device import launch, threads

BK_MAX = 8
"""Reduction step staged through shared memory (smaller only for blocks of < 8 threads)."""


class Tiles(NamedTuple):
    tm: int  # threads along rows (m)
    rm: int  # register tile rows per thread
    tn: int  # threads along columns (n)
    rn: int  # register tile columns per thread

    @property
    def bm(self) -> int:
        return self.tm * self.rm

    @property
    def bn(self) -> int:
        return self.tn * self.rn

    @property
    def bk(self) -> int:
        return min(BK_MAX, self.tm * self.tn)


class GemmOp(NamedTuple):
    """The device functions of one pass. Contexts are 4-tuples of int64."""

    k_ctx: object  # (geo, taps, k) -> context of reduction index k
    m_ctx: object  # (geo, taps, m) -> context of row m of C
    n_ctx: object  # (geo, taps, n) -> context of column n of C
    load_a: object  # (a_src, geo, g, k_context, m_context, zero) -> A[k, m]
    load_b: object  # (b_src, geo, g, k_context, n_context, zero) -> B[k, n]
    store: object  # (dst, aux, geo, g, split, m, n, value) -> None
    a_k_fast: bool  # A loaded along k (a fixed k per thread and step), else along m (fixed m)


def _pow2_floor(n: int) -> int:
    return 1 << (max(1, int(n)).bit_length() - 1)


def _pow2_ceil(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _axis(extent: int, max_threads: int) -> tuple[int, int]:
    """Threads and register-tile size along one axis of C: up to 4 x max_threads cells."""
    r = min(4, _pow2_ceil(extent))
    return min(max_threads, _pow2_ceil(-(-extent // r))), r


def tiles(rows: int, cols: int) -> Tiles:
    """A tile for C (rows x cols) from ``config.CUDA_THREADS`` (rounded down to a power of
    two): the short axis first gets up to the square root of the threads, the long one the
    rest, so thin problems (depthwise, few channels) do not waste most of a tile. ``rm`` is
    at most ``tn``, so the threads cover a whole row of the A tile (``BM`` divides their
    number) and each loads a fixed row."""
    t = _pow2_floor(threads())
    side = 1 << ((t.bit_length() - 1) // 2)
    if rows <= cols:
        tm, rm = _axis(rows, side)
        tn, rn = _axis(cols, t // tm)
    else:
        tn, rn = _axis(cols, side)
        tm, rm = _axis(rows, t // tn)
    return Tiles(tm, min(rm, tn), tn, rn)


@functools.cache
def kernel(op: GemmOp, dtype, t: Tiles):
    """The compiled GEMM of ``op`` for one dtype and tile shape."""
    T = numpy_support.from_dtype(dtype)
    TM, RM, TN, RN = t
    BM, BN, BK, NT = t.bm, t.bn, t.bk, TM * TN
    A_ROW, B_ROW = BM + 1, BN + 1  # padded tile rows: k-major stores hit distinct banks
    k_ctx, m_ctx, n_ctx, load_a, load_b, store, a_k_fast = op

    @cuda.jit
    def gemm(dst, aux, a_src, b_src, taps, geo, M, NC, K, splits, chunk, zero):
        # C tile (BM x BN) of group g, split s <- sum over its K slice of A (K, M)^T . B (K, NC)
        tid = int64(cuda.threadIdx.x)
        tm = tid % TM
        tn = tid // TM
        z = int64(cuda.blockIdx.z)
        g = z // splits
        s = z % splits
        m0 = int64(cuda.blockIdx.x) * BM
        n0 = int64(cuda.blockIdx.y) * BN
        k_begin = s * chunk
        k_end = min(K, k_begin + chunk)
        a_tile = cuda.shared.array((BK, A_ROW), T)
        b_tile = cuda.shared.array((BK, B_ROW), T)
        acc = cuda.local.array((RM, RN), T)
        a_reg = cuda.local.array(RM, T)
        b_reg = cuda.local.array(RN, T)
        for i in range(RM):
            for j in range(RN):
                acc[i, j] = zero
        kk_fixed = tid % BK  # the k a thread loads in each step (k-major loads)
        mm_fixed = tid % BM  # the row of A a thread loads (row-major loads of A)
        m_fixed = min(m0 + mm_fixed, M - 1)
        m_fixed_ctx = m_ctx(geo, taps, m_fixed)  # decoded once per block
        for k0 in range(k_begin, k_end, BK):
            k = k0 + kk_fixed
            k_here = k < k_end
            k_here_ctx = k_ctx(geo, taps, min(k, K - 1))  # decoded once per step
            if a_k_fast:
                for mm in range(tid // BK, BM, NT // BK):
                    m = m0 + mm
                    if k_here and m < M:
                        m_here_ctx = m_ctx(geo, taps, m)
                        a_tile[kk_fixed, mm] = load_a(a_src, geo, g, k_here_ctx, m_here_ctx, zero)
                    else:
                        a_tile[kk_fixed, mm] = zero
            else:
                for kk in range(tid // BM, BK, NT // BM):
                    if k0 + kk < k_end and m0 + mm_fixed < M:
                        kc = k_ctx(geo, taps, k0 + kk)
                        a_tile[kk, mm_fixed] = load_a(a_src, geo, g, kc, m_fixed_ctx, zero)
                    else:
                        a_tile[kk, mm_fixed] = zero
            for nn in range(tid // BK, BN, NT // BK):
                n = n0 + nn
                if k_here and n < NC:
                    n_here_ctx = n_ctx(geo, taps, n)
                    b_tile[kk_fixed, nn] = load_b(b_src, geo, g, k_here_ctx, n_here_ctx, zero)
                else:
                    b_tile[kk_fixed, nn] = zero
            cuda.syncthreads()
            for kk in range(BK):
                for i in range(RM):
                    a_reg[i] = a_tile[kk, tm + i * TM]
                for j in range(RN):
                    b_reg[j] = b_tile[kk, tn + j * TN]
                for i in range(RM):
                    for j in range(RN):
                        acc[i, j] += a_reg[i] * b_reg[j]
            cuda.syncthreads()
        for i in range(RM):
            m = m0 + tm + i * TM
            if m < M:
                for j in range(RN):
                    n = n0 + tn + j * TN
                    if n < NC:
                        store(dst, aux, geo, g, s, m, n, acc[i, j])

    return gemm


def run(op: GemmOp, dst, aux, a_src, b_src, taps, geo, groups, rows, cols, depth, splits=1):
    """C (rows x cols) of every group, summing ``depth`` terms, in ``splits`` K slices."""
    t = tiles(rows, cols)
    chunk = -(-depth // splits)
    chunk = -(-chunk // t.bk) * t.bk
    grid = (-(-rows // t.bm), -(-cols // t.bn), groups * splits)
    dtype = dst.dtype
    args = (dst, aux, a_src, b_src, taps, geo, rows, cols, depth, splits, chunk, dtype.type(0))
    launch(kernel(op, dtype, t), grid, t.tm * t.tn, *args)


def split_count(rows: int, cols: int, groups: int, depth: int, target_blocks: int = 512) -> int:
    """How many K slices keep the GPU busy when C is small and K long (backward weight):
    enough blocks for ``target_blocks``, but at least 4 x BK terms per slice."""
    t = tiles(rows, cols)
    blocks = -(-rows // t.bm) * -(-cols // t.bn) * groups
    return max(1, min(-(-depth // (4 * t.bk)), -(-target_blocks // blocks)))
