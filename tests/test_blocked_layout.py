"""The layout conversions of the SIMD kernels against plain NumPy: padding
through index maps, 8 x 8 register transposes with their tails, narrow (fewer than 16
lanes) blocks, folded taps, the blocked forward's stores into stride phases, the weight
layouts, and the flat planes of
``conv_flat`` with their tap ranges."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from fastconv.backends.cpu import blocked, conv_dense, layout, simd
from fastconv.backends.cpu.simd import LANES, transpose8, transpose8_pairs, transpose8_spread


def _blocked_reference(x, maps, lanes=LANES):
    """(N, C, D, H, W) -> (N, Cb, len(map_d), len(map_h), len(map_w), lanes), by index."""
    n, c = x.shape[:2]
    md, mh, mw = maps
    out = np.zeros((n, -(-c // lanes), len(md), len(mh), len(mw), lanes), np.float32)
    ok = (md[:, None, None] >= 0) & (mh[None, :, None] >= 0) & (mw[None, None, :] >= 0)
    cells = x[:, :, md[:, None, None], mh[None, :, None], mw[None, None, :]] * ok
    for ch in range(c):
        out[:, ch // lanes, ..., ch % lanes] = cells[:, ch]
    return out


@njit
def _transpose_at(dst, d0, dstep, src, s0, sstep):
    transpose8(dst, d0, dstep, src, s0, sstep)


def test_transpose8_moves_each_element_once():
    src = np.arange(200, dtype=np.float32)
    dst = np.full(120, -1, np.float32)
    _transpose_at(dst, 3, 13, src, 5, 11)
    want = np.full(120, -1, np.float32)
    for i in range(8):
        for j in range(8):
            want[3 + j * 13 + i] = src[5 + i * 11 + j]
    np.testing.assert_array_equal(dst, want)


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_transpose8_spread_writes_every_other_cell(isa, monkeypatch):
    """Columns to cells 2 apart, the cells between (another phase's) untouched: a masked
    store on AVX-512, scalar stores on AVX2 (the code is generated per ``simd.ISA``, so each
    is compiled afresh here), the last column ending at the array's last element."""
    monkeypatch.setattr(simd, "ISA", isa)

    @njit(cache=False)
    def spread_at(dst, d0, dstep, src, s0, sstep):
        transpose8_spread(dst, d0, dstep, src, s0, sstep)

    src = np.arange(200, dtype=np.float32)
    dst = np.full(3 + 7 * 17 + 15, -1, np.float32)
    spread_at(dst, 3, 17, src, 5, 11)
    want = np.full(dst.size, -1, np.float32)
    for i in range(8):
        for j in range(8):
            want[3 + j * 17 + 2 * i] = src[5 + i * 11 + j]
    np.testing.assert_array_equal(dst, want)


@njit
def _transpose_pairs_at(dst, d0, dstep, src, s0, sstep, offset):
    transpose8_pairs(dst, d0, dstep, src, s0, sstep, offset)


def test_transpose8_pairs_reads_rows_in_pairs():
    src = np.arange(400, dtype=np.float32)
    dst = np.full(120, -1, np.float32)
    _transpose_pairs_at(dst, 3, 13, src, 5, 11, 9)
    want = np.full(120, -1, np.float32)
    for i in range(8):  # rows 0, 9, 1, 10, 2, 11, 3, 12
        for j in range(8):
            want[3 + j * 13 + i] = src[5 + (i // 2 + (i % 2) * 9) * 11 + j]
    np.testing.assert_array_equal(dst, want)


@pytest.mark.parametrize(
    "cpg, shape, lo, extent, mode",
    [
        (8, (3, 1, 9, 29), (1, 1, 1), (3, 11, 31), "zeros"),  # one whole block of pairs, padded
        (11, (2, 2, 5, 20), (0, 2, 1), (2, 9, 22), "reflect"),  # a tail of 3 pairs
        (3, (1, 1, 4, 12), (0, 0, 0), (1, 4, 12), "zeros"),  # fewer than 8 pairs
        (16, (2, 1, 6, 7), (0, 1, 2), (1, 8, 11), "circular"),  # rows shorter than a transpose
    ],
)
def test_pairs_layout_matches_the_index_maps(cpg, shape, lo, extent, mode):
    """``to_blocked_pairs``: block cb's lanes 2k, 2k + 1 hold channel 8*cb + k of each of the
    image's two groups (zero past its cpg channels), at the index maps' cells."""
    m, *size = shape
    x = np.random.default_rng(cpg).standard_normal((m, 2 * cpg, *size)).astype(np.float32)
    maps = layout.index_maps(tuple(size), lo, extent, mode)
    got = blocked.to_blocked_pairs(x, maps, cpg)
    cb = -(-cpg // 8)
    per_channel = _blocked_reference(x, maps, lanes=1)[..., 0]  # (m, 2*cpg, *cells)
    want = np.zeros((m, cb * 8, 2, *per_channel.shape[2:]), np.float32)
    want[:, :cpg, 0], want[:, :cpg, 1] = per_channel[:, :cpg], per_channel[:, cpg:]
    want = want.reshape(m, cb, 8, 2, *per_channel.shape[2:]).transpose(0, 1, 4, 5, 6, 2, 3)
    np.testing.assert_array_equal(got, want.reshape(got.shape))


@pytest.mark.parametrize(
    "shape, lo, extent, mode",
    [
        ((2, 37, 3, 9, 29), (1, 2, 3), (5, 12, 35), "zeros"),  # channel tail, padding on every axis
        ((1, 32, 1, 11, 23), (0, 1, 1), (1, 13, 25), "reflect"),  # reflected width: no runs of 8
        ((2, 16, 1, 5, 21), (0, 0, 2), (1, 5, 30), "circular"),
        ((1, 48, 1, 7, 7), (0, 0, 0), (1, 7, 7), "zeros"),  # shorter than one transpose
        ((1, 16, 1, 3, 40), (0, 0, 0), (1, 3, 17), "zeros"),  # cropped: the map ends inside the row
        ((2, 24, 2, 6, 21), (1, 1, 2), (4, 8, 25), "zeros"),  # a tail of 8: transposed, 8 lanes zero
        ((1, 29, 1, 5, 19), (0, 1, 1), (1, 7, 21), "replicate"),  # a tail of 13: 8 transposed, 5 by lane
        ((3, 8, 1, 4, 12), (0, 0, 0), (1, 4, 12), "zeros"),  # 8 channels in a 16-lane block
    ],
)
def test_to_blocked_matches_the_index_maps(shape, lo, extent, mode):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    maps = layout.index_maps(shape[2:], lo, extent, mode)
    np.testing.assert_array_equal(blocked.to_blocked(x, maps), _blocked_reference(x, maps))


@pytest.mark.parametrize("channels", [1, 3, 7, 8, 15])
def test_narrow_blocks_hold_just_the_channels(channels):
    """Narrow blocks of any width; 8 channels (8-channel groups) through register transposes
    of each row's run of 9 cells, the last overlapping."""
    x = np.random.default_rng(channels).standard_normal((2, channels, 1, 6, 9)).astype(np.float32)
    maps = layout.index_maps(x.shape[2:], (0, 1, 2), (1, 8, 13), "zeros")
    zero = np.zeros(channels, np.int64)
    got = blocked.to_blocked_folded(x, maps, np.arange(channels), zero, zero, (1, 1), (1, 8, 13), narrow=True)
    assert got.shape == (2, 1, 1, 8, 13, channels)
    np.testing.assert_array_equal(got, _blocked_reference(x, maps, lanes=channels))


@pytest.mark.parametrize(
    "n, c_in, o, cells, phase, groups",
    [
        (2, 19, 45, (2, 5, 21), ((0, 0, 0), (1, 1, 1)), 1),  # 8-channel groups, a 5-channel tail
        (1, 16, 16, (1, 4, 16), ((0, 0, 0), (1, 1, 1)), 1),  # whole transposes only
        (2, 3, 29, (1, 4, 9), ((0, 1, 0), (1, 2, 1)), 3),  # narrow input, a height phase, groups
        (2, 20, 5, (1, 3, 7), ((0, 0, 1), (1, 1, 2)), 2),  # 7 cells at width step 2: no transposes
        (2, 20, 24, (1, 3, 13), ((0, 0, 1), (1, 1, 2)), 1),  # step 2, a ragged end, an 8-channel tail
        (1, 5, 16, (1, 2, 16), ((0, 1, 0), (1, 2, 2)), 2),  # step 2, whole transposes only
        (1, 9, 13, (1, 2, 9), ((0, 0, 1), (1, 1, 2)), 1),  # step 2, 8 channels and a tail of 5
        (1, 7, 24, (2, 2, 13), ((1, 0, 0), (2, 1, 1)), 1),  # a ragged row end: overlapping transposes
    ],
)
def test_blocked_forward_writes_exactly_its_cells(n, c_in, o, cells, phase, groups):
    # a 1x1 convolution picking input channel (k + g) % c_in for output k of group g, plus a
    # distinct bias: every output cell is exactly x + bias, stored only into its phase's cells;
    # image i of out and xb is group i % groups, with that group's weights and bias
    rng = np.random.default_rng(2)
    width = conv_dense.plan_width(o, cells[2])  # the kernel computes the padded row
    x = rng.standard_normal((n * groups, c_in, cells[0], cells[1], width)).astype(np.float32)
    xb = blocked.to_blocked_folded(
        x,
        layout.index_maps(x.shape[2:], (0, 0, 0), x.shape[2:], "zeros"),
        np.arange(c_in),
        *[np.zeros(c_in, np.int64)] * 2,
        (1, 1),
        x.shape[2:],
        narrow=True,
    )
    pick = (np.arange(o)[None, :] + np.arange(groups)[:, None]) % c_in  # (groups, o)
    w = np.zeros((groups, o, c_in, 1, 1, 1), np.float32)
    w[np.arange(groups)[:, None], np.arange(o)[None, :], pick] = 1
    bias = rng.standard_normal(groups * o).astype(np.float32)
    (s_d, s_h, s_w), (t_d, t_h, t_w) = phase
    size = tuple(s + (k - 1) * t + 1 for s, t, k in zip(*phase, cells, strict=True))
    out = np.full((n * groups, o, *size), 7.0, np.float32)
    want = out.copy()
    for i in range(n * groups):
        g = i % groups
        picked = x[i, pick[g], :, :, : cells[2]] + bias[g * o : (g + 1) * o, None, None, None]
        want[i, :, s_d::t_d, s_h::t_h, s_w::t_w] = picked
    w = w.reshape(groups * o, c_in, 1, 1, 1)
    conv_dense.run_blocked(out, xb, w, bias, (1, 1, 1), (1, 1, 1), (0, 0, 0), phase, groups)
    np.testing.assert_array_equal(out, want)
    strided = np.full((*out.shape, 2), 7.0, np.float32)[..., 0]  # not contiguous
    conv_dense.run_blocked(strided, xb, w, bias, (1, 1, 1), (1, 1, 1), (0, 0, 0), phase, groups)
    np.testing.assert_array_equal(strided, want)


def test_weight_layouts_round_trip():
    w = np.random.default_rng(3).standard_normal((37, 21, 2, 3, 5)).astype(np.float32)
    wb = blocked.weight_to_blocked(w)
    assert wb.shape == (3, 2, 2, 3, 5, LANES, LANES)
    back = np.empty_like(w)
    blocked.weight_from_blocked(back, wb)
    np.testing.assert_array_equal(back, w)
    narrow = conv_dense.narrow_weight(w[:, :3], pack_width=True)  # (Ob, 1, KD, KH, 1, KW*3, 16)
    assert narrow.shape == (3, 1, 2, 3, 1, 15, LANES)
    o, c, kd, kh, kw = 36, 2, 1, 2, 4
    assert narrow[o // LANES, 0, kd, kh, 0, kw * 3 + c, o % LANES] == w[o, c, kd, kh, kw]
    assert not narrow[2, ..., 37 - 32 :].any()  # padded output channels are zero


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("step_w", [1, 2])
def test_folded_conversion_reads_each_channel_at_its_offsets(mode, step_w):
    """Taps folded into channels: blocked channel ch reads input channel src_c[ch] at padded
    cell (j*step_h + off_h[ch], k*step_w + off_w[ch]); rows inside the padding, rows that
    run through it and rows that start in it all occur."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 1, 6, 9)).astype(np.float32)
    k = 3
    src_c = np.repeat(np.arange(3), k * k)
    off_h, off_w = np.tile(np.repeat(np.arange(k), k), 3), np.tile(np.arange(k), 9)
    size = (1, 6, (9 + 2 - k) // step_w + 1)
    maps = layout.index_maps(x.shape[2:], (0, 1, 1), (1, 8, (size[2] - 1) * step_w + k), mode)
    got = blocked.to_blocked_folded(x, maps, src_c, off_h, off_w, (1, step_w), size)
    md, mh, mw = maps
    want = np.zeros_like(got)
    for ch in range(len(src_c)):
        h = mh[np.arange(size[1]) + off_h[ch]]
        w = mw[np.arange(size[2]) * step_w + off_w[ch]]
        cells = x[:, src_c[ch], md[0]][:, h[:, None], w[None, :]] * ((h[:, None] >= 0) & (w[None, :] >= 0))
        want[:, ch // LANES, 0, ..., ch % LANES] = cells
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize(
    "size, lo, extent, length, out_channels",
    [
        ((1, 5, 7), (0, 1, 2), (1, 8, 12), 100, 3),  # padded rows and columns, zero tail, a zero plane
        ((2, 4, 4), (1, 0, 3), (4, 4, 9), 200, 2),  # padded depth
        ((1, 6, 6), (0, 0, 0), (1, 6, 6), 30, 2),  # no padding, cut inside a row
        ((1, 3, 5), (0, 2, 0), (1, 7, 4), 40, 2),  # the grid crops the width
    ],
)
def test_flat_gather_matches_the_index_maps(mode, size, lo, extent, length, out_channels):
    from fastconv.backends.cpu import conv_flat

    x = np.random.default_rng(4).standard_normal((2, 2, *size)).astype(np.float32)
    maps = layout.index_maps(size, lo, extent, mode)
    got = np.full((2, out_channels, length), np.nan, np.float32)
    conv_flat._gather_flat(got, x, *maps)
    grid = _blocked_reference(x, maps, lanes=1)[..., 0].reshape(2, 2, -1)  # (N, C, cells)
    want = np.zeros_like(got)
    cells = min(length, grid.shape[2])
    want[:, :2, :cells] = grid[:, :, :cells]
    np.testing.assert_array_equal(got, want)


def test_adjoint_taps_swap_channels_and_pick_taps():
    w = np.random.default_rng(5).standard_normal((5, 3, 2, 3, 4)).astype(np.float32)
    taps = (range(1, -1, -1), range(2, -1, -2), range(3, -1, -2))
    got = blocked.adjoint_taps(w, taps)
    want = w.transpose(1, 0, 2, 3, 4)[:, :, [1, 0]][:, :, :, [2, 0]][..., [3, 1]]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "grid, data", [((1, 18, 18), ((0, 1), (4, 14), (4, 14))), ((3, 5, 7), ((1, 2), (0, 5), (2, 4)))]
)
def test_flat_tap_ranges_keep_every_tap_that_reads_data(grid, data):
    """A block of output cells skips a tap only if all its reads land outside the data box."""
    from fastconv.backends.cpu import conv_flat

    offs = conv_flat._offsets((1, 3, 4), (1, 2, 1), grid)
    tile, length = 16, 128
    lo, hi = conv_flat._tap_ranges(grid, data, offs, tile, length)
    inside = np.zeros(grid, bool)
    inside[tuple(slice(a, b) for a, b in data)] = True
    flat = np.concatenate([inside.reshape(-1), np.zeros(length + offs.max(), bool)])
    skipped = 0
    for t in range(length // tile):
        for k, off in enumerate(offs):
            reads_data = flat[t * tile + off : (t + 1) * tile + off].any()
            assert lo[t] <= k < hi[t] or not reads_data
            skipped += not lo[t] <= k < hi[t]
    assert skipped  # the box leaves taps to skip: the test sees the ranges do something


@pytest.mark.parametrize("groups, out_blocks", [(1, 2), (3, 3)])
def test_adjoint_weights_in_one_pass(groups, out_blocks):
    """``adjoint_weights``: each phase's blocked adjoint weight, as ``adjoint_taps``, padding
    each group's outputs to ``out_blocks`` blocks and ``weight_to_blocked`` give it."""
    o, c = 20, 21  # per group: 2 input blocks of the adjoint (a tail of 4), 2 output blocks (a tail of 5)
    w = np.random.default_rng(8).standard_normal((groups * o, c, 2, 3, 4)).astype(np.float32)
    taps = [
        (range(1, -1, -1), range(2, -1, -2), range(3, 0, -2)),
        (range(0, 1), range(1, 2), range(2, -1, -1)),
    ]
    flat, shapes, ends = blocked.adjoint_weights(w, taps, groups, out_blocks)
    for p, phase_taps in enumerate(taps):
        adjoint = blocked.adjoint_taps(w, phase_taps, groups)  # (groups*c, o, ...)
        padded = np.zeros((groups, out_blocks * LANES, *adjoint.shape[1:]), np.float32)
        padded[:, :c] = adjoint.reshape(groups, c, *adjoint.shape[1:])
        want = blocked.weight_to_blocked(padded.reshape(-1, *adjoint.shape[1:]))
        assert tuple(shapes[p]) == want.shape
        np.testing.assert_array_equal(flat[ends[p] : ends[p + 1]].reshape(want.shape), want)
