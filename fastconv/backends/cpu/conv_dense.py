"""Dense (groups = 1) float32 convolution in the channel-blocked layout: the generated,
register-blocked microkernels.

Forward: each job owns one output row of NB x 16 output channels; the microkernel keeps a
block of RW pixels x NB channel vectors in registers (12-24 accumulators on AVX-512, 4-6 on
AVX2, whose 16 registers hold half as much: ``_BLOCKS``) and, for every input channel,
broadcasts one input value per pixel and does NB x RW fused multiply-adds against NB weight
vectors (an outer product). Input channels are the broadcast side, so a block's padding
lanes need not be read: the last block runs over its real channels only, and an input of
fewer than 16 channels is stored narrow (just its channels per pixel) with the width taps
of each kernel row packed into one run of weights (``narrow_weight``). The row is computed
into an L1 buffer and transposed from there straight into the NCDHW output (no blocked
output array written to memory and read back).

Backward-weight: each job owns the dW of NB output blocks x one input block x one depth tap
(jobs never share a sum, so no reduction crosses threads) and adds into it a few rows of
grad_output at a time (``_TILE_PIXELS``): the rows it reads stay in L1 for every tap, so dy
and x stream from memory once per job instead of once per tap. A register tile of NB output
vectors x KT width taps x CS input channels is loaded, swept along those rows and stored
back.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from . import blocked, chunks, codegen, layout, simd
from .simd import LANES

# Forward register blocks {NB: {RW: relative speed}}: NB vectors of 16 output channels x RW
# pixels, measured per instruction set (``simd.ISA``). AVX-512 (32 zmm): NB * RW accumulators
# + NB weights + 1 broadcast fit in 32 registers. On the 2-core Xeon (AVX-512), 2 threads,
# a 192 -> 192 3x3 on 16 rows of a width each block divides, whole calls: NB = 2 ran at
# 339-347 GFLOP/s for RW = 10-14, 324 for 8, 314 for 7; (4, 6) 329, (3, 7) 339, but (3, 7)
# ran AlexNet's first layer (6 blocks, 55 -> 56 wide) 6% slower than (2, 14) and a 1x1
# 256 -> 512 on 49 pixels 15% slower (its 3 x 256 weight vectors overflow L1); NB = 1 (one
# weight vector per broadcast) about 195 for any RW, so it runs one output block only. On
# the 2-core AMD EPYC host (Zen 4) NB = 1 nearly keeps up (``_NB1_SPEED``: about the mean of
# these speeds relative to the other block's, each forced on the same cells, paired): (1, 14) against
# (2, 14) on 64 -> 32 and 64 -> 64 3x3 layers on 56x56 (N = 8) 162 against 162 and 177
# against 176 GFLOP/s (1.00, 1.00); tdnn_conv1d's forward (1, 10) against (2, 8) 4.91
# against 5.09 ms (0.985), video_conv3d's (1, 16) against (2, 8) 5.37 against 5.53 (0.98),
# tdnn's input gradient (1, 10) against (3, 7) 6.04 against 5.89 (0.92). Its widths fit the
# rows of a single block: LeNet's 10-wide 16-channel forward computes 10 cells per row at
# (1, 10), 24 at (2, 12) (0.271 against 0.320 ms).
# AVX2 (16 ymm, two per vector): a vector is already two FMAs per broadcast at NB = 1, and
# 2 * (RW + 1) + 1 <= 16 allows RW <= 6; on the 2-core Zen 3 machine RW = 6, 5, 4 ran at
# 152, 135 and 111 GFLOP/s. The block that computes the padded output (blocks x width, each
# padded to a multiple of NB and RW) in the least time runs (``_plan``): the many widths of
# NB = 2 fit most rows exactly (14: ResNet's 14, 28, 56, 112; 8: 16, 32, 64), where (4, 6)
# computed 18 cells for a 14-wide row (resnet_3x3_256 forward 6.45 -> 5.40 ms).
_NB1_SPEED = 0.97 if layout.VENDOR == "AuthenticAMD" else 0.58
_BLOCKS = {
    "avx512": {
        4: {6: 0.97},
        3: {7: 0.94},
        2: {14: 1.0, 12: 1.0, 8: 0.95, 7: 0.92},
        1: dict.fromkeys((16, 14, 12, 10, 8), _NB1_SPEED),
    },
    "avx2": {1: {6: 1.0, 5: 0.89, 4: 0.73}},
}


_UNROLL = 4
"""Input channels per step of the forward's channel loop, written out in the source (LLVM
unrolls only by 2 itself): 5-7% faster on the Zen 3 machine than no unrolling, for about 1 s
more compile time per kernel; 16 was no faster and doubled the compile time."""


def _forward_source(nb: int, rw: int, pixel_step: int = 0, pairs: bool = False) -> str:
    acc = [[f"a{j}_{i}" for i in range(rw)] for j in range(nb)]
    ind = " " * 12
    init = "\n".join(f"{ind}{acc[j][i]} = vload(bias, (gb + {j}) * 16)" for j in range(nb) for i in range(rw))
    wbase = "\n".join(
        f"{ind}                wk{j} = (((((gb + {j}) * Cb + cb) * KD + kd) * KH + kh) * KW + kw) * CL * 16"
        for j in range(nb)
    )

    def step(c: str, pad: str) -> str:
        """The outer product of input channel ``c`` (with ``pairs``: of the pair of channels
        c of both groups): NB weight vectors x RW broadcasts."""
        lines = [f"{pad}w{j} = vload(wf, wk{j} + {c} * 16)" for j in range(nb)]
        for i in range(rw):
            read = f"vbcast2(xf, xk + 2 * {c} + {i} * xs)" if pairs else f"vbcast(xf, xk + {c} + {i} * xs)"
            lines.append(f"{pad}x = {read}")
            lines += [f"{pad}{acc[j][i]} = vfma(x, w{j}, {acc[j][i]})" for j in range(nb)]
        return "\n".join(lines)

    whole = "\n".join(step(f"(c + {c})", " " * 36) for c in range(_UNROLL))
    ragged = step("c", " " * 36)
    block = 8 if pairs else 16  # channels (pairs) of a whole block
    store = []
    for j in range(nb):
        store.append(f"{ind}o = ({j} * OWp + ow0) * 16")
        for i in range(rw):
            sums = f"vdeinterleave({acc[j][i]})" if pairs else acc[j][i]  # pairs: lanes A0, B0, A1, ...
            store.append(f"{ind}vstore(row, o + {i * 16}, {sums})")
    note = (
        "\n    # Pairs: each image is two groups (A, B) of 8 outputs, their input channels paired in the"
        "\n    # blocks (``blocked.to_blocked_pairs``): CL = 8 pairs per block, one 64-bit broadcast and"
        "\n    # one weight vector (``pair_weight``) per pair; the sums' lanes A0, B0, A1, ... go to the"
        "\n    # row deinterleaved (outputs A0..A7, B0..B7)."
        if pairs
        else ""
    )
    xs = str(pixel_step) if pixel_step else "sw * L"
    return f"""
