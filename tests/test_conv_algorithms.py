"""Each CPU convolution algorithm, forced, on random configurations: the SIMD kernels that
``auto`` picks for float32 (channel-blocked, or pixel-vectorised ``flat`` for few output
channels at stride 1) and the direct loops they fall back to must all be right."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv import config
from fastconv.backends.cpu import blocked, conv_dense, conv_flat, conv_simd, simd
from fastconv.backends.cpu import conv as cpu_conv
from fastconv.shapes import conv_geometry
from tests import reference as ref
from tests.conftest import conv_configs, ints, rand

MODES = ("zeros", "reflect", "replicate", "circular")


@pytest.fixture(params=["auto", "direct", "blocked", "flat"])
def algorithm(request, monkeypatch):
    monkeypatch.setattr(config, "CONV_ALGORITHM", request.param)
    return request.param


def _passes(d, x, w, b, dy, kw):
    return (
        getattr(fc, f"conv{d}d")(x, w, b, **kw),
        getattr(fc, f"conv{d}d_backward_input")(dy, w, x.shape, **kw),
        getattr(fc, f"conv{d}d_backward_weight")(dy, x, w.shape, **kw),
    )


def _refs(d, x, w, b, dy, kw):
    return (
        ref.conv(x, w, b, **kw),
        ref.conv_backward_input(dy, w, x.shape, **kw),
        ref.conv_backward_weight(dy, x, w.shape, **kw),
    )


# the fixture only sets a module attribute, the same for every generated input
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(modes=MODES, allow_empty_batch=False), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_forced_algorithms_are_exact_on_integer_data(algorithm, isa, cfg, seed, data):
    d, x_shape, w_shape, kw = cfg
    groups = kw["groups"] = data.draw(st.sampled_from([1, 1, 2, 3]))  # dense, and dense per group
    c_in = groups * data.draw(st.sampled_from([1, 3, 17, 19]))
    c_out = groups * data.draw(st.sampled_from([2, 16, 33]))
    x_shape, w_shape = (x_shape[0], c_in, *x_shape[2:]), (c_out, c_in // groups, *w_shape[2:])
    rng = np.random.default_rng(seed)
    x, w, b = ints(rng, x_shape), ints(rng, w_shape), ints(rng, (c_out,))
    geom = conv_geometry(
        d, x_shape, w_shape, kw["stride"], kw["padding"], kw["dilation"], groups, kw["padding_mode"]
    )
    dy = ints(rng, (x_shape[0], c_out, *geom.out_size))
    for got, want in zip(_passes(d, x, w, b, dy, kw), _refs(d, x, w, b, dy, kw), strict=True):
        np.testing.assert_array_equal(got, want.astype(np.float32))


@pytest.mark.parametrize("c_out", [16, 32, 48, 64, 96])
def test_register_blocks_by_output_channels(algorithm, isa, c_out):
    """Output-channel counts whose blocks the planned register block divides or pads (1 to
    6 blocks), with a width that leaves a tail in the pixel block."""
    rng = np.random.default_rng(c_out)
    x, w, b = (
        rand(rng, (2, 20, 9, 13), np.float32),
        rand(rng, (c_out, 20, 3, 3), np.float32),
        rand(rng, (c_out,), np.float32),
    )
    dy = rand(rng, (2, c_out, 9, 13), np.float32)
    kw = dict(padding=1)
    for got, want in zip(_passes(2, x, w, b, dy, kw), _refs(2, x, w, b, dy, kw), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c_in", [19, 5], ids=["whole-blocks", "narrow"])
@pytest.mark.parametrize(
    "isa_name, nb, rw",
    [(i, nb, rw) for i, table in conv_dense._BLOCKS.items() for nb in table for rw in table[nb]],
)
def test_every_register_block(monkeypatch, isa_name, nb, rw, c_in):
    """Each forward register block of each instruction set's table, forced as the only one:
    outputs of NB + 1 blocks with a 5-channel tail (a padded block of zero weights, and
    padding lanes), rows one pixel longer than a multiple of RW (a ragged block), forward
    and input gradient (the same microkernel); inputs of whole 16-channel blocks (the kernel
    with a constant pixel step) and narrow ones (the general kernel)."""
    monkeypatch.setattr(simd, "ISA", isa_name)
    monkeypatch.setitem(conv_dense._BLOCKS, isa_name, {nb: {rw: 1.0}})
    monkeypatch.setattr(config, "CONV_ALGORITHM", "blocked")
    conv_dense._plan.cache_clear()
    conv_flat._cached_blocked_cheaper.cache_clear()
    try:
        c_out, width = 16 * nb + 5, 2 * rw + 1
        assert conv_dense._plan(c_out, width, isa_name) == (nb, rw, -(-(nb + 1) // nb) * nb, 3 * rw)
        rng = np.random.default_rng(nb * 100 + rw)
        x, w, b = (
            ints(rng, (2, c_in, 3, width)),
            ints(rng, (c_out, c_in, 3, 3)),
            ints(rng, (c_out,)),
        )
        dy = ints(rng, (2, c_out, 3, width))
        np.testing.assert_array_equal(fc.conv2d(x, w, b, padding=1), ref.conv(x, w, b, padding=1))
        np.testing.assert_array_equal(
            fc.conv2d_backward_input(dy, w, x.shape, padding=1),
            ref.conv_backward_input(dy, w, x.shape, padding=1),
        )
    finally:
        conv_dense._plan.cache_clear()
        conv_flat._cached_blocked_cheaper.cache_clear()


@pytest.mark.parametrize("speed, flat", [(0.97, False), (0.58, True)], ids=["amd", "xeon"])
def test_a_16_channel_forward_runs_where_it_computes_less(monkeypatch, speed, flat):
    """LeNet's 6 -> 16 5x5 forward on 14x14 maps: the flat kernels compute 1.44 cells per
    output, a (1, 10) register block 1.0 at its speed (x 1.2 for a narrow input): blocked
    at the AMD EPYC host's NB = 1 speed, flat at the Xeon's. Shapes only, any machine."""
    monkeypatch.setattr(simd, "ISA", "avx512")
    monkeypatch.setitem(conv_dense._BLOCKS, "avx512", {2: {12: 1.0}, 1: {16: speed, 10: speed}})
    conv_dense._plan.cache_clear()
    conv_flat._cached_blocked_cheaper.cache_clear()
    try:
        geom = conv_geometry(2, (64, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1, 1).lift3()
        assert conv_dense._plan(16, 10, "avx512")[:2] == (1, 10)
        assert conv_flat.applies("forward", geom, 16, 6) is flat
    finally:
        conv_dense._plan.cache_clear()
        conv_flat._cached_blocked_cheaper.cache_clear()


@pytest.mark.parametrize("c_in", [19, 5], ids=["whole-blocks", "narrow"])
def test_the_forward_kernel_with_its_pixel_step_as_an_argument(isa, monkeypatch, c_in):
    """Pixel steps outside ``_CONSTANT_STEPS`` run the kernel that reads its step from the
    arguments (the others have it compiled in): a width stride of 5 with one width tap (so
    no stride phases fold into channels), 5 or 16 lanes per cell. Forward, exact."""
    monkeypatch.setattr(config, "CONV_ALGORITHM", "blocked")
    rng = np.random.default_rng(c_in)
    x, w, b = ints(rng, (2, c_in, 5, 41)), ints(rng, (21, c_in, 2, 1)), ints(rng, (21,))
    got = fc.conv2d(x, w, b, stride=(1, 5), padding=(0, 1))
    np.testing.assert_array_equal(got, ref.conv(x, w, b, stride=(1, 5), padding=(0, 1)))


def test_auto_uses_simd_for_float32_and_direct_for_float64():
    geom = conv_geometry(2, (1, 8, 9, 9), (16, 8, 3, 3), 1, 1, 1, 1).lift3()
    assert cpu_conv.algorithm("forward", geom, np.float32) == "simd"
    assert cpu_conv.algorithm("backward_input", geom, np.float32) == "simd"
    assert cpu_conv.algorithm("forward", geom, np.float64) == "direct"
    strided = conv_geometry(2, (1, 8, 9, 9), (16, 8, 3, 3), 2, 1, 1, 1).lift3()
    assert cpu_conv.algorithm("backward_input", strided, np.float32) == "simd"
    grouped = conv_geometry(2, (1, 8, 9, 9), (16, 4, 3, 3), 1, 1, 1, 2).lift3()
    assert cpu_conv.algorithm("forward", grouped, np.float32) == "simd"


# the fixture only sets a module attribute, the same for every generated input
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(modes=MODES, allow_empty_batch=False), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_forced_algorithms_depthwise(algorithm, cfg, seed, data):
    """groups = C_in = C_out, channel counts below, at and beyond one 16-lane block."""
    d, x_shape, w_shape, kw = cfg
    c = data.draw(st.sampled_from([2, 16, 19, 33]))
    kw["groups"] = c
    x_shape, w_shape = (x_shape[0], c, *x_shape[2:]), (c, 1, *w_shape[2:])
    rng = np.random.default_rng(seed)
    x, w, b = ints(rng, x_shape), ints(rng, w_shape), ints(rng, (c,))
    geom = conv_geometry(
        d, x_shape, w_shape, kw["stride"], kw["padding"], kw["dilation"], c, kw["padding_mode"]
    )
    dy = ints(rng, (x_shape[0], c, *geom.out_size))
    for got, want in zip(_passes(d, x, w, b, dy, kw), _refs(d, x, w, b, dy, kw), strict=True):
        np.testing.assert_array_equal(got, want.astype(np.float32))


def test_every_fold_plan(monkeypatch):
    """Each way of folding taps or stride phases into channels, forced on a strided, dilated
    and padded convolution with few channels (auto picks one per shape)."""
    rng = np.random.default_rng(5)
    x, w = rand(rng, (2, 3, 17, 15), np.float32), rand(rng, (20, 3, 5, 4), np.float32)
    for stride, dilation, mode in [
        ((2, 3), 1, "zeros"),
        ((3, 2), (1, 2), "reflect"),
        ((1, 2), 1, "circular"),
    ]:
        kw = dict(stride=stride, padding=2, dilation=dilation, padding_mode=mode)
        geom = conv_geometry(2, x.shape, w.shape, stride, 2, dilation, 1, mode).lift3()
        dy = rand(rng, (2, 20, *geom.out_size[1:]), np.float32)
        axes = zip(geom.kernel[1:], geom.stride[1:], geom.dilation[1:], strict=True)
        plans = list(itertools.product(*(conv_simd._axis_folds(*a) for a in axes)))
        assert len(plans) > 1
        for plan in plans:
            monkeypatch.setattr(conv_simd, "_fold_plan", lambda *a, plan=plan, **k: plan)
            np.testing.assert_allclose(fc.conv2d(x, w, **kw), ref.conv(x, w, **kw), rtol=1e-4, atol=1e-4)
            got = fc.conv2d_backward_weight(dy, x, w.shape, **kw)
            np.testing.assert_allclose(
                got, ref.conv_backward_weight(dy, x, w.shape, **kw), rtol=1e-4, atol=1e-4
            )


def test_auto_folds_stride_phases_of_a_strided_rgb_stem(isa):
    """In the weight gradient the cost model folds the width phases of a stride-4 11x11
    kernel on RGB (AlexNet's first layer) into 12 channels, one narrow block, rather than
    copying its taps (an im2col) or leaving 11 width taps of 3 lanes, whose register tile
    reuses each load least."""
    geom = conv_geometry(2, (8, 3, 227, 227), (96, 3, 11, 11), 4, 0, 1, 1).lift3()
    fh, fw = conv_simd._fold_plan(geom, 8, 3, 96, 55)
    assert (fh.offsets, fw.offsets) == ((0,), (0, 1, 2, 3))


def test_the_weight_gradient_reads_few_channels_narrow(isa, monkeypatch):
    """Fewer than 16 (folded) input channels are one narrow block in the weight gradient
    too, and its register tile sweeps input channels that divide the block's lanes."""
    from fastconv.backends.cpu import conv_dense

    assert all(lanes % conv_dense._weight_tile(2, 5, lanes)[2] == 0 for lanes in (3, 5, 6, 12, 16))
    monkeypatch.setattr(config, "CONV_ALGORITHM", "blocked")
    lanes, real = [], conv_dense.backward_weight_blocked
    monkeypatch.setattr(
        conv_dense,
        "backward_weight_blocked",
        lambda dw, dyb, xb, *a: (lanes.append(xb.shape[5]), real(dw, dyb, xb, *a)),
    )
    rng = np.random.default_rng(11)
    x, w = rand(rng, (3, 6, 14, 13), np.float32), rand(rng, (16, 6, 5, 5), np.float32)
    dy = rand(rng, ref.conv(x, w).shape, np.float32)
    got = fc.conv2d_backward_weight(dy, x, w.shape)
    np.testing.assert_allclose(got, ref.conv_backward_weight(dy, x, w.shape), rtol=1e-4, atol=1e-4)
    assert lanes and lanes[0] < 16


@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding",
    [((8, 3, 227, 227), (96, 3, 11, 11), 4, 0), ((4, 3, 224, 224), (64, 3, 7, 7), 2, 3)],
)
def test_the_forward_reads_rgb_stems_unfolded(isa, x_shape, w_shape, stride, padding):
    """The forward reads a narrow input (3 lanes, not 16) with its width taps as one run per
    kernel row: nothing is padded, so folding would only add the copy."""
    geom = conv_geometry(2, x_shape, w_shape, stride, padding, 1, 1).lift3()
    fh, fw = conv_simd._fold_plan(geom, *x_shape[:2], w_shape[0], geom.out_size[2], forward=True)
    assert (fh.offsets, fw.offsets) == ((0,), (0,))


