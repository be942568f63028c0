"""Channel-blocked layouts for the SIMD kernels, and the conversions to and from NCDHW.

activations (N, C, D, H, W) <-> (N, C/16, D, H, W, 16), channels zero-padded to 16
weights (O, C, KD, KH, KW) -> (O/16, C/16, KD, KH, KW, 16 c, 16 o)
pairs of groups (N, 2*C, D, H, W) -> (N, C/8, D, H, W, 16): lanes 2k, 2k + 1 channel k of
    each group (``to_blocked_pairs``)

Padding is folded into the input conversion through the index maps of ``layout`` (one map
per spatial axis; -1 reads zero), so the convolution kernels see a valid convolution and
have no branches.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from ...config import FASTMATH
from . import layout
from .simd import LANES, U64, transpose8, transpose8_pairs, transpose8_spread

_JIT = dict(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
_INNER = dict(cache=True, fastmath=FASTMATH, error_model="numpy")


def blocks(channels: int) -> int:
    return -(-channels // LANES)


_scratch: dict[str, np.ndarray] = {}


def scratch(slot: str, shape) -> np.ndarray:
    """A float32 work array of ``shape`` for ``slot`` ("input", "grad", "output"), reused
    from call to call: a fresh allocation of a layer's blocked copy costs page faults on
    every call (about a millisecond per 25 MB). Callers run under the backend lock and are
    done with a slot before reusing it; each slot keeps the largest array it ever needed."""
    size = math.prod(shape)
    buf = _scratch.get(slot)
    if buf is None or buf.size < size:
        buf = _scratch[slot] = np.empty(size, np.float32)
    return buf[:size].reshape(shape)


@njit(inline="always")
def _row_of(job, Cb, Dp, Hp):
    """(image, channel block, depth, row) of blocked row ``job`` of (N, Cb, Dp, Hp, ...)."""
    ih = job % Hp
    t = job // Hp
    i_d = t % Dp
    t //= Dp
    return t // Cb, t % Cb, i_d, ih


@njit(**_JIT)
def _to_blocked_kernel(out, x, src_c, off_h, off_w, step_h, step_w, map_d, map_h, map_w, plain):
    # out (N, Cb, Dp, Hp, Wp, L): blocked channel ch = cb*L + lane reads x (N, C, D, H, W) channel src_c[ch] at
    # (map_d[i], map_h[j*step_h + off_h[ch]], map_w[k*step_w + off_w[ch]]); a map entry -1 reads 0.
    # plain: channel ch is input channel src_c[0] + ch at offsets 0 (nothing folded, maybe a group's
    # channels); L: 16, or fewer for one narrow block
    N, Cb, Dp, Hp, Wp, L = out.shape
    channels = src_c.shape[0]
    C, D, H, W = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    of, xf = out.reshape(-1), x.reshape(-1)
    a, b = layout.run_of(map_w[::step_w][:Wp])  # the cells a <= iw < b read consecutively
    for job in prange(N * Cb * Dp * Hp):
        n, cb, i_d, ih = _row_of(job, Cb, Dp, Hp)
        src_d = map_d[i_d]
        dst = job * Wp * L  # the blocked row (n, cb, i_d, ih): Wp pixels x L lanes
        real = min(L, channels - cb * L)  # the block's channels; lanes past them are zero
        if plain and L % 8 == 0 and real >= 8 and src_d >= 0 and map_h[ih * step_h] >= 0:
            # L = 16 or 8 (a narrow block of 8: 8-channel groups) whole input rows: the run
            # a <= iw < b (at least 8 cells) 8 pixels x 8 channels per register transpose, a
            # ragged end as one more that overlaps the last (the same bits stored twice); the
            # cells around it (padding), and a channel tail past the last 8 (24 channels:
            # 16 + 8), lane by lane
            src = ((n * C + src_c[cb * L]) * D + src_d) * H * W + map_h[ih * step_h] * W
            lo, hi = (a, b) if b - a >= 8 else (0, 0)
            whole = real // 8 * 8  # the channels the transposes move
            for iw in range(Wp):
                if iw < lo or iw >= hi or whole < L:
                    src_w, first = map_w[iw * step_w], 0 if iw < lo or iw >= hi else whole
                    for c in range(first, real):
                        cell = src + c * D * H * W + src_w
                        of[U64(dst + iw * L + c)] = xf[U64(cell)] if src_w >= 0 else 0
                    for c in range(real, L):
                        of[U64(dst + iw * L + c)] = 0
            for k in range(0, hi - lo, 8):
                iw0 = lo + min(k, hi - lo - 8)
                for c0 in range(0, whole, 8):
                    first = src + c0 * D * H * W + map_w[iw0 * step_w]
                    transpose8(of, dst + iw0 * L + c0, L, xf, first, D * H * W)
            continue
        for c in range(L):  # flat unsigned indices (``simd.U64``)
            ch = cb * L + c
            src_h = map_h[ih * step_h + off_h[ch]] if ch < channels else -1
            if src_d < 0 or src_h < 0:
                for iw in range(Wp):
                    of[U64(dst + iw * L + c)] = 0
            else:
                src = ((n * C + src_c[ch]) * D + src_d) * H * W + src_h * W
                base = off_w[ch]
                if step_w == 1 and map_w[base] >= 0 and map_w[base + Wp - 1] == map_w[base] + Wp - 1:
                    for iw in range(Wp):  # consecutive cells: a map rises by at most 1 per cell
                        of[U64(dst + iw * L + c)] = xf[U64(src + map_w[base] + iw)]
                    continue
                for iw in range(Wp):
                    src_w = map_w[iw * step_w + base]
                    of[U64(dst + iw * L + c)] = xf[U64(src + src_w)] if src_w >= 0 else 0


@njit(**_JIT)
def _to_pairs_kernel(out, x, cpg, map_d, map_h, map_w):
    # out (M, Cb, Dp, Hp, Wp, 16) <- x (M, 2*cpg, D, H, W), each image two groups of cpg channels
    # (A, then B): lanes 2k, 2k + 1 of block cb hold channel cb*8 + k of A and of B (zero past cpg),
    # at cells (map_d[i], map_h[j], map_w[k]), -1 reading 0. Rows of 8 whole pairs: the run of
    # map_w 8 pixels x 4 pairs per register transpose (``transpose8_pairs``), twice; the rest
    # lane by lane
    M, Cb, Dp, Hp, Wp, L = out.shape
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    of, xf, plane = out.reshape(-1), x.reshape(-1), D * H * W
    a, b = layout.run_of(map_w[:Wp])
    for job in prange(M * Cb * Dp * Hp):
        m, cb, i_d, ih = _row_of(job, Cb, Dp, Hp)
        dst = job * Wp * L
        src_d, src_h = map_d[i_d], map_h[ih]
        if src_d < 0 or src_h < 0:
            of[U64(dst) : U64(dst + Wp * L)] = 0
            continue
        src = (m * 2 * cpg * D + src_d) * H * W + src_h * W  # channel 0 of the image, this row
        pairs = min(8, cpg - cb * 8)
        lo, hi = (a, b) if pairs == 8 and b - a >= 8 else (0, 0)
        for iw in range(Wp):
            if iw < lo or iw >= hi:
                src_w = map_w[iw]
                for lane in range(L):
                    k, g = lane // 2, lane % 2
                    cell = src + (g * cpg + cb * 8 + k) * plane + src_w
                    of[U64(dst + iw * L + lane)] = xf[U64(cell)] if k < pairs and src_w >= 0 else 0
        for k in range(0, hi - lo, 8):
            iw0 = lo + min(k, hi - lo - 8)
            for half in range(2):  # pairs 4*half ... 4*half + 3
                first = src + (cb * 8 + 4 * half) * plane + map_w[iw0]
                transpose8_pairs(of, dst + iw0 * L + 8 * half, L, xf, first, plane, cpg)


def to_blocked_pairs(x: np.ndarray, maps, cpg: int, slot: str = "input") -> np.ndarray:
    """x (M, 2*cpg, D, H, W) float32, each image two groups of ``cpg`` channels -> (M,
    ceil(cpg/8), len(map_d), len(map_h), len(map_w), 16), a block's lanes the channel pairs
    (A0, B0, A1, B1, ..., A7, B7) of 8 channels of both groups, in the scratch array of ``slot``."""
    out = scratch(slot, (x.shape[0], -(-cpg // 8), *(len(m) for m in maps), LANES))
    _to_pairs_kernel(out, x, cpg, *maps)
    return out


@njit(**_INNER)
def store_row(of, dst, plane, out_w, step_w, channels, row, src):
    # of[dst + c*plane + ow*step_w] <- row[src + ow*16 + c] for c < channels <= 16, ow < out_w: one
    # blocked row (pixels x 16 lanes, in L1) into rows ``plane`` apart of a flat, C-contiguous NCDHW
    # array (the forward kernels' epilogue). Rows of 8 or more cells go 8 channels x 8 pixels per
    # register transpose, a ragged end as one more transpose that overlaps the last (the same bits
    # stored twice): at step_w 1 into consecutive cells, at 2 (a stride-2 phase of the adjoint) into
    # every other cell (``transpose8_spread``); other rows and a channel tail one cell at a time
    for c0 in range(0, channels, 8):
        d, s = dst + c0 * plane, src + c0
        if channels - c0 >= 8 and step_w == 1 and out_w >= 8:
            for ow in range(0, out_w - 7, 8):
                transpose8(of, d + ow, plane, row, s + ow * LANES, LANES)
            if out_w % 8:
                transpose8(of, d + out_w - 8, plane, row, s + (out_w - 8) * LANES, LANES)
            continue
        if channels - c0 >= 8 and step_w == 2 and out_w >= 8:
            for ow in range(0, out_w - 7, 8):
                transpose8_spread(of, d + 2 * ow, plane, row, s + ow * LANES, LANES)
            if out_w % 8:
                transpose8_spread(of, d + 2 * (out_w - 8), plane, row, s + (out_w - 8) * LANES, LANES)
            continue
        for c in range(min(8, channels - c0)):
            for ow in range(out_w):
                of[U64(d + c * plane + ow * step_w)] = row[U64(s + ow * LANES + c)]


def to_blocked(x: np.ndarray, maps, slot: str = "input") -> np.ndarray:
    """x (N, C, D, H, W) float32 -> (N, Cb, len(map_d), len(map_h), len(map_w), 16), in the
    scratch array of ``slot``."""
    src_c, zero = _channel_table(x.shape[1])
    size = tuple(len(m) for m in maps)
    return to_blocked_folded(x, maps, src_c, zero, zero, (1, 1), size, slot, plain=True)


@functools.lru_cache(maxsize=256)
def _channel_table(channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(source channels, zero offsets) of an unfolded conversion; cached (callers only read)."""
    return np.arange(channels), np.zeros(channels, np.int64)