import numpy as np

from fastconv.backends.cpu.blocked import store_row
from fastconv.backends.cpu.chunks import bounds, jobs_before
{"from fastconv.backends.cpu.simd import vbcast2, vdeinterleave" if pairs else ""}


@njit(**_SERIAL)
def rows(out, xb, wb, bias, tail, sd, sh, sw, dd, dh, dw, off_d, off_h, off_w, size, start, step, O, OWp, G, first, last):
    # jobs first <= job < last of ``kernel``: job (n, output blocks ob0..., od, oh) computes its row of
    # OWp >= out_w pixels into an L1 buffer and transposes it into out (``blocked.store_row``). Register
    # blocks of {rw} pixels x {nb} vectors of 16 output channels. Per tap the CL inputs from xb[..., w*L]
    # on are read (CL = L = 16: one channel block); the last block reads just ``tail`` (its padding lanes
    # cost nothing). A narrow input (L < 16 channels) with its width taps packed into the weights reads
    # CL = KW*L consecutive cells per kernel row (see ``narrow_weight``).{note}
    C, D, H, W = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    (OD, OH, out_w), (start_d, start_h, start_w), (step_d, step_h, step_w) = size, start, step
    Cb, Dp, Hp, Wp, L = xb.shape[1], xb.shape[2], xb.shape[3], xb.shape[4], xb.shape[5]
    Ob, KD, KH, KW, CL = wb.shape[0] // G, wb.shape[2], wb.shape[3], wb.shape[4], wb.shape[5]
    xf, wf, of = xb.reshape(-1), wb.reshape(-1), out.reshape(-1)
    xs, plane = {xs}, D * H * W
    n_groups = Ob // {nb}
    row = np.empty({nb} * OWp * 16, np.float32)  # (NB, OWp, 16)
    for job in range(first, last):
        oh = job % OH
        t = job // OH
        od = t % OD
        t //= OD
        ob0 = (t % n_groups) * {nb}
        n = t // n_groups
        gb = (n % G) * Ob + ob0  # the job's first block of weights and bias
        for ow0 in range(0, OWp, {rw}):
{init}
            for cb in range(Cb):
                cn = CL if cb < Cb - 1 else tail
                for kd in range(KD):
                    for kh in range(KH):
                        xrow = (((n * Cb + cb) * Dp + off_d + od * sd + kd * dd) * Hp + off_h + oh * sh + kh * dh) * Wp + off_w
                        for kw in range(KW):
                            xk = (xrow + ow0 * sw + kw * dw) * L
{wbase}
                            if cn == {block}:  # a whole block, its channels unrolled by _UNROLL
                                for c in range(0, {block}, {_UNROLL}):
{whole}
                            else:
                                for c in range(cn):
{ragged}
{chr(10).join(store)}
        at = ((start_d + od * step_d) * H + start_h + oh * step_h) * W + start_w
        for j in range({nb}):
            channels = min(16, O - (ob0 + j) * 16)  # none in a block of padding
            if channels > 0:
                dst = (n * C + (ob0 + j) * 16) * plane + at
                store_row(of, dst, plane, out_w, step_w, channels, row, j * OWp * 16)