@pytest.mark.parametrize("stride", [1, 2, (3, 1)])
def test_pointwise_runs_as_one_row_of_pixels(algorithm, stride):
    """1x1 kernels (a matrix product over the pixels a stride selects), with a channel tail."""
    rng = np.random.default_rng(3)
    x, w, b = (
        rand(rng, (3, 21, 9, 7), np.float32),
        rand(rng, (35, 21, 1, 1), np.float32),
        rand(rng, (35,), np.float32),
    )
    out = ref.conv(x, w, b, stride=stride)
    dy = rand(rng, out.shape, np.float32)
    for got, want in zip(
        _passes(2, x, w, b, dy, dict(stride=stride)), _refs(2, x, w, b, dy, dict(stride=stride)), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tile", [(1, 1, 16), (2, 1, 8), (4, 3, 2), (1, 3, 4)])
def test_every_weight_gradient_tile(monkeypatch, tile):
    """Register tiles of the blocked weight gradient (output vectors x width taps x input
    channels), forced; auto picks one from the shape."""
    from fastconv.backends.cpu import conv_dense

    monkeypatch.setattr(conv_dense, "_weight_tile", lambda out_blocks, kw, lanes=16, jobs=0: tile)
    rng = np.random.default_rng(7)
    x, w = rand(rng, (3, 32, 9, 11), np.float32), rand(rng, (64, 32, 2, 3), np.float32)  # nothing folded
    kw = dict(padding=(1, 2), dilation=(1, 2))
    dy = rand(rng, ref.conv(x, w, **kw).shape, np.float32)
    got = fc.conv2d_backward_weight(dy, x, w.shape, **kw)
    np.testing.assert_allclose(got, ref.conv_backward_weight(dy, x, w.shape, **kw), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("height, width", [(10, 16), (7, 30), (3, 70), (9, 1)])
def test_weight_gradient_sweeps_rows_in_chunks(monkeypatch, height, width):
    """The blocked weight gradient sweeps its register tile over whole rows of about
    ``_TILE_PIXELS`` output pixels: 4 rows of 16 (10 = 4 + 4 + 2), 3 of 30 (7 = 3 + 3 + 1),
    one row of 70, all 9 rows of 1. Integer data: exact."""
    from fastconv.backends.cpu import conv_dense

    monkeypatch.setattr(config, "CONV_ALGORITHM", "blocked")
    rows = max(1, -(-conv_dense._TILE_PIXELS // width))
    assert {(10, 16): 4, (7, 30): 3, (3, 70): 1, (9, 1): 64}[height, width] == rows
    rng = np.random.default_rng(height * width)
    x, w = ints(rng, (2, 16, height, width)), ints(rng, (32, 16, 3, 3))
    dy = ints(rng, (2, 32, height, width))
    got = fc.conv2d_backward_weight(dy, x, w.shape, padding=1)
    np.testing.assert_array_equal(got, ref.conv_backward_weight(dy, x, w.shape, padding=1))


@pytest.mark.parametrize(
    "vectors, chunks, per_chunk", [(2048, 1, 7), (15, 2, 4), (6, 4, 2), (9, 3, 3), (1, 7, 1)]
)
def test_flat_weight_gradient_sums_chunks_of_equal_images(monkeypatch, vectors, chunks, per_chunk):
    """The flat weight gradient sums chunks of images (at most ``_CHUNK_VECTORS`` vectors of
    dy per image per chunk, as many chunks as that needs, equal in images but the last):
    here 3 vectors per image (dy on the 6 x 6 grid of x: 36 cells, padded to 48), 7 images. Integer data: exact; float data: the same bits on 1
    and 2 threads."""
    import numba

    monkeypatch.setattr(config, "CONV_ALGORITHM", "flat")
    monkeypatch.setattr(conv_flat, "_CHUNK_VECTORS", vectors)
    conv_flat._weight_plan.cache_clear()
    seen = []
    kernel = conv_flat._weight_kernel
    monkeypatch.setattr(
        conv_flat,
        "_weight_kernel",
        lambda no, tt: lambda part, *a: (seen.append((part.shape[0], a[-1])), kernel(no, tt)(part, *a))[1],
    )
    try:
        rng = np.random.default_rng(vectors)
        x, w = ints(rng, (7, 2, 6, 6)), ints(rng, (3, 2, 3, 3))  # dy: 3 vectors per image
        dy = ints(rng, (7, 3, 4, 4))
        got = fc.conv2d_backward_weight(dy, x, w.shape)
        np.testing.assert_array_equal(got, ref.conv_backward_weight(dy, x, w.shape))
        assert seen == [(chunks, per_chunk)]
        xf, dyf = rand(rng, x.shape, np.float32), rand(rng, dy.shape, np.float32)
        threads = numba.get_num_threads()
        sums = []
        for n in (1, threads):
            numba.set_num_threads(n)
            sums.append(fc.conv2d_backward_weight(dyf, xf, w.shape))
        numba.set_num_threads(threads)
        np.testing.assert_array_equal(sums[0], sums[1])
    finally:
        conv_flat._weight_plan.cache_clear()


@pytest.mark.parametrize(
    "kernel, stride, width",
    [
        ((3, 3), (2, 2), 9),  # two width phases of 5 and 4 cells, interleaved in vectors
        ((3, 3), (2, 2), 40),  # rows longer than a vector of each phase
        ((1, 3), (2, 2), 11),  # odd rows: dead phases; even rows: both width phases
        ((3, 1), (1, 2), 12),  # odd columns dead: one width phase per row, cell by cell
        ((3, 3), (1, 3), 13),  # three width phases, cell by cell
    ],
)
def test_flat_input_gradient_crops_every_stride_phase(monkeypatch, kernel, stride, width):
    """The flat input gradient's stride phases land on their cells of dx, each row once, and
    dead phases' cells stay zero. Integer data: exact."""
    monkeypatch.setattr(config, "CONV_ALGORITHM", "flat")
    rng = np.random.default_rng(width)
    x_shape, w = (2, 5, 10, width), ints(rng, (7, 5, *kernel))
    kw = dict(stride=stride, padding=(kernel[0] // 2, kernel[1] // 2))
    dy = ints(rng, fc.conv2d(np.zeros(x_shape, np.float32), w, **kw).shape)
    got = fc.conv2d_backward_input(dy, w, x_shape, **kw)
    np.testing.assert_array_equal(got, ref.conv_backward_input(dy, w, x_shape, **kw))


@pytest.mark.parametrize("stride", [1, 2])
def test_small_groups_run_as_images_in_one_flat_call(isa, monkeypatch, stride):
    """Groups of few channels (here 8 groups of 2 -> 3) run on the pixel-vectorised kernels
    as images of their own, every group in one kernel call (forward at stride 1; input
    gradient: one per stride phase), each with its own weights and bias. Integer data:
    exact."""
    from fastconv.backends.cpu import conv_flat

    calls = []  # the (images, channels) of the flat input of each kernel call
    results = conv_flat._results
    monkeypatch.setattr(
        conv_flat, "_results", lambda *a, **k: (calls.append(a[1].shape[:2]), results(*a, **k))[1]
    )
    rng = np.random.default_rng(stride)
    x, w, b = ints(rng, (3, 16, 9, 10)), ints(rng, (24, 2, 3, 3)), ints(rng, (24,))
    kw = dict(stride=stride, padding=1, groups=8)
    y = fc.conv2d(x, w, b, **kw)
    np.testing.assert_array_equal(y, ref.conv(x, w, b, **kw))
    forward_calls = len(calls)
    assert calls == ([(3 * 8, 2)] if stride == 1 else [])  # 8 groups x 3 images, 2 channels each
    dy = ints(rng, y.shape)
    dx = fc.conv2d_backward_input(dy, w, x.shape, **kw)
    np.testing.assert_array_equal(dx, ref.conv_backward_input(dy, w, x.shape, **kw))
    assert calls[forward_calls:] == [(3 * 8, 3)] * stride**2  # dy's 3 channels per group, a call per phase


def test_grouped_blocked_passes_run_every_group_in_one_call(monkeypatch):
    """Groups whose passes run on the blocked kernels run every group in one call (the groups
    of an image as images of their own), each pass; the results match the reference."""
    monkeypatch.setattr(config, "CONV_ALGORITHM", "blocked")
    calls = []
    for name in ("_forward_blocked", "_backward_input_zeros", "_backward_weight_blocked"):
        real = getattr(conv_simd, name)

        def spy(*a, _real=real, _name=name, **k):
            calls.append((_name, k.get("groups")))
            return _real(*a, **k)

        monkeypatch.setattr(conv_simd, name, spy)
    rng = np.random.default_rng(7)
    x, w, b = (
        rand(rng, (2, 40, 9, 11), np.float32),
        rand(rng, (60, 10, 3, 3), np.float32),
        rand(rng, (60,), np.float32),
    )
    kw = dict(stride=2, padding=1, groups=4)
    dy = rand(rng, ref.conv(x, w, b, **kw).shape, np.float32)
    for got, want in zip(_passes(2, x, w, b, dy, kw), _refs(2, x, w, b, dy, kw), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert sorted(calls) == [
        ("_backward_input_zeros", 4),
        ("_backward_weight_blocked", 4),
        ("_forward_blocked", 4),
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(modes=MODES, allow_empty_batch=False), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_pairs_of_8_output_groups_are_exact(isa, monkeypatch, cfg, seed, data):
    """Grouped forwards with 8 outputs per group and an even number of groups run two groups
    per 16-lane block (``conv_simd._forward_pairs``): any input channels per group (whole
    blocks of 8 pairs, tails, fewer than 8), every padding mode, stride and dilation; exact
    on integer data, and the path is checked to have run (but for 1x1 kernels without padding,
    which run group by group as matrix products)."""
    d, x_shape, w_shape, kw = cfg
    groups = kw["groups"] = data.draw(st.sampled_from([2, 4, 6]))
    cpg = data.draw(st.sampled_from([1, 3, 8, 11, 16]))
    x_shape, w_shape = (x_shape[0], groups * cpg, *x_shape[2:]), (groups * 8, cpg, *w_shape[2:])
    calls = []
    real = conv_simd._forward_pairs
    monkeypatch.setattr(conv_simd, "_forward_pairs", lambda *a: (calls.append(a[-1]), real(*a)))
    rng = np.random.default_rng(seed)
    x, w, b = ints(rng, x_shape), ints(rng, w_shape), ints(rng, (groups * 8,))
    got = getattr(fc, f"conv{d}d")(x, w, b, **kw)
    np.testing.assert_array_equal(got, ref.conv(x, w, b, **kw).astype(np.float32))
    geom = conv_geometry(
        d, x_shape, w_shape, kw["stride"], kw["padding"], kw["dilation"], groups, kw["padding_mode"]
    )
    pointwise = conv_simd._pointwise(conv_simd._ungrouped(geom.lift3()))  # group by group, matrix products
    assert calls == ([] if pointwise else [groups])


@pytest.mark.parametrize("groups, cpg", [(2, 8), (4, 5), (2, 19)])
def test_pairs_match_one_group_per_block(groups, cpg):
    """The paired passes against the same grouped passes one group per block (the paths they
    replaced): float data, equal to rounding; and the same bits on 1 and 2 threads."""
    import numba

    rng = np.random.default_rng(groups * cpg)
    x = rand(rng, (3, groups * cpg, 11, 17), np.float32)
    w, b = rand(rng, (groups * 8, cpg, 3, 3), np.float32), rand(rng, (groups * 8,), np.float32)
    kw = dict(stride=(1, 2), padding=1, groups=groups)
    dy = rand(rng, ref.conv(x, w, b, **kw).shape, np.float32)
    paired = _passes(2, x, w, b, dy, kw)  # the input gradient pairs where cpg = 8
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_simd, "_paired", lambda *a: False)
        single = _passes(2, x, w, b, dy, kw)
    for got, want in zip(paired, single, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _passes(2, x, w, b, dy, kw)
    finally:
        numba.set_num_threads(threads)
    for got, want in zip(one, paired, strict=True):
        np.testing.assert_array_equal(got, want)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(allow_empty_batch=False), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_pairs_of_8_input_groups_backward_input_is_exact(isa, monkeypatch, cfg, seed, data):
    """The input gradient of grouped convolutions with 8 input channels per group and an even
    number of groups runs two groups per block too (dx's 8 channels per group are its outputs):
    any output channels per group, stride phases (some reaching no input cell), dilation;
    exact on integer data, the path checked to have run once per live stride phase (but for
    1x1 kernels without padding, which run group by group as matrix products)."""
    d, x_shape, w_shape, kw = cfg
    groups = kw["groups"] = data.draw(st.sampled_from([2, 4, 6]))
    opg = data.draw(st.sampled_from([1, 3, 8, 11, 16]))
    x_shape, w_shape = (x_shape[0], groups * 8, *x_shape[2:]), (groups * opg, 8, *w_shape[2:])
    geom = conv_geometry(
        d, x_shape, w_shape, kw["stride"], kw["padding"], kw["dilation"], groups, kw["padding_mode"]
    )
    calls = []
    real = conv_dense.run_blocked_phases
    monkeypatch.setattr(
        conv_dense,
        "run_blocked_phases",
        lambda *a, **k: (calls.append((k["pairs"], len(a[3]))), real(*a, **k))[1],
    )
    rng = np.random.default_rng(seed)
    w, dy = ints(rng, w_shape), ints(rng, (x_shape[0], groups * opg, *geom.out_size))
    got = getattr(fc, f"conv{d}d_backward_input")(dy, w, x_shape, **kw)
    np.testing.assert_array_equal(got, ref.conv_backward_input(dy, w, x_shape, **kw).astype(np.float32))
    g3 = geom.lift3()
    _, phases, _, _ = conv_simd._adjoint_phases(g3.in_size, g3.stride, g3.dilation, g3.pad_lo, g3.kernel)
    pointwise = conv_simd._pointwise(conv_simd._ungrouped(g3))
    if pointwise:
        assert True not in calls
    else:  # one paired launch, a weight per live stride phase (none if no tap reaches an input)
        assert calls == ([(True, len(phases))] if phases else [])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(modes=MODES, allow_empty_batch=False), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_pairs_of_8_output_groups_backward_weight_is_exact(isa, monkeypatch, cfg, seed, data):
    """The weight gradient of grouped convolutions with 8 outputs per group and an even number
    of groups runs two groups per block (``conv_simd._backward_weight_pairs``): any input
    channels per group, every padding mode, stride and dilation; exact on integer data, the
    path checked to have run (but for 1x1 kernels without padding)."""
    d, x_shape, w_shape, kw = cfg
    groups = kw["groups"] = data.draw(st.sampled_from([2, 4, 6]))
    cpg = data.draw(st.sampled_from([1, 3, 8, 11, 16]))
    x_shape, w_shape = (x_shape[0], groups * cpg, *x_shape[2:]), (groups * 8, cpg, *w_shape[2:])
    geom = conv_geometry(
        d, x_shape, w_shape, kw["stride"], kw["padding"], kw["dilation"], groups, kw["padding_mode"]
    )
    calls = []
    real = conv_simd._backward_weight_pairs
    monkeypatch.setattr(conv_simd, "_backward_weight_pairs", lambda *a: (calls.append(a[-1]), real(*a)))
    rng = np.random.default_rng(seed)
    x, dy = ints(rng, x_shape), ints(rng, (x_shape[0], groups * 8, *geom.out_size))
    got = getattr(fc, f"conv{d}d_backward_weight")(dy, x, w_shape, **kw)
    np.testing.assert_array_equal(got, ref.conv_backward_weight(dy, x, w_shape, **kw).astype(np.float32))
    pointwise = conv_simd._pointwise(conv_simd._ungrouped(geom.lift3()))
    assert calls == ([] if pointwise else [groups])


@settings(max_examples=60, deadline=None)
@given(
    blocks=st.integers(1, 4),
    part=st.tuples(st.integers(1, 5), st.integers(1, 6)),
    extra=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    chunks=st.integers(1, 40),
)
def test_grid_chunks_split_every_part_exactly(blocks, part, extra, chunks):
    """``chunks.jobs_before``: the chunks of a phases' common grid (each phase a part of it,
    fewer rows) hand each phase's jobs out once, in order, each within its own grid chunk."""
    from fastconv.backends.cpu.chunks import bounds, jobs_before

    (d, h), (gd, gh) = part, (part[0] + extra[0], part[1] + extra[1])
    jobs = blocks * gd * gh
    n = min(jobs, chunks)
    got = []
    for k in range(n):
        first, last = bounds(k, jobs, n)
        lo, hi = jobs_before(first, gd, gh, d, h), jobs_before(last, gd, gh, d, h)
        for j in range(lo, hi):  # part job j -> its grid coordinates, which must lie in the chunk
            b, od, oh = j // (d * h), j // h % d, j % h
            assert first <= (b * gd + od) * gh + oh < last
        got += range(lo, hi)
    assert got == list(range(blocks * d * h))


@pytest.mark.parametrize(
    "x_shape, w_shape, kw",
    [
        ((2, 20, 27, 26), (24, 20, 3, 3), dict(stride=2, padding=1)),  # odd rows: phases of 14 and 13
        ((1, 16, 17, 23), (16, 16, 5, 4), dict(stride=(3, 2), padding=2, dilation=(2, 1))),
        ((2, 16, 9, 8, 11), (32, 16, 3, 3, 3), dict(stride=2, padding=1)),  # 8 phases in 3-D
        ((2, 32, 15, 15), (32, 8, 3, 3), dict(stride=2, padding=1, groups=4)),  # pairs of 8-channel groups
    ],
)
def test_stride_phases_in_one_launch_match_one_launch_each(monkeypatch, x_shape, w_shape, kw):
    """``run_blocked_phases`` (the blocked input gradient's stride phases in one launch) gives
    the same bits as a ``run_blocked`` per phase, on 1 and 2 threads."""
    import numba

    d = len(x_shape) - 2
    rng = np.random.default_rng(7)
    w = rand(rng, w_shape, np.float32)
    geom = conv_geometry(
        d, x_shape, w_shape, kw["stride"], kw["padding"], kw.get("dilation", 1), kw.get("groups", 1), "zeros"
    )
    dy = rand(rng, (x_shape[0], w_shape[0], *geom.out_size), np.float32)
    monkeypatch.setattr(config, "CONV_ALGORITHM", "blocked")
    launches = []
    real = conv_dense.run_blocked_phases
    monkeypatch.setattr(
        conv_dense, "run_blocked_phases", lambda *a, **k: (launches.append(len(a[3])), real(*a, **k))[1]
    )
    bwd = getattr(fc, f"conv{d}d_backward_input")
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one_thread = bwd(dy, w, x_shape, **kw)
    finally:
        numba.set_num_threads(threads)
    together = bwd(dy, w, x_shape, **kw)
    assert launches and min(launches) > 1  # several phases, one launch

    def each(out, xb, w, taps, phases, dilation, groups=1, pairs=False):
        for phase_taps, (phase, start) in zip(taps, phases, strict=True):
            adjoint = blocked.adjoint_taps(w, phase_taps, 2 * groups if pairs else groups)
            conv_dense.run_blocked(out, xb, adjoint, None, (1, 1, 1), dilation, start, phase, groups, pairs)

    monkeypatch.setattr(conv_dense, "run_blocked_phases", each)
    apart = bwd(dy, w, x_shape, **kw)
    np.testing.assert_array_equal(together, apart)
    np.testing.assert_array_equal(one_thread, apart)
    np.testing.assert_allclose(apart, ref.conv_backward_input(dy, w, x_shape, **kw), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "x_shape, w_shape, padding, isa_name, flat",
    [
        ((16, 7, 32, 32), (13, 7, 5, 5), 2, "avx512", True),  # few_7_13: 0.59 against 0.85 ms
        ((8, 3, 12, 12), (16, 3, 3, 3), 1, "avx512", True),  # 3x3: reach 2 of 12 outputs a row
        ((64, 6, 14, 14), (16, 6, 5, 5), 0, "avx512", False),  # LeNet's 6 -> 16: 10 outputs a row
        ((8, 8, 24, 24), (13, 8, 5, 5), 2, "avx512", False),  # 8 inputs
        ((16, 7, 32, 32), (17, 7, 5, 5), 2, "avx512", False),  # two blocks of outputs
        ((16, 7, 32, 32), (13, 7, 5, 5), 2, "avx2", False),  # two registers per vector there
    ],
)
def test_weight_gradients_of_few_inputs_on_long_rows_run_flat(
    monkeypatch, x_shape, w_shape, padding, isa_name, flat
):
    """13-16 outputs: the weight gradient runs on the flat kernels from fewer than 8 inputs on
    rows at least five times the kernel's reach (``conv_flat._few_inputs_on_long_rows``), and
    is right either way."""
    monkeypatch.setattr(simd, "ISA", isa_name)
    geom = conv_geometry(2, x_shape, w_shape, 1, padding, 1, 1, "zeros").lift3()
    assert conv_flat.applies("backward_weight", geom, w_shape[0], x_shape[1]) is flat
    rng = np.random.default_rng(11)
    x, dy = ints(rng, x_shape), ints(rng, (x_shape[0], w_shape[0], *geom.out_size[1:]))
    got = fc.conv2d_backward_weight(dy, x, w_shape, padding=padding)
    np.testing.assert_array_equal(got, ref.conv_backward_weight(dy, x, w_shape, padding=padding))