def to_blocked_folded(
    x, maps, src_c, off_h, off_w, steps, size, slot: str = "input", narrow: bool = False, plain=None
) -> np.ndarray:
    """x (N, C, D, H, W) float32 -> (N, ceil(len(src_c)/16), *size, 16) where blocked channel
    ``ch`` is input channel ``src_c[ch]`` read at padded height ``j*steps[0] + off_h[ch]`` and
    width ``k*steps[1] + off_w[ch]``: kernel taps folded into channels (a partial im2col).
    ``narrow``: fewer than 16 channels are stored as one block of just that many lanes,
    (N, 1, *size, len(src_c)), which the forward kernel reads without padding. ``plain``:
    whether the channels are consecutive with zero offsets (nothing folded), found from the
    tables when not given."""
    lanes = len(src_c) if narrow and len(src_c) < LANES else LANES
    out = scratch(slot, (x.shape[0], -(-len(src_c) // lanes), *size, lanes))
    if plain is None:
        plain = not (np.any(src_c != src_c[0] + np.arange(len(src_c))) or off_h.any() or off_w.any())
    _to_blocked_kernel(out, x, src_c, off_h, off_w, *steps, *maps, plain)
    return out


def phase_view(out: np.ndarray, phase) -> np.ndarray:
    """The cells ``start + i*step`` of out's spatial axes, for ``phase = (start, step)``."""
    start, step = phase
    return out[(slice(None), slice(None), *(slice(a, None, b) for a, b in zip(start, step, strict=True)))]


def phase_size(size, phase) -> tuple[int, ...]:
    """The spatial shape of ``phase_view`` for an array of spatial shape ``size``."""
    return tuple(len(range(a, n, b)) for a, b, n in zip(*phase, size, strict=True))


@njit(**_JIT)
def _weight_to_blocked_kernel(out, w):
    # out (Ob, Cb, KD, KH, KW, 16 c, 16 o) <- w (O, C, KD, KH, KW), zero-padded channels. Flat
    # unsigned indices (``simd.U64``): each job's 16 output rows of w stay in L1 while it
    # writes its block in order
    Ob, Cb = out.shape[0], out.shape[1]
    O, C = w.shape[0], w.shape[1]
    taps = out.shape[2] * out.shape[3] * out.shape[4]
    of, wf = out.reshape(-1), w.reshape(-1)
    row = C * taps  # one output channel of w
    for job in prange(Ob * Cb):
        ob, cb = job // Cb, job % Cb
        base = job * taps * LANES * LANES
        no, nc = min(LANES, O - ob * LANES), min(LANES, C - cb * LANES)
        if no < LANES or nc < LANES:  # an edge block: zeros first
            for k in range(taps * LANES * LANES):
                of[U64(base + k)] = 0
        for t in range(taps):
            for c in range(nc):
                src = (ob * LANES * C + cb * LANES + c) * taps + t
                dst = base + (t * LANES + c) * LANES
                for o in range(no):
                    of[U64(dst + o)] = wf[U64(src + o * row)]


def weight_to_blocked(w: np.ndarray) -> np.ndarray:
    """w (O, C, KD, KH, KW) -> (Ob, Cb, KD, KH, KW, 16 c, 16 o), zero-padded channels."""
    out = np.empty((blocks(w.shape[0]), blocks(w.shape[1]), *w.shape[2:], LANES, LANES), np.float32)
    _weight_to_blocked_kernel(out, np.ascontiguousarray(w, dtype=np.float32))
    return out


@njit(**_JIT)
def _weight_from_blocked_kernel(dw, blocked):
    # dw (O, C, KD, KH, KW) <- blocked (Ob, Cb, KD, KH, KW, 16 c, 16 o), cropped; flat indices
    O, C = dw.shape[0], dw.shape[1]
    Cb = blocked.shape[1]
    taps = blocked.shape[2] * blocked.shape[3] * blocked.shape[4]
    df, bf = dw.reshape(-1), blocked.reshape(-1)
    for o in prange(O):  # one output channel: a contiguous run of C * taps weights
        ob, lane = o // LANES, o % LANES
        for c in range(C):
            src = ((ob * Cb + c // LANES) * taps * LANES + c % LANES) * LANES + lane
            dst = (o * C + c) * taps
            for t in range(taps):
                df[U64(dst + t)] = bf[U64(src + t * LANES * LANES)]


@njit(**_JIT)
def _adjoint_taps_kernel(out, w, cells):
    # out (G*C, O, M) <- w (G*O, C, T) at the flat taps cells (M,), the first two axes swapped
    # group by group (G = 1: dense); flat unsigned indices
    GC, O, M = out.shape
    C, T = w.shape[1], w.shape[2]
    of, wf = out.reshape(-1), w.reshape(-1)
    for r in prange(GC):  # one contiguous (O, M) block of out: channel c of group g
        g, c = r // C, r % C
        for o in range(O):
            src, dst = ((g * O + o) * C + c) * T, (r * O + o) * M
            for m in range(M):
                of[U64(dst + m)] = wf[U64(src + cells[m])]


def adjoint_taps(w: np.ndarray, taps, groups: int = 1) -> np.ndarray:
    """w (O, C, KD, KH, KW) -> (C, O, len(taps[0]), len(taps[1]), len(taps[2])): the weight of
    the adjoint (input and output channels swapped) at the taps ``taps`` (one range per axis,
    in the order wanted: a reversed range flips the kernel), in one pass; with ``groups``, w
    holds the groups' weights (O = groups x O/groups) and the result is (groups*C, O/groups,
    ...): each group's adjoint, in turn."""
    o, c = w.shape[:2]
    out = np.empty((groups * c, o // groups, *map(len, taps)), np.float32)
    cells = _tap_cells(w.shape[3:], tuple(taps))
    _adjoint_taps_kernel(
        out.reshape(groups * c, o // groups, -1), layout.contiguous(w).reshape(o, c, -1), cells
    )
    return out


@njit(**_JIT)
def _adjoint_blocked_kernel(out, w, cells, cell_end, out_end, groups, obp):
    # w (G*O, C, T); phase p's part of out, out[out_end[p]:out_end[p + 1]], is (G*obp, Cb, M, 16 c, 16 o),
    # M = cell_end[p + 1] - cell_end[p], with [g*obp + ob, cb, m, c, o] = w[g*O + cb*16 + c, ob*16 + o,
    # cells[cell_end[p] + m]], zero past O or C: the blocked weight of the adjoint (C outputs per group,
    # padded to obp blocks; O inputs) at phase p's taps. One job per (phase, output block, input block),
    # M*256 consecutive floats; flat unsigned indices
    GO, C, T = w.shape
    O = GO // groups
    Cb = -(-O // LANES)
    per_phase = groups * obp * Cb
    of, wf = out.reshape(-1), w.reshape(-1)
    for job in prange((cell_end.shape[0] - 1) * per_phase):
        p, r = job // per_phase, job % per_phase
        g, ob, cb = r // Cb // obp, r // Cb % obp, r % Cb
        first, taps = cell_end[p], cell_end[p + 1] - cell_end[p]
        base = out_end[p] + r * taps * LANES * LANES
        for m in range(taps):
            cell = cells[first + m]
            for c in range(LANES):
                ci = cb * LANES + c  # an input of the adjoint: an output of the forward
                for o in range(LANES):
                    oi = ob * LANES + o  # an output of the adjoint: an input of the forward
                    v = wf[U64(((g * O + ci) * C + oi) * T + cell)] if ci < O and oi < C else 0
                    of[U64(base + (m * LANES + c) * LANES + o)] = v


def adjoint_weights(w: np.ndarray, taps, groups: int, out_blocks: int):
    """w (groups*O, C, KD, KH, KW) -> the blocked weights of its adjoint (C outputs per group,
    padded to ``out_blocks`` blocks; O inputs) at each phase's taps of ``taps`` (per phase, one
    range per axis, as ``adjoint_taps``), in one pass: (flat, shapes, ends), phase p's weight
    (groups*out_blocks, ceil(O/16), taps..., 16 c, 16 o) being flat[ends[p]:ends[p + 1]] of
    shape shapes[p]. The same weights as ``adjoint_taps``, padded and ``weight_to_blocked``."""
    cells, cell_end, shapes, ends = _adjoint_plan(w.shape, tuple(taps), groups, out_blocks)
    out = np.empty(ends[-1], np.float32)
    flat_w = layout.contiguous(w).reshape(w.shape[0], w.shape[1], -1)
    _adjoint_blocked_kernel(out, flat_w, cells, cell_end, ends, groups, out_blocks)
    return out, shapes, ends


@functools.lru_cache(maxsize=256)
def _adjoint_plan(shape, taps, groups: int, out_blocks: int):
    """(every phase's flat tap cells, concatenated; where each phase's start, (P + 1,); the
    phases' weight shapes (P, 7); where each phase's weight starts in the flat array,
    (P + 1,)) of ``adjoint_weights``: shapes only, cached (callers only read)."""
    cells = [_tap_cells(shape[3:], tuple(t)) for t in taps]
    o = shape[0] // groups
    shapes = np.array([(groups * out_blocks, blocks(o), *map(len, t), LANES, LANES) for t in taps], np.int64)
    ends = np.cumsum([0] + [math.prod(s) for s in shapes])
    return np.concatenate(cells), np.cumsum([0] + [len(c) for c in cells]), shapes, ends


@functools.lru_cache(maxsize=256)
def _tap_cells(kernel_hw, taps) -> np.ndarray:
    """Flat cell of each tap of ``taps`` (ranges per axis) in a (KD, KH, KW) kernel; cached
    (callers only read it)."""
    (kh, kw), (td, th, tw) = kernel_hw, (np.asarray(t, np.int64) for t in taps)
    return ((td[:, None, None] * kh + th[None, :, None]) * kw + tw[None, None, :]).reshape(-1)


def weight_from_blocked(dw: np.ndarray, blocked: np.ndarray) -> None:
    """dw (O, C, KD, KH, KW) <- blocked (Ob, Cb, KD, KH, KW, 16 c, 16 o), cropped."""
    _weight_from_blocked_kernel(dw, blocked)