@njit(**_JIT)
def kernel(out, xb, wb, bias, tail, sd, sh, sw, dd, dh, dw, off_d, off_h, off_w, cells, O, OWp, G, most):
    # out[n, o, cells] (o < O; cells: start + i*step per spatial axis, OD x OH x out_w of them) <- valid
    # conv of xb (N, Cb, Dp, Hp, Wp, L) from cell (off_d, off_h, off_w) with wb (G*Ob, Cb, KD, KH, KW, CL, 16) +
    # bias (G*Ob*16,): image n is group n % G of a grouped convolution (G = 1: dense), its blocks of wb and bias
    # from (n % G) * Ob on; out C-contiguous. One job per output row and {nb} output blocks (``rows``), in
    # at most ``most`` chunks of consecutive jobs, each run by a serial function (``chunks``: the parallel
    # loop's body is one call, which compiles in less time; the same bits for any chunking).
    size, start, step = cells  # (a tuple of tuples cannot enter the parallel loop)
    jobs = out.shape[0] * (wb.shape[0] // G // {nb}) * size[0] * size[1]
    n_chunks = min(jobs, most)
    for k in prange(n_chunks):
        first, last = bounds(k, jobs, n_chunks)
        rows(out, xb, wb, bias, tail, sd, sh, sw, dd, dh, dw, off_d, off_h, off_w, size, start, step, O, OWp, G, first, last)


@njit(**_JIT)
def kernel_phases(out, xb, wflat, wshape, wend, bias, tail, sd, sh, sw, dd, dh, dw, offsets, cells, O, OWp, G, most):
    # ``kernel`` for each phase p of an adjoint (each a stride-1 convolution), all in one launch: weight
    # wflat[wend[p]:wend[p + 1]] of shape wshape[p], read from offsets[p], into the cells cells[p] = (size,
    # start, step) of out (no two phases share a cell, but their rows share cache lines). Chunks of
    # consecutive jobs of the phases' common grid (image, output blocks, od, oh: the largest phase's rows),
    # each running, phase after phase, that phase's jobs in its part of the grid: the phases of one region
    # of out run on one thread, which shares none of its lines with another's at the same time.
    P = wshape.shape[0]
    GD, GH = 1, 1
    for p in range(P):
        GD, GH = max(GD, cells[p, 0, 0]), max(GH, cells[p, 0, 1])
    jobs = out.shape[0] * (wshape[0, 0] // G // {nb}) * GD * GH
    n_chunks = min(jobs, most)
    for k in prange(n_chunks):
        first, last = bounds(k, jobs, n_chunks)
        for p in range(P):  # the chunk's jobs in phase p
            D, H = cells[p, 0, 0], cells[p, 0, 1]
            lo, hi = jobs_before(first, GD, GH, D, H), jobs_before(last, GD, GH, D, H)
            if lo < hi:
                s = wshape[p]
                wb = wflat[wend[p] : wend[p + 1]].reshape((s[0], s[1], s[2], s[3], s[4], s[5], s[6]))
                size = (D, H, cells[p, 0, 2])
                start = (cells[p, 1, 0], cells[p, 1, 1], cells[p, 1, 2])
                step = (cells[p, 2, 0], cells[p, 2, 1], cells[p, 2, 2])
                off_d, off_h, off_w = offsets[p, 0], offsets[p, 1], offsets[p, 2]
                rows(out, xb, wb, bias, tail, sd, sh, sw, dd, dh, dw, off_d, off_h, off_w, size, start, step, O, OWp, G, lo, hi)
"""


_TILE_PIXELS = 64
"""Output pixels (whole rows of them) that one load of the weight-gradient register tile
sweeps before it is stored back. Loaded and stored once per row, ResNet's 14-pixel rows ran
resnet_3x3_256's weight gradient 1.2x as long (paired, on the 2-core Xeon). The sum over
pixels keeps its order (rows, then pixels)."""


def _backward_weight_source(nb: int, kt: int, cs: int, pairs: bool = False) -> str:
    acc = [[[f"a{j}_{t}_{c}" for c in range(cs)] for t in range(kt)] for j in range(nb)]
    names = [(j, t, c) for j in range(nb) for t in range(kt) for c in range(cs)]
    ind = " " * 28
    body = [f"{ind}g{j} = vload(dyf, dyrow + {j} * dys + ow * 16)" for j in range(nb)]
    for t in range(kt):
        for c in range(cs):
            read = f"vbcast2(xf, xk + {t} * xt + 2 * {c})" if pairs else f"vbcast(xf, xk + {t} * xt + {c})"
            body.append(f"{ind}x = {read}")
            body += [f"{ind}{acc[j][t][c]} = vfma(x, g{j}, {acc[j][t][c]})" for j in range(nb)]
    at = " " * 32
    load = "\n".join(
        f"{at}{acc[j][t][c]} = vload(dwf, base + {j} * obs + {t * 256 + c * 16})" for j, t, c in names
    )
    store = "\n".join(
        f"{at}vstore(dwf, base + {j} * obs + {t * 256 + c * 16}, {acc[j][t][c]})" for j, t, c in names
    )
    note = (
        "\n    # Pairs: each image is two groups of 8 outputs, dy and x in pairs (``blocked.to_blocked_pairs``):"
        "\n    # one 64-bit broadcast per input channel pair; c of dwb counts pairs (8), lanes the outputs A0, B0, ..."
        if pairs
        else ""
    )
    return f"""
{"from fastconv.backends.cpu.simd import vbcast2" if pairs else ""}

@njit(**_JIT)
def kernel(dwb, dyb, xb, sd, sh, sw, dd, dh, dw, G):
    # dwb (G*Ob, Cb, KD, KH, KW, 16 c, 16 o) = sum over n and outputs of dyb (N, Ob, OD, OH, OW, 16) x xb (N, Cb, Dp, Hp, Wp, L)
    # (L = 16, or fewer channels in one narrow block: lanes c < L of dwb); image n is group n % G of a grouped
    # convolution (G = 1: dense), summed into that group's blocks of dwb; one job owns the dW of {nb} output
    # blocks x one input block x one depth tap, summed in place (L1-resident) a few rows at a time; register tile:
    # {nb} output vectors x {kt} width taps x {cs} input channels{note}
    Ob, Cb, KD, KH, KW = dwb.shape[0] // G, dwb.shape[1], dwb.shape[2], dwb.shape[3], dwb.shape[4]
    N, OD, OH, OW = dyb.shape[0], dyb.shape[2], dyb.shape[3], dyb.shape[4]
    Dp, Hp, Wp, L = xb.shape[2], xb.shape[3], xb.shape[4], xb.shape[5]
    dwf, dyf, xf = dwb.reshape(-1), dyb.reshape(-1), xb.reshape(-1)
    xs, xt, dys, obs = sw * L, dw * L, OD * OH * OW * 16, Cb * KD * KH * KW * 256
    tile = KH * KW * 256
    rows = max(1, -(-{_TILE_PIXELS} // OW))  # output rows per sweep of the register tile
    for job in prange(G * (Ob // {nb}) * Cb * KD):
        kd = job % KD
        t = job // KD
        cb = t % Cb
        t //= Cb
        ob0 = (t % (Ob // {nb})) * {nb}
        g = t // (Ob // {nb})
        gob0 = g * Ob + ob0  # the job's first block of dwb
        for j in range({nb}):
            first = (((gob0 + j) * Cb + cb) * KD + kd) * tile
            dwf[first : first + tile] = 0
        for n in range(g, N, G):  # the images of group g, in order
            for od in range(OD):
                for oh0 in range(0, OH, rows):
                    for kh in range(KH):
                        for kw0 in range(0, KW, {kt}):
                            for c0 in range(0, {"8" if pairs else "L"}, {cs}):
                                base = ((((gob0 * Cb + cb) * KD + kd) * KH + kh) * KW + kw0) * 256 + c0 * 16
{load}
                                for oh in range(oh0, min(oh0 + rows, OH)):
                                    dyrow = (((n * Ob + ob0) * OD + od) * OH + oh) * OW * 16
                                    xrow = (((n * Cb + cb) * Dp + od * sd + kd * dd) * Hp + oh * sh + kh * dh) * Wp * L
                                    for ow in range(OW):
                                        xk = xrow + kw0 * xt + ow * xs + {"2 * c0" if pairs else "c0"}
{chr(10).join(body).replace(ind, " " * 40)}
{store}
"""


def _weight_tile(out_blocks: int, kw: int, lanes: int = LANES, jobs: int = 0) -> tuple[int, int, int]:
    """(NB, KT, CS) of the backward-weight register tile: NB output-channel vectors x KT
    width taps x CS of the ``lanes`` input channels of a block (16, or fewer in a narrow
    one), at most 24 accumulators, which with the NB vectors of dy
    fit in registers (``simd.fits``). Per output pixel it loads NB vectors of dy and
    broadcasts KT*CS inputs for NB*KT*CS vector FMAs (each h registers wide: 1 on AVX-512,
    2 on AVX2), and one pass over dy and x serves KT taps: pick the most FMAs per load, then
    the larger tile. With ``jobs`` (the jobs per group of output blocks: input blocks x
    depth taps) the share of the threads kept busy counts first, times the FMAs per load up
    to one (with two load and two FMA ports, beyond one FMA per load the loads are hidden):
    a 3-D layer's 16 -> 32 3x3x3 has 3 jobs at NB = 2 and 6 at NB = 1, which ran it in
    3.62 ms against 4.32 on the 2-core Xeon. The tile never changes the order in which a
    weight's gradient is summed. Cached per instruction set and thread count."""
    threads = numba.get_num_threads() if jobs else 1
    return _cached_weight_tile(out_blocks, kw, lanes, simd.ISA, jobs, threads)


@functools.lru_cache(maxsize=256)
def _cached_weight_tile(out_blocks: int, kw: int, lanes: int, isa: str, jobs: int, threads: int):
    tiles = [
        (nb, kt, cs)
        for nb in (1, 2, 3, 4)
        if out_blocks % nb == 0
        for kt in range(1, min(kw, 8) + 1)
        if kw % kt == 0
        for cs in (1, 2, 4, 8, 16)
        if lanes % cs == 0 and nb * kt * cs <= 24 and simd.fits(nb * kt * cs + nb)
    ]

    def key(tile):
        n = out_blocks // tile[0] * jobs
        busy = n / (-(-n // threads) * threads) if jobs else 1.0
        return (busy * min(_reuse(tile), 1.0), _reuse(tile), tile[0] * tile[1] * tile[2])

    return max(tiles, key=key)


def _reuse(tile) -> float:
    """Vector FMAs per load of a backward-weight tile (NB, KT, CS), in registers."""
    h, (nb, kt, cs) = simd.PER_VECTOR[simd.ISA], tile
    return h * nb * kt * cs / (h * nb + kt * cs)


def weight_speed(out_blocks: int, kw: int, lanes: int) -> float:
    """Relative speed of the backward-weight kernel on a shape: the square root of its tile's
    FMAs per load over a 3x3, 64-channel layer's. Fitted on the Zen 3 machine, where RGB
    stems read narrow and unfolded ran (paired) 0.83x the time of the folded layout with
    7x7 taps, tile (2, 1, 1), and 1.30x with AlexNet's 11x11 ones, tile (3, 1, 1): a plain
    ratio of FMAs per load penalised the narrow tiles too much."""
    return math.sqrt(_reuse(_weight_tile(out_blocks, kw, lanes)) / _reuse(_weight_tile(4, 3)))


_CONSTANT_STEPS = frozenset({16, 32, 3, 6, 12})
"""Pixel steps (floats from one output pixel's inputs to the next: width stride x lanes per
cell) compiled into the forward kernel as constants: whole 16-channel blocks at width stride
1 and 2, RGB read narrow at 1, 2 and 4 (ResNet's and AlexNet's stems). Each broadcast then
addresses base + constant, with no chain of address arithmetic competing for the FMA ports
(the inner block of (2, 14) went from 248 to 207 instructions for 112 FMAs). Paired on the
2-core Xeon: forwards of whole blocks 0.92-0.97x, the two stems 0.93x and 0.95x. Any other
step runs the kernel that reads it from its arguments (one kernel per register block, not
one per step)."""


@functools.cache
def _forward_module(nb: int, rw: int, pixel_step: int = 0, pairs: bool = False):
    """The generated module of the forward microkernel of register block (NB, RW):
    ``kernel`` and ``kernel_phases``; ``pixel_step`` 0: the step read from the arguments (any
    width stride), else that constant; ``pairs``: two groups of 8 outputs per block
    (``_forward_source``)."""
    name = (
        "conv_forward"
        + ("_pairs" if pairs else "")
        + f"_nb{nb}_rw{rw}"
        + (f"_xs{pixel_step}" if pixel_step else "")
    )
    return codegen.load(name, _forward_source(nb, rw, pixel_step, pairs))


def _forward_kernel(nb: int, rw: int, pixel_step: int = 0, pairs: bool = False):
    """The forward microkernel of ``_forward_module``."""
    return _forward_module(nb, rw, pixel_step, pairs).kernel


@functools.cache
def _backward_weight_kernel(nb: int, kt: int, cs: int, pairs: bool = False):
    name = "conv_backward_weight" + ("_pairs" if pairs else "") + f"_nb{nb}_kt{kt}_cs{cs}"
    return codegen.load(name, _backward_weight_source(nb, kt, cs, pairs)).kernel


@functools.lru_cache(maxsize=256)
def _plan(out_channels: int, out_width: int, isa: str) -> tuple[int, int, int, int]:
    """(NB, RW, padded output blocks, padded output width) of the forward register block of
    ``isa``: the least padded cells per speed (``_BLOCKS``), then the wider blocks."""
    out_blocks, table = blocked.blocks(out_channels), _BLOCKS[isa]

    def padded(n: int, multiple: int) -> int:
        return -(-n // multiple) * multiple

    def cost(block):
        nb, rw = block
        return (padded(out_blocks, nb) * padded(out_width, rw) / table[nb][rw], -nb, -rw)

    nb, rw = min(((nb, rw) for nb in table for rw in table[nb]), key=cost)
    return nb, rw, padded(out_blocks, nb), padded(out_width, rw)


def run_blocked(
    out,
    xb,
    w,
    bias,
    stride,
    dilation,
    offsets=(0, 0, 0),
    phase=((0, 0, 0), (1, 1, 1)),
    groups: int = 1,
    pairs: bool = False,
) -> None:
    """out (N, O, OD, OH, OW) = valid conv of the blocked input xb, read from ``offsets``,
    with w (groups*O, C, KD, KH, KW) + bias (groups*O,) or None; only the cells of
    ``blocked.phase_view(out, phase)``, the others keep their values. With ``groups``, image
    n of out and xb is group n % groups of a grouped convolution (its weights and bias:
    rows (n % groups)*O on). With ``pairs`` each of those is two groups of 8 outputs (O = 16)
    and C input channels each, xb from ``blocked.to_blocked_pairs``."""
    cells = blocked.phase_size(out.shape[2:], phase)
    o = w.shape[0] // groups
    nb, rw, ob_padded, owp = _plan(o, cells[2], simd.ISA)
    wb, tail = _blocked_weight(w, xb, dilation, o, nb, ob_padded, groups, pairs)
    bias_b = np.zeros((groups, ob_padded * LANES), np.float32)
    if bias is not None:
        bias_b[:, :o] = (
            bias.reshape(groups, 2, 8).transpose(0, 2, 1).reshape(groups, o)
            if pairs
            else bias.reshape(groups, o)
        )
    dense = out if out.flags.c_contiguous else np.ascontiguousarray(out)  # other cells kept
    kernel = _forward_kernel(nb, rw, _pixel_step(stride, xb), pairs)
    where = tuple(tuple(int(v) for v in axis) for axis in (cells, *phase))  # int64s: one signature
    most = chunks.most()  # chunks of jobs (``chunks``)
    kernel(dense, xb, wb, bias_b.reshape(-1), tail, *stride, *dilation, *offsets, where, o, owp, groups, most)
    if dense is not out:
        out[...] = dense


def run_blocked_phases(out, xb, w, taps, phases, dilation, groups: int = 1, pairs: bool = False) -> None:
    """The stride phases of an adjoint in one parallel launch (``kernel_phases``): for each
    tap ranges of ``taps`` and (phase, offsets) of ``phases`` (no two phases share a cell of
    out), ``run_blocked(out, xb, blocked.adjoint_taps(w, taps[p], groups), None, (1, 1, 1),
    dilation, offsets, phase, groups, pairs)``, w being the forward's weight (G*O, C, ...)
    of G = ``groups`` groups (with ``pairs`` 2 * groups: two per image). The phases share the
    register block of the widest, whose padded row ``xb`` covers, and their weights come from
    ``blocked.adjoint_weights`` in one pass (pairs: per phase). One phase runs as
    ``run_blocked``."""
    weight_groups = 2 * groups if pairs else groups
    if len(phases) == 1:
        (phase, start), (phase_taps,) = phases[0], taps
        adjoint = blocked.adjoint_taps(w, phase_taps, weight_groups)
        run_blocked(out, xb, adjoint, None, (1, 1, 1), dilation, start, phase, groups, pairs)
        return
    o = w.shape[1] * weight_groups // groups  # the adjoint's outputs per image
    (nb, rw, ob_padded, owp), cells, reads = _phases_plan(out.shape[2:], tuple(phases), o, simd.ISA)
    if pairs or xb.shape[5] < LANES:
        per_phase = [
            _blocked_weight(
                blocked.adjoint_taps(w, t, weight_groups), xb, dilation, o, nb, ob_padded, groups, pairs
            )
            for t in taps
        ]
        shapes = np.array([wb.shape for wb, _ in per_phase], np.int64)  # (P, 7)
        ends = np.cumsum([0] + [wb.size for wb, _ in per_phase])
        flat = np.concatenate([wb.reshape(-1) for wb, _ in per_phase])
        tail = per_phase[0][1]  # the input channels of the last block: the same for every phase
    else:
        flat, shapes, ends = blocked.adjoint_weights(w, taps, groups, ob_padded)
        tail = w.shape[0] // groups - LANES * (xb.shape[1] - 1)
    bias_b = np.zeros(groups * ob_padded * LANES, np.float32)
    unit = (1, 1, 1)  # each phase a stride-1 convolution
    kernel = _forward_module(nb, rw, _pixel_step(unit, xb), pairs).kernel_phases
    dense = out if out.flags.c_contiguous else np.ascontiguousarray(out)  # other cells kept
    kernel(
        dense,
        xb,
        flat,
        shapes,
        ends,
        bias_b,
        tail,
        *unit,
        *dilation,
        reads,
        cells,
        o,
        owp,
        groups,
        chunks.most(),
    )
    if dense is not out:
        out[...] = dense


@functools.lru_cache(maxsize=256)
def _phases_plan(size, phases, out_channels: int, isa: str):
    """(``_plan`` of the widest phase, cells (P, 3, 3): each phase's (size, start, step), reads
    (P, 3): its read offsets) of ``run_blocked_phases`` on out of spatial ``size``: shapes only,
    cached (callers only read)."""
    sizes = [blocked.phase_size(size, phase) for phase, _ in phases]
    plan = _plan(out_channels, max(n[2] for n in sizes), isa)
    cells = np.array([(n, *phase) for n, (phase, _) in zip(sizes, phases, strict=True)], np.int64)
    return plan, cells, np.array([start for _, start in phases], np.int64)


def _pixel_step(stride, xb) -> int:
    """The forward kernel's constant pixel step for ``stride`` over xb, or 0 (read from its
    arguments): ``_CONSTANT_STEPS``."""
    step = stride[2] * xb.shape[5]
    return step if step in _CONSTANT_STEPS else 0


def _blocked_weight(w, xb, dilation, o: int, nb: int, ob_padded: int, groups: int, pairs: bool):
    """(the forward kernel's weight, the input channels of xb's last block) for w (groups*O,
    C, KD, KH, KW): each group's outputs padded to ``ob_padded`` blocks with zero weights;
    narrow (``narrow_weight``) for an input of fewer than 16 lanes; in pairs of groups
    (``pair_weight``) with ``pairs``."""
    if pairs:  # one block of 16 outputs, 8 of each group, always NB = 1
        if (o, nb, ob_padded) != (LANES, 1, 1):
            raise ValueError(f"pairs of groups need 8 + 8 outputs in one register block, got {o} ({nb})")
        return pair_weight(w, groups), w.shape[1] - 8 * (xb.shape[1] - 1)  # tail: pairs
    if o != ob_padded * LANES:  # each group's outputs padded to whole register blocks, zero weights
        padded = np.zeros((groups, ob_padded * LANES, *w.shape[1:]), np.float32)
        padded[:, :o] = w.reshape(groups, o, *w.shape[1:])
        w = padded.reshape(-1, *w.shape[1:])
    if xb.shape[5] < LANES:  # a narrow input: one block of just its channels, none padded
        wb = narrow_weight(w, dilation[2] == 1)
        return wb, wb.shape[5]
    return blocked.weight_to_blocked(w), w.shape[1] - LANES * (xb.shape[1] - 1)  # the real input channels


def pair_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """w (groups*16, C, KD, KH, KW), each 16 two groups (A, B) of 8 outputs -> (groups,
    ceil(C/8), KD, KH, KW, 8, 16): lanes 2k, 2k + 1 of pair c are output k of A and of B at
    input channel c (of its own group), as ``blocked.to_blocked_pairs`` holds the inputs."""
    c, taps = w.shape[1], w.shape[2:]
    cb = -(-c // 8)
    padded = np.zeros((groups, 2, 8, cb * 8, *taps), np.float32)
    padded[:, :, :, :c] = w.reshape(groups, 2, 8, c, *taps)
    split = padded.reshape(groups, 2, 8, cb, 8, *taps)  # (s, g, k, cb, c, kd, kh, kw)
    return np.ascontiguousarray(split.transpose(0, 3, 5, 6, 7, 4, 2, 1)).reshape(groups, cb, *taps, 8, LANES)


def narrow_weight(w: np.ndarray, pack_width: bool) -> np.ndarray:
    """w (O, L, KD, KH, KW), L < 16 -> the weight of a narrow input, (Ob, 1, KD, KH, KW, L, 16),
    or with ``pack_width`` (width dilation 1) (Ob, 1, KD, KH, 1, KW*L, 16): an input row's
    channels of KW consecutive cells are KW*L consecutive floats, so the kernel reads the
    width taps of one kernel row as one run of inputs (an im2col along the width, in place)."""
    o, c, kd, kh, kw = w.shape
    ob = blocked.blocks(o)
    padded = np.zeros((ob * LANES, c, kd, kh, kw), np.float32)
    padded[:o] = w
    packed = padded.reshape(ob, LANES, c, kd, kh, kw).transpose(0, 3, 4, 5, 2, 1)  # (Ob, KD, KH, KW, L, 16)
    shape = (ob, 1, kd, kh, 1, kw * c, LANES) if pack_width else (ob, 1, kd, kh, kw, c, LANES)
    return np.ascontiguousarray(packed).reshape(shape)


def plan_width(out_channels: int, out_width: int) -> int:
    """Padded output width: a multiple of the pixel block."""
    return _plan(out_channels, out_width, simd.ISA)[3]


def backward_weight_blocked(dw, dyb, xb, stride, dilation, groups: int = 1, pairs: bool = False) -> None:
    """dw (groups*O, C, KD, KH, KW) <- from blocked dyb (N, Ob, OD, OH, OW, 16) and xb (N, Cb,
    ..., L) (L = 16, or C < 16 channels in one narrow block); with ``groups``, image n is
    group n % groups (its gradient: rows (n % groups)*O on). With ``pairs`` each of those is
    two groups of 8 outputs (O = 16) and C input channels, dyb and xb from
    ``blocked.to_blocked_pairs``."""
    dwb = np.empty((groups * dyb.shape[1], xb.shape[1], *dw.shape[2:], LANES, LANES), np.float32)
    jobs = groups * xb.shape[1] * dw.shape[2]
    lanes = 8 if pairs else xb.shape[5]  # input channels (pairs) per block
    nb, kt, cs = _weight_tile(dyb.shape[1], dw.shape[4], lanes, jobs=jobs)
    if dyb.shape[1] % nb or dw.shape[4] % kt or lanes % cs:  # no tails: never write past dW
        raise ValueError(
            f"weight-gradient tile {(nb, kt, cs)} does not divide {dyb.shape[1]} blocks x {dw.shape[4]} taps"
        )
    _backward_weight_kernel(nb, kt, cs, pairs)(dwb, dyb, xb, *stride, *dilation, groups)
    if pairs:  # dwb (S, Cb, KD, KH, KW, pair c, lane 2k + g): output k of group 2s + g at channel 8cb + c
        split = dwb[..., :8, :].reshape(*dwb.shape[:5], 8, 8, 2)  # (s, cb, kd, kh, kw, c, k, g)
        full = split.transpose(0, 7, 6, 1, 5, 2, 3, 4).reshape(dw.shape[0], -1, *dw.shape[2:])
        dw[...] = full[:, : dw.shape[1]]
        return
    if groups == 1:
        blocked.weight_from_blocked(dw, dwb)
        return
    o, full = dw.shape[0] // groups, np.empty((dwb.shape[0] * LANES, *dw.shape[1:]), np.float32)
    blocked.weight_from_blocked(full, dwb)  # each group's outputs padded to whole blocks
    dw[...] = full.reshape(groups, -1, *dw.shape[1:])[:, :o].reshape(dw.shape)
