"""Stride-1 float32 convolution with few output channels, vectorised over pixels in NCDHW.

The channel-blocked kernels put 16 output channels in a vector; a layer with 1, 3 or 6
output channels (LeNet, the input gradient of an RGB stem) would leave most lanes idle.
Here the vector runs over pixels instead. Each (n, c) input plane is padded onto a grid of
(Dx, Hx, Wx) cells and flattened; output pixel (od, oh, ow) sits at flat index
``p = (od*Hx + oh)*Wx + ow`` of the same grid, and tap (kd, kh, kw) reads flat index
``p + (kd*dd*Hx + kh*dh)*Wx + kw*dw``: a constant offset per tap, so 16 consecutive
outputs read 16 consecutive inputs whatever rows they span. The cells with ow >= OW (or
oh >= OH) are computed too and dropped when the result is cropped back to NCDHW.

Forward: a register block of NO output channels x V vectors of 16 pixels; per input
channel and tap, V vector loads, NO weight broadcasts and NO*V fused multiply-adds. A job
owns 4 register blocks of pixels and sweeps the input channels outermost, the partial sums
waiting in the output between channels: the rows of one input plane that its taps read sit
in L1 while all 4 blocks use them, where a job per block reading every plane at once would
evict them (the input gradient of an RGB stem, 64 planes: 2-3x faster on a Zen 3 machine).
A block applies only the run of taps whose reads touch the input, not just its zero padding
(``_tap_ranges``): the fully padded input gradient of LeNet's 10x10 maps skips about a
quarter of its taps (1.31 -> 1.12 ms paired for the 6 -> 16 layer).
Backward-input is the forward on grad_output with the kernel flipped and transposed, one
stride phase at a time (``conv_simd`` plans the phases); grad_output is flattened once.
Backward-weight keeps NO output channels x TT taps of dW as vectors, reduced over a fixed
chunk of images and then over the chunks in order, so results never depend on the thread
count.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from numba import njit, prange

from ...config import FASTMATH
from ...shapes import ConvGeometry
from . import blocked, codegen, conv_dense, layout, simd
from .simd import LANES, U64, vinterleave_hi, vinterleave_lo, vload_first, vstore_first, vzero

# {NO: (V, relative speed)} per instruction set (``simd.ISA``): vectors of 16 pixels
# (forward) or taps (backward-weight) per register block, by output channels per block.
# Forward: NO*V accumulators + V loads + 1 broadcast; backward-weight: NO*TT accumulators +
# NO loads of dy + 1 of x; both fit in 32 zmm registers (AVX-512) or 16 ymm, two per vector
# (AVX2). On AVX2 few accumulators leave FMA latency exposed: in L1, 6, 5, 4, 3 and 2 of them
# ran at about 152, 135, 111, 100 and 90 GFLOP/s on 2 threads of a Zen 3 machine. AVX-512,
# on the 2-core Xeon, each NO forced on 6 -> 16, 7 -> 13, 32 -> 12, 24 -> 8 and 1 -> 6
# layers, time per padded output channel against NO = 4's: forward NO = 1 about 0.6x as
# fast (one weight broadcast per V loads of x: the loads bind), 2 about 0.8x, 6 and 8 within
# the spread (0.85-1.16x) of 4; weight gradient 1: 0.55-0.75x, 2: 0.63-0.85x, 6: 0.72-1.0x,
# 8: 0.65-0.91x (7 -> 13 5x5: NO = 1, which padding alone picked, 1.05 ms; NO = 4 0.71 ms).
_FORWARD_V = {
    "avx512": {1: (12, 0.6), 2: (8, 0.8), 4: (5, 1.0), 6: (4, 1.0), 8: (3, 1.0)},
    "avx2": {1: (3, 0.66), 2: (2, 0.73), 3: (1, 0.66), 4: (1, 0.73), 6: (1, 1.0)},
}
_WEIGHT_TT = {
    "avx512": {1: (12, 0.65), 2: (8, 0.75), 4: (5, 1.0), 6: (3, 0.85), 8: (2, 0.78)},
    "avx2": {1: (5, 0.89), 2: (2, 0.73), 3: (1, 0.66)},
}
_JOB_TILES = 4  # forward: register blocks of pixels per job (see the module docstring)
_CHUNK_VECTORS = 2048
"""Backward-weight: the most 16-cell vectors of dy per image per chunk of images (one partial
sum each), and the chunks hold equal numbers of images: from the shape alone, never the
thread count, so the sums are the same for any thread count. The weight kernel's jobs run
chunk by chunk, so with as many chunks as threads each thread reads the images its own
share of the flattening wrote (and dy's chunk, 0.7 MB for LeNet's first layer, stays in
its L2). With one chunk of all 64 images (8192 vectors) both threads read all of dy and x,
lines the other core had just written: LeNet's first-layer weight gradient took 0.31-0.38
ms in 13 of 16 fresh processes on the 2-core AMD EPYC host and 0.79-0.98 ms in 3, where
the flattening alone took 4x its usual time (0.47 against 0.06-0.12 ms; as fast as ever
on one thread, and whatever OMP_WAIT_POLICY says); with 2048, 0.17-0.36 ms in all 16."""
# most output channels (of the pass) for which these kernels beat the channel-blocked ones,
# measured on LeNet's layers: 16 outputs can still win a forward pass (where the blocked
# kernels' register blocks fit its rows badly: the cost model of ``applies`` decides), and
# a weight gradient of few inputs on long rows (``_few_inputs_on_long_rows``)
_MAX_OUT_CHANNELS = {"forward": 16, "backward_input": 16, "backward_weight": 12}


def applies(
    op: str, geom: ConvGeometry, out_channels: int, in_channels: int, any_channels: bool = False
) -> bool:
    """Whether these kernels run pass ``op``: dense, stride 1 (backward_input: any stride,
    its stride phases are stride-1 convolutions), and few output channels (forward and
    backward_weight: the output's; backward_input: the input's) unless ``any_channels``.
    On AVX2 the blocked kernels run a 16-channel output at full speed (their register block
    has one channel vector there anyway), so they keep the passes whose input and output
    channels both fill whole 16-lane blocks (a 3-D layer's 32 -> 16 input gradient: 7.7 ms
    blocked, 9.6 ms here, on the Zen 3 machine). On both, the blocked kernels keep the
    forwards of whole blocks of outputs where they compute less (``_blocked_cheaper``), and
    on AVX-512 the input gradients of whole blocks (on the 2-core Xeon, 16 -> 32 at stride
    2 on 56x56: 0.55 ms against 0.89 here; 16 -> 64 on 56x56: 2.40 against 3.05; on 28x28,
    0.50 against 0.48)."""
    shape_fits = geom.groups == 1 and (op == "backward_input" or geom.stride == (1, 1, 1))
    if not shape_fits:
        return False
    if any_channels:
        return True
    if out_channels > _MAX_OUT_CHANNELS[op] and not (
        op == "backward_weight" and _few_inputs_on_long_rows(geom, out_channels, in_channels)
    ):
        return False
    whole = out_channels % LANES == 0
    if whole and in_channels % LANES == 0 and (op == "backward_input" or simd.ISA == "avx2"):
        return False
    return not (op == "forward" and whole and _blocked_cheaper(geom, out_channels, in_channels))


def _few_inputs_on_long_rows(geom: ConvGeometry, out_channels: int, in_channels: int) -> bool:
    """Whether a weight gradient of one block of outputs (13-16) runs here on AVX-512: from
    fewer than 8 input channels, on rows whose kernel reach is at most a fifth of the output
    width (these kernels compute every cell of the padded rows). The blocked tile has one
    vector of dy per pixel and at most those few lanes of x, under one FMA per load there.
    Alternating calls on the 2-core Xeon, flat/blocked: 0.56-0.91 on 15 such shapes (1 to 7
    inputs; 3x3 on 12 to 112 outputs a row, 5x5 on 24 to 32, 7x7 on 64), 1.10-1.31 on the
    three 5x5 shapes of 10 to 16 outputs a row (LeNet's 6 -> 16 on 14x14: 1.31), 1.03 at 8
    inputs and 0.97-1.65 at 16 to 64."""
    reach = (geom.kernel[2] - 1) * geom.dilation[2]
    return (
        simd.ISA == "avx512" and out_channels <= LANES and in_channels < 8 and reach <= 0.2 * geom.out_size[2]
    )


_NARROW = 1.2
"""How much slower, per computed pixel, the blocked forward runs on a narrow input (fewer
than 16 channels) than its register-block speed says. On the Zen 3 machine, alternating
calls, 16-output forwards of 1 to 10 input channels ran 1.05-1.48x slower than the cost
model without it predicts (more for fewer channels: 1 channel 1.48); with 1.2 it picks the
faster kernels in 7 of 9 such shapes and misses the other two by 7-8%."""


def _blocked_cheaper(geom: ConvGeometry, out_channels: int, in_channels: int) -> bool:
    """``_cached_blocked_cheaper`` for this instruction set: shapes only, cached."""
    return _cached_blocked_cheaper(geom, out_channels, in_channels, simd.ISA)


@functools.lru_cache(maxsize=256)
def _cached_blocked_cheaper(geom: ConvGeometry, out_channels: int, in_channels: int, isa: str) -> bool:
    """Whether the blocked kernels compute the forward of ``geom`` in less time, per output
    pixel, than these: here every flat cell up to the last output is computed (whole grid
    rows, ``_length``) for NO-padded channels, there each row is padded to whole register
    blocks. LeNet's 6 -> 16 5x5 on 14x14 (N = 64) computes 1.44 flat cells per output here
    (18 channels) and 1.0 there: 0.56 ms blocked against 0.66 ms flat, paired (Zen 3,
    AVX2); on the AMD EPYC host (AVX-512, a (1, 10) register block) 0.256 against 0.299 ms.
    On the Xeon, whose (1, RW) blocks run at 0.58 of (2, RW)'s speed, flat stays."""
    no = _out_block(out_channels, _FORWARD_V)[0]
    cells = _length(geom.out_size, layout.extents(geom), out_channels) / math.prod(geom.out_size)
    flat = cells * (-(-out_channels // no) * no / out_channels) / _FORWARD_V[isa][no][1]
    nb, rw, _, owp = conv_dense._plan(out_channels, geom.out_size[2], isa)
    blocked_cost = owp / geom.out_size[2] / conv_dense._BLOCKS[isa][nb][rw]
    return blocked_cost * (_NARROW if in_channels < LANES else 1.0) < flat


def _out_block(channels: int, table: dict) -> tuple[int, int]:
    """(NO, V or TT) of ``table`` (``_FORWARD_V`` or ``_WEIGHT_TT``) for ``channels``
    outputs: the least padded channels per speed, then the widest block."""
    blocks = table[simd.ISA]
    no = min(blocks, key=lambda no: (-(-channels // no) * no / blocks[no][1], -no))
    return no, blocks[no][0]


def _forward_source(no: int, v: int) -> str:
    ind = " " * 20
    acc = [[f"a{j}_{i}" for i in range(v)] for j in range(no)]
    init = "\n".join(f"{ind}{acc[j][i]} = vbcast(bias, bg + {j})" for j in range(no) for i in range(v))
    resume = "\n".join(
        f"{ind}{acc[j][i]} = vload(of, o + {j} * Lp + {i * 16})" for j in range(no) for i in range(v)
    )
    loads = "\n".join(f"{ind}x{i} = vload(xf, xk + {i * 16})" for i in range(v))
    fmas = []
    for j in range(no):
        fmas.append(f"{ind}w = vbcast(wf, wk + {j})")
        fmas += [f"{ind}{acc[j][i]} = vfma(x{i}, w, {acc[j][i]})" for i in range(v)]
    store = "\n".join(
        f"                vstore(of, o + {j} * Lp + {i * 16}, {acc[j][i]})"
        for j in range(no)
        for i in range(v)
    )
    return f"""

@njit(**_JIT)
def kernel(out, xf, wf, bias, offs, tap_lo, tap_hi, C, Ps, G):
    # out (N, Og*{no}, Lp) flat output planes = conv of xf (flat (N, C, Ps) padded input planes)
    # with wf (flat (G, Og, C, T, {no})) at tap offsets offs (T,) + bias (G, Og*{no}); image n is group
    # n % G of an image of a grouped convolution (G = 1: dense); {v} vectors of 16 pixels per block;
    # block `tile` applies taps tap_lo[tile] <= k < tap_hi[tile] (the others read only zero padding)
    N, Op, Lp = out.shape[0], out.shape[1], out.shape[2]
    Og, T, TILE = Op // {no}, offs.shape[0], {v * 16}
    n_tiles = Lp // TILE
    n_jobs = -(-n_tiles // {_JOB_TILES})
    of = out.reshape(-1)
    for job in prange(N * Og * n_jobs):  # {_JOB_TILES} register blocks of pixels per job, input channels outermost
        t0 = (job % n_jobs) * {_JOB_TILES}
        t = job // n_jobs
        og = t % Og
        n = t // Og
        bg = ((n % G) * Og + og) * {no}  # this image's group, its block of outputs
        for c in range(C):
            xb = (n * C + c) * Ps
            wb = (bg * C + c * {no}) * T
            for tile in range(t0, min(t0 + {_JOB_TILES}, n_tiles)):
                p0 = tile * TILE
                o = (n * Op + og * {no}) * Lp + p0
                if c == 0:
{init}
                else:  # the partial sums of channels < c wait in the output (in L1)
{resume}
                for k in range(tap_lo[tile], tap_hi[tile]):
                    xk = xb + p0 + offs[k]
                    wk = wb + k * {no}
{loads}
{chr(10).join(fmas)}
{store}
"""


def _weight_source(no: int, tt: int) -> str:
    ind = " " * 16
    acc = [[f"a{j}_{k}" for k in range(tt)] for j in range(no)]
    zero = "\n".join(f"        {acc[j][k]} = vzero()" for j in range(no) for k in range(tt))
    loads = [f"{ind}g{j} = vload(dyflat, gb + {j} * Lp + p)" for j in range(no)]
    for k in range(tt):
        loads.append(f"{ind}x = vload(xf, xb + offs[k0 + {k}] + p)")
        loads += [f"{ind}{acc[j][k]} = vfma(g{j}, x, {acc[j][k]})" for j in range(no)]
    store = "\n".join(
        f"        part[chunk, og * {no} + {j}, c, k0 + {k}] = vsum({acc[j][k]})"
        for j in range(no)
        for k in range(tt)
    )
    return f"""

@njit(**_JIT)
def kernel(part, dyf, xf, offs, C, Ps, per_chunk):
    # part (chunks, Og*{no}, C, Tp): per chunk of per_chunk images, sum over images and flat
    # positions of dyf (flat (N, Og*{no}, Lp), zero off the output) x xf (flat (N, C, Ps)) at tap offsets offs (Tp,)
    chunks, Op, Tp = part.shape[0], part.shape[1], part.shape[3]
    N, Lp = dyf.shape[0], dyf.shape[2]
    Og, n_groups = Op // {no}, Tp // {tt}
    dyflat = dyf.reshape(-1)
    for job in prange(chunks * Og * C * n_groups):
        k0 = (job % n_groups) * {tt}
        t = job // n_groups
        c = t % C
        t //= C
        og = t % Og
        chunk = t // Og
{zero}
        for n in range(chunk * per_chunk, min(N, (chunk + 1) * per_chunk)):
            gb = (n * Op + og * {no}) * Lp
            xb = (n * C + c) * Ps
            for p in range(0, Lp, 16):
{chr(10).join(loads)}
{store}
"""


@functools.cache
def _forward_kernel(no: int, v: int):
    return codegen.load(f"conv_flat_forward_no{no}_v{v}", _forward_source(no, v)).kernel


@functools.cache
def _weight_kernel(no: int, tt: int):
    return codegen.load(f"conv_flat_weight_no{no}_tt{tt}", _weight_source(no, tt)).kernel


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _gather_flat(out, x, map_d, map_h, map_w):
    # out (N, Co >= C, Ps): plane (n, c) = x (N, C, D, H, W) through the index maps (-1 reads 0)
    # on the (len(map_d), len(map_h), len(map_w)) grid, flattened, cut to Ps cells or followed by
    # zeros; planes c >= C are 0. Each row copies the run of consecutive cells of map_w as a
    # block and the cells around it through the map. Flat unsigned indices (``simd.U64``).
    N, Co, Ps = out.shape
    C, D, H, W = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    Dx, Hx, Wx = map_d.shape[0], map_h.shape[0], map_w.shape[0]
    a, b = layout.run_of(map_w)
    of, xf = out.reshape(-1), x.reshape(-1)
    filled = min(Dx * Hx * Wx, Ps)
    edges = False  # whether cells outside the run read the input (padding modes other than zeros)
    for k in range(Wx):
        edges = edges or ((k < a or k >= b) and map_w[k] >= 0)
    for job in prange(N * Co):
        n, c = job // Co, job % Co
        base = job * Ps
        for k in range(Ps):  # zeros first, then the cells that read the input
            of[U64(base + k)] = 0
        rows = -(-filled // Wx) if c < C else 0
        dst, last = base, base + filled
        for i in range(Dx):
            for j in range(min(Hx, rows - i * Hx)):  # one row of the grid, maybe cut short
                if map_d[i] >= 0 and map_h[j] >= 0:
                    cells = min(Wx, last - dst)
                    src = ((n * C + c) * D + map_d[i]) * H * W + map_h[j] * W
                    lo, hi = min(a, cells), min(b, cells)
                    run = src + map_w[a] - a if hi > lo else 0
                    for k in range(lo, hi):
                        of[U64(dst + k)] = xf[U64(run + k)]
                    for k in range(cells if edges else 0):
                        if (k < lo or k >= hi) and map_w[k] >= 0:
                            of[U64(dst + k)] = xf[U64(src + map_w[k])]
                dst += Wx


@njit(inline="always")
def _copy_cells(dst, at, src, start, count):
    # dst[at : at + count] <- src[start : start + count], in (partial) vectors: rows are short
    for k in range(0, count, LANES):
        cells = min(LANES, count - k)
        vstore_first(dst, at + k, vload_first(src, start + k, cells), cells)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _crop(out, res, hx, wx, size_d, size_h, size_w, start_d, start_h, start_w, step_d, step_h, step_w):
    # out[n, o, start + i*step] (per axis, i < size) <- res (N, Op >= O, Lp), cell (i, j, k) at flat (i*hx + j)*wx + k
    N, O, D, H, W = out.shape
    Op, Lp = res.shape[1], res.shape[2]
    of, rf = out.reshape(-1), res.reshape(-1)
    for job in prange(N * O):
        n, o = job // O, job % O
        for i in range(size_d):
            for j in range(size_h):  # flat unsigned indices (``simd.U64``), no slice objects
                src = (n * Op + o) * Lp + (i * hx + j) * wx
                dst = (((n * O + o) * D + start_d + i * step_d) * H + start_h + j * step_h) * W + start_w
                if step_w == 1:  # in vectors: lenet_c3's crop 26 -> 17 us
                    _copy_cells(of, dst, rf, src, size_w)
                    continue
                for k in range(size_w):
                    of[U64(dst + k * step_w)] = rf[U64(src + k)]


@njit(inline="always")
def _phase_row(table, lut, rd, rh, rw, i, j, n, o, hx, wx):
    # (phase, its first result cell for row (i, j) of image n, channel o, its cells) of the phase at
    # starts (rd, rh, rw); (-1, 0, 0) if there is none or its rows end before (i, j)
    p = lut[rd, rh, rw]
    if p < 0 or i >= table[p, 3] or j >= table[p, 4]:
        return -1, 0, 0
    return p, table[p, 6] + (n * table[p, 7] + o) * table[p, 8] + (i * hx + j) * wx, table[p, 5]


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _crop_phases(out, buf, table, step, hx, wx):
    # out (N, O, D, H, W) <- the stride phases' results in buf: phase p (table[p]: start and size per
    # axis, start < step; then base, Op >= O and Lp of its (N, Op, Lp) results in buf, cell (i, j, k)
    # at flat (i*hx + j)*wx + k) at the out cells start + i*step per axis. Row by row; a row that
    # the two width phases of stride 2 share takes their cells in vectors, interleaved (a crop
    # per phase stored them one by one). Flat unsigned indices (``simd.U64``)
    N, O, D, H, W = out.shape
    sd, sh, sw = step
    of = out.reshape(-1)
    lut = np.full((sd, sh, sw), -1, np.int64)  # the phase at each start, -1: none (a dead phase)
    for p in range(table.shape[0]):
        lut[table[p, 0], table[p, 1], table[p, 2]] = p
    for job in prange(N * O):
        n, o = job // O, job % O
        for d in range(D):
            i, rd = d // sd, d % sd
            j, rh = 0, 0  # h // sh and h % sh, counted
            for h in range(H):
                dst = ((n * O + o) * D + d) * H * W + h * W
                if sw == 2:
                    p0, src0, size0 = _phase_row(table, lut, rd, rh, 0, i, j, n, o, hx, wx)
                    p1, src1, size1 = _phase_row(table, lut, rd, rh, 1, i, j, n, o, hx, wx)
                    if p0 >= 0 and p1 >= 0:
                        for k in range(0, size0, LANES):  # cells 2k ... of the row: 16 of each phase
                            a = vload_first(buf, src0 + k, min(LANES, size0 - k))
                            b = vload_first(buf, src1 + k, min(LANES, size1 - k)) if size1 > k else vzero()
                            cells = min(W, size0 + size1) - 2 * k
                            vstore_first(of, dst + 2 * k, vinterleave_lo(a, b), min(LANES, cells))
                            if cells > LANES:
                                vstore_first(of, dst + 2 * k + LANES, vinterleave_hi(a, b), cells - LANES)
                    else:  # one phase: its cells one by one (the other's are a dead phase's zeros)
                        for k in range(size0):
                            of[U64(dst + 2 * k)] = buf[U64(src0 + k)]
                        for k in range(size1):
                            of[U64(dst + 1 + 2 * k)] = buf[U64(src1 + k)]
                else:
                    for rw in range(sw):
                        p, src, size_w = _phase_row(table, lut, rd, rh, rw, i, j, n, o, hx, wx)
                        if p < 0:
                            continue
                        if sw == 1:
                            _copy_cells(of, dst, buf, src, size_w)
                        else:
                            for k in range(size_w):
                                of[U64(dst + rw + k * sw)] = buf[U64(src + k)]
                rh += 1
                if rh == sh:
                    j, rh = j + 1, 0


def _offsets(kernel, dilation, grid, start=(0, 0, 0)) -> np.ndarray:
    """Flat offset of each tap (kd, kh, kw), in that order, on a grid of (Dx, Hx, Wx) cells,
    reading from cell ``start`` (computed for the cached plans below)."""
    _, hx, wx = grid
    kd, kh, kw = (s + np.arange(k) * d for s, k, d in zip(start, kernel, dilation, strict=True))
    return ((kd[:, None, None] * hx + kh[None, :, None]) * wx + kw[None, None, :]).reshape(-1)


def _flat(x, maps, length: int, slot: str, channels: int = 0) -> np.ndarray:
    """x (N, C, D, H, W) -> (N, max(C, channels), length): padded through ``maps``,
    flattened, zero tail and zero extra channels."""
    out = blocked.scratch(slot, (x.shape[0], max(x.shape[1], channels), length))
    _gather_flat(out, layout.contiguous(x), *maps)
    return out


_WHOLE = ((0, 0, 0), (1, 1, 1))  # the phase (start, step) of every output cell


@dataclasses.dataclass(frozen=True, eq=False)
class _Run:
    """What ``_run`` computes, from shapes alone (built once per geometry with the plans
    below): the output cells of ``phase`` (start, step per axis), ``size`` (D, H, W) of
    them, on a flat ``grid`` with tap offsets ``offs``; register blocks of ``no`` output
    channels x ``v`` vectors, ``length`` flat cells, and per block the taps that read data."""

    grid: tuple[int, int, int]
    offs: np.ndarray
    phase: tuple
    size: tuple[int, int, int]
    no: int
    v: int
    length: int
    tap_lo: np.ndarray
    tap_hi: np.ndarray


def _run_plan(grid, offs, phase, size, out_channels: int, data) -> _Run:
    """The ``_Run`` of outputs ``size`` (phase ``phase``) on ``grid``; ``data``: the box of
    the grid that holds input (``_data_box``)."""
    no, v = _out_block(out_channels, _FORWARD_V)
    length = _length(size, grid, out_channels)
    tap_lo, tap_hi = _tap_ranges(grid, data, offs, v * LANES, length)
    return _Run(grid, offs, phase, size, no, v, length, tap_lo, tap_hi)


def _padded_channels(out_channels: int, run: _Run) -> int:
    """Output channels of ``_results``: padded to whole register blocks."""
    return -(-out_channels // run.no) * run.no


def _results(res, xf, w, bias, run: _Run, groups: int = 1) -> None:
    """res (N, O', run.length) <- the stride-1 conv of the flat planes xf (N, C, Ps) with
    w (groups*O, C, KD, KH, KW) + bias (groups*O,) or None, on ``run``'s flat grid
    (O' = ``_padded_channels``); with ``groups``, image n is group n % groups (of image
    n // groups of a grouped convolution: its weights w[g*O : (g+1)*O])."""
    (o, c), no = w.shape[:2], run.no
    o //= groups
    wf = np.zeros((groups, res.shape[1] * w[0].size), np.float32)
    wf[:, _weight_order(o, c, len(run.offs), no)] = w.reshape(groups, -1)
    b = np.zeros((groups, res.shape[1]), np.float32)
    if bias is not None:
        b[:, :o] = bias.reshape(groups, o)
    kernel = _forward_kernel(no, run.v)
    kernel(
        res,
        xf.reshape(-1),
        wf.reshape(-1),
        b.reshape(-1),
        run.offs,
        run.tap_lo,
        run.tap_hi,
        c,
        xf.shape[2],
        groups,
    )


@functools.lru_cache(maxsize=256)
def _weight_order(out_channels: int, channels: int, taps: int, no: int) -> np.ndarray:
    """Where each weight of w (O, C, T), in order, goes in the forward kernel's flat weight
    (O/NO, C, T, NO): output o = og*NO + j in lane j. Cached (callers only read it)."""
    o, c, t = np.meshgrid(np.arange(out_channels), np.arange(channels), np.arange(taps), indexing="ij")
    return (((o // no * channels + c) * taps + t) * no + o % no).reshape(-1)


def _data_box(maps) -> tuple[tuple[int, int], ...]:
    """Per axis, the range of grid cells that read the input (a zero map is -1 only at its
    ends; other padding modes read the input everywhere)."""
    box = []
    for m in maps:
        inside = np.flatnonzero(m >= 0)
        box.append((int(inside[0]), int(inside[-1]) + 1) if inside.size else (0, 0))
    return tuple(box)


def _tap_ranges(grid, data, offs, tile: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(tap_lo, tap_hi) per block of ``tile`` output cells: the first and one past the last tap
    of ``offs`` whose reads from the block touch the ``data`` box of the grid; taps outside
    read only zero padding and add nothing (the full-padded input gradient of a small image
    skips about a quarter of its taps). Computed for the cached plans below."""
    inside = np.zeros(grid, bool)
    inside[tuple(slice(a, b) for a, b in data)] = True
    count = np.concatenate([[0], np.cumsum(inside.reshape(-1))])  # data cells before each flat cell
    start = np.arange(0, length, tile)[None, :] + np.asarray(offs)[:, None]  # (T, tiles)
    ends = np.minimum(start + tile, inside.size)
    touched = count[ends] > count[np.minimum(start, inside.size)]
    any_tap = touched.any(axis=0)
    lo = np.where(any_tap, touched.argmax(axis=0), 0)
    hi = np.where(any_tap, len(offs) - touched[::-1].argmax(axis=0), 0)
    return lo.astype(np.int64), hi.astype(np.int64)


def _length(size, grid, out_channels: int) -> int:
    """Flat output cells that ``_results`` computes for outputs of ``size`` (D, H, W) on
    ``grid``: up to the last output cell, in whole register blocks of pixels (the rows of
    the grid below the last output row are never computed)."""
    tile = _out_block(out_channels, _FORWARD_V)[1] * LANES
    last = ((size[0] - 1) * grid[1] + size[1] - 1) * grid[2] + size[2]
    return -(-last // tile) * tile


@functools.lru_cache(maxsize=256)
def _forward_plan(geom: ConvGeometry, out_channels: int, isa: str):
    """(index maps, ``_Run``, flat input cells) of ``forward``: shapes only, cached per
    instruction set (the register blocks depend on it)."""
    maps = layout.index_maps(geom.in_size, geom.pad_lo, layout.extents(geom), geom.padding_mode)
    grid = tuple(len(m) for m in maps)
    offs = _offsets(geom.kernel, geom.dilation, grid)
    run = _run_plan(grid, offs, _WHOLE, geom.out_size, out_channels, _data_box(maps))
    return maps, run, run.length + int(offs[-1])


def _run(out, xf, w, bias, run: _Run, groups: int = 1) -> None:
    """The cells ``blocked.phase_view(out, run.phase)`` of out (N, O, ...) <- ``_results``
    of the flat planes xf, in the "output" scratch array, cropped."""
    res = blocked.scratch("output", (out.shape[0], _padded_channels(out.shape[1], run), run.length))
    _results(res, xf, w, bias, run, groups)
    _crop(out, res, *run.grid[1:], *run.size, *run.phase[0], *run.phase[1])


def forward(out, x, w, bias, geom: ConvGeometry, groups: int = 1) -> None:
    """out (N, O, OD, OH, OW) <- conv(x (N, C, D, H, W), w (O, C/groups, KD, KH, KW)) + bias,
    ``geom`` that of one group (out C-contiguous where ``groups`` > 1). The groups of an
    image run as images of their own (x and out reshaped to (N*groups, C/groups, ...)), all
    in one kernel call."""
    maps, run, length = _forward_plan(geom, out.shape[1] // groups, simd.ISA)
    xs = layout.group_images(layout.contiguous(x), groups)
    _run(layout.group_images(out, groups), _flat(xs, maps, length, "input"), w, bias, run, groups)


@functools.lru_cache(maxsize=256)
def _phases_plan(in_size, channels: int, out_size, phases, lo, isa: str):
    """(index maps of dy, flat cells, a ``_Run`` per phase) of ``backward_phases``: one grid
    that every phase fits in. Shapes only, cached per instruction set."""
    sizes = [blocked.phase_size(in_size, cells) for cells, *_ in phases]
    grid = tuple(
        max(
            size[i] + (kernel[i] - 1) * dil[i] + start[i]
            for size, (_, kernel, start, dil) in zip(sizes, phases, strict=True)
        )
        for i in range(3)
    )
    offs = [_offsets(kernel, dil, grid, start) for _, kernel, start, dil in phases]
    length = max(_length(s, grid, channels) + int(o.max()) for s, o in zip(sizes, offs, strict=True))
    maps = layout.index_maps(out_size, lo, grid, "zeros")
    data = _data_box(maps)
    runs = [
        _run_plan(grid, o, cells, size, channels, data)
        for (cells, *_), o, size in zip(phases, offs, sizes, strict=True)
    ]
    return maps, length, runs


def backward_phases(dx, dy, weights, phases, lo, groups: int = 1) -> None:
    """dx (N, C, D, H, W) <- per stride phase ``(cells, kernel, start, dilation)``, with its
    weight of ``weights`` (C, O/groups, *kernel): the cells ``blocked.phase_view(dx, cells)``
    are the stride-1 conv, with dilation, of dy (N, O, OD, OH, OW) zero-padded by ``lo``
    below and read from cell ``start``; with ``groups`` (dx C-contiguous), group g's channels
    of dx from its channels of dy, by the weights' rows g*C/groups on. dy is flattened once,
    on a grid that every phase fits in."""
    dxs, dys = layout.group_images(dx, groups), layout.group_images(layout.contiguous(dy), groups)
    maps, length, runs = _phases_plan(dxs.shape[2:], dxs.shape[1], dys.shape[2:], phases, lo, simd.ISA)
    xf = _flat(dys, maps, length, "input")
    if len(runs) == 1:  # stride 1: one phase, cropped on its own
        _run(dxs, xf, weights[0], None, runs[0], groups)
        return
    n, o = dxs.shape[:2]
    result_shapes = [(n, _padded_channels(o, run), run.length) for run in runs]
    sizes = [math.prod(shape) for shape in result_shapes]
    buf = blocked.scratch("output", (sum(sizes),))
    bases = np.cumsum([0, *sizes[:-1]])
    for w, run, shape, base, size in zip(weights, runs, result_shapes, bases, sizes, strict=True):
        _results(buf[base : base + size].reshape(shape), xf, w, None, run, groups)
    # per phase: start and size per axis, then the base, channels and length of its results
    table = [
        (*run.phase[0], *run.size, base, *shape[1:])
        for run, shape, base in zip(runs, result_shapes, bases, strict=True)
    ]
    _crop_phases(dxs, buf, np.array(table, np.int64), runs[0].phase[1], *runs[0].grid[1:])


@functools.lru_cache(maxsize=256)
def _weight_plan(geom: ConvGeometry, out_channels: int, isa: str):
    """(maps of x, maps of dy, (NO, TT), tap offsets padded to TT, flat cells of dy and of
    x, most images per chunk) of ``backward_weight``: shapes only, cached per instruction set."""
    maps = layout.index_maps(geom.in_size, geom.pad_lo, layout.extents(geom), geom.padding_mode)
    grid = tuple(len(m) for m in maps)
    block, offs = _out_block(out_channels, _WEIGHT_TT), _offsets(geom.kernel, geom.dilation, grid)
    length = -(-geom.out_size[0] * grid[1] * grid[2] // LANES) * LANES
    dy_maps = layout.index_maps(geom.out_size, (0, 0, 0), (geom.out_size[0], *grid[1:]), "zeros")
    taps = np.zeros(-(-len(offs) // block[1]) * block[1], np.int64)  # padded taps read offset 0; dropped
    taps[: len(offs)] = offs
    most = max(1, _CHUNK_VECTORS * LANES // length)  # images per chunk at most
    return maps, dy_maps, block, taps, length, length + int(offs[-1]), most


def backward_weight(dw, dy, x, geom: ConvGeometry) -> None:
    """dw (O, C, KD, KH, KW) <- sum over images and outputs of dy (N, O, OD, OH, OW) x the
    padded input, per tap."""
    (n, o), c, taps = dy.shape[:2], x.shape[1], math.prod(geom.kernel)
    maps, dy_maps, (no, tt), offs, length, x_length, most = _weight_plan(geom, o, simd.ISA)
    per_chunk = -(-n // -(-n // most))  # as many chunks as ``most`` needs, of equal images (_CHUNK_VECTORS)
    og = -(-o // no)
    xf = _flat(x, maps, x_length, "input")
    dyf = _flat(dy, dy_maps, length, "grad", og * no)
    part = np.empty((-(-n // per_chunk), og * no, c, len(offs)), np.float32)
    _weight_kernel(no, tt)(part, dyf, xf.reshape(-1), offs, c, xf.shape[2], per_chunk)
    total = part[0].copy()
    for chunk in part[1:]:  # in chunk order: deterministic
        total += chunk
    dw[...] = total[:o, :, :taps].reshape(dw.shape)
