"""The float32 depthwise kernels (``conv_depthwise``: groups = C_in = C_out, NCDHW direct)
against the float64 references, on random configurations; with both plane methods (the
generated strips and the generic tiles); bitwise identical for 1 and 2 threads."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv.backends.cpu import conv_depthwise, conv_simd, layout, simd
from fastconv.shapes import conv_geometry
from tests import reference as ref
from tests.conftest import assert_same_bits_for_thread_counts, rand

MODES = ("zeros", "reflect", "replicate", "circular")


@pytest.fixture(params=["auto", "tiles"])
def method(request, monkeypatch, isa):
    """``auto`` picks strips (of each instruction set's size) where they apply; ``tiles``
    forces the generic plane kernels."""
    if request.param == "tiles":
        monkeypatch.setattr(conv_depthwise, "_method", lambda *args: ("tiles",))
    for plan in (
        conv_depthwise._forward_plan,
        conv_depthwise._backward_input_plan,
        conv_depthwise._direct_plan,
    ):
        plan.cache_clear()
    yield request.param
    for plan in (
        conv_depthwise._forward_plan,
        conv_depthwise._backward_input_plan,
        conv_depthwise._direct_plan,
    ):
        plan.cache_clear()


@st.composite
def depthwise_configs(draw):
    """(d, x_shape, w_shape, kwargs): 1/2/3-D, any padding mode, stride and dilation, odd
    sizes up to several 16-pixel tiles, channels not a multiple of 16; half of them shaped
    for the strip kernels (at least 8 output rows, 2 or 3 kernel rows, no row dilation)."""
    strip = draw(st.booleans())
    d = draw(st.sampled_from([2, 3] if strip else [1, 2, 3]))
    c = draw(st.sampled_from([1, 3, 16, 19]))
    n = draw(st.integers(1, 2))
    kernel = [draw(st.integers(1, 3)) for _ in range(d)]
    dilation = [draw(st.integers(1, 2)) for _ in range(d)]
    stride = [draw(st.integers(1, 3)) for _ in range(d)]
    if strip:  # the height axis
        kernel[-2], dilation[-2], stride[-2] = draw(st.integers(2, 3)), 1, draw(st.integers(1, 2))
    mode = draw(st.sampled_from(MODES))
    if draw(st.booleans()):
        stride, padding = [1] * d, "same"
        pads = [
            (t // 2, t - t // 2) for t in (dil * (k - 1) for k, dil in zip(kernel, dilation, strict=True))
        ]
    else:
        padding = tuple(draw(st.integers(0, 3)) for _ in range(d))
        pads = [(p, p) for p in padding]
    max_sizes = {1: (40,), 2: (24, 37), 3: (5, 20, 21)}[d]
    size = []
    for axis, (k, dil, s, (lo, hi), top) in enumerate(
        zip(kernel, dilation, stride, pads, max_sizes, strict=True)
    ):
        low = max(1, dil * (k - 1) + 1 - lo - hi)
        if mode == "reflect":
            low = max(low, max(lo, hi) + 1)
        elif mode == "circular":
            low = max(low, lo, hi)
        if strip and axis == d - 2:  # at least 8 output rows
            low = max(low, 7 * s + dil * (k - 1) + 1 - lo - hi)
        size.append(draw(st.integers(low, max(low, top))))
    kw = dict(stride=tuple(stride), padding=padding, dilation=tuple(dilation), groups=c, padding_mode=mode)
    return d, (n, c, *size), (c, 1, *kernel), kw


def _assert_close(got, want, scale):
    assert got.dtype == np.float32 and got.shape == want.shape
    err = np.abs(got.astype(np.float64) - want)
    bound = 1e-5 * scale + np.finfo(np.float32).tiny
    assert np.all(err <= bound), f"max error {err.max()}"


# the fixture only sets module state, the same for every generated input
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=depthwise_configs(), seed=st.integers(0, 2**32 - 1), with_bias=st.booleans())
def test_depthwise_matches_reference(method, cfg, seed, with_bias):
    d, x_shape, w_shape, kw = cfg
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape, np.float32), rand(rng, w_shape, np.float32)
    b = rand(rng, (w_shape[0],), np.float32) if with_bias else None
    y = getattr(fc, f"conv{d}d")(x, w, b, **kw)
    abs_b = None if b is None else np.abs(b)
    _assert_close(y, ref.conv(x, w, b, **kw), ref.conv(np.abs(x), np.abs(w), abs_b, **kw))

    dy = rand(rng, y.shape, np.float32)
    dx = getattr(fc, f"conv{d}d_backward_input")(dy, w, x_shape, **kw)
    want = ref.conv_backward_input(dy, w, x_shape, **kw)
    _assert_close(dx, want, ref.conv_backward_input(np.abs(dy), np.abs(w), x_shape, **kw))

    dw = getattr(fc, f"conv{d}d_backward_weight")(dy, x, w_shape, **kw)
    want = ref.conv_backward_weight(dy, x, w_shape, **kw)
    _assert_close(dw, want, ref.conv_backward_weight(np.abs(dy), np.abs(x), w_shape, **kw))


@pytest.mark.parametrize(
    ("kw", "shape"),
    [
        (dict(padding=1), (2, 19, 22, 37)),  # strips: tail rows and tail tiles
        (dict(padding=2, stride=2, padding_mode="reflect"), (2, 5, 41, 30)),  # strided strips
        (dict(padding=(0, 3), dilation=(1, 3), padding_mode="circular"), (1, 3, 9, 17)),  # tiles
    ],
)
def test_depthwise_inf_and_nan_stay_where_they_belong(method, kw, shape):
    """A non-finite input cell reaches only the outputs and weight taps that read it: no
    masked lane or tail row multiplies it by a zero."""
    rng = np.random.default_rng(0)
    c = shape[1]
    x, w = rand(rng, shape, np.float32), rand(rng, (c, 1, 3, 3), np.float32)
    x[0, 0, -1, -1], x[-1, -1, 0, 5] = np.inf, np.nan
    y = fc.conv2d(x, w, groups=c, **kw)
    dy = rand(rng, y.shape, np.float32)
    kw = dict(kw, groups=c)
    for got, want in (
        (y, ref.conv(x, w, **kw)),
        (fc.conv2d_backward_weight(dy, x, w.shape, **kw), ref.conv_backward_weight(dy, x, w.shape, **kw)),
    ):
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_depthwise_empty_batch(d):
    x, w = np.zeros((0, 5, *(9,) * d), np.float32), np.ones((5, 1, *(3,) * d), np.float32)
    kw = dict(padding=1, groups=5, padding_mode="reflect")
    y = getattr(fc, f"conv{d}d")(x, w, np.ones(5, np.float32), **kw)
    assert y.shape == (0, 5, *(9,) * d)
    assert getattr(fc, f"conv{d}d_backward_input")(y, w, x.shape, **kw).shape == x.shape
    dw = getattr(fc, f"conv{d}d_backward_weight")(y, x, w.shape, **kw)
    assert dw.shape == w.shape and not np.any(dw)


def test_strips_are_chosen_where_they_apply(isa):
    rows, sums = {"avx512": (4, 2), "avx2": (4, 1)}[isa]

    def methods(x_shape, k, **kw):
        geom = conv_geometry(
            2,
            x_shape,
            (x_shape[1], 1, k, k),
            kw.get("stride", 1),
            kw.get("padding", 0),
            kw.get("dilation", 1),
            x_shape[1],
        ).lift3()
        return conv_depthwise._forward_plan(geom)[0], conv_depthwise._backward_input_plan(geom)[0]

    strip = ("strip", 3, 1, 1, rows, sums)
    assert methods((8, 128, 56, 56), 3, padding=1) == (strip, strip)
    five = ("strip", 5, 2, 1, rows, sums), ("strip", 5, 1, 1, rows, sums)
    assert methods((8, 96, 28, 28), 5, padding=2, stride=2) == five
    short = (8, 32, rows - 1, rows - 1)
    assert methods(short, 3, padding=1) == (("tiles",), ("tiles",))  # fewer rows than a strip
    assert methods((8, 32, 20, 20), 3, padding=2, dilation=2) == (("tiles",), ("tiles",))
    tall = {"avx512": ("strip", 7, 1, 1, rows, sums), "avx2": ("tiles",)}[isa]  # 7 weight rows fit?
    assert methods((8, 32, 20, 20), 7, padding=3)[0] == tall

    def direct(x_shape, k, stride=(1, 1, 1)):  # plain, zero-padded planes: read in place?
        plan = conv_depthwise._direct_plan(x_shape, x_shape, (1, k, k), stride, (1, 1, 1), (0, 1, 1))
        return None if plan is None else plan[0]

    assert direct((1, 56, 56), 3) == ((3, 1, rows) if isa == "avx512" else None)  # masked loads native?
    assert direct((1, 56, 56), 3, (1, 2, 1)) == ((3, 2, rows) if isa == "avx512" else None)
    assert direct((1, 56, 56), 3, (1, 1, 2)) is None  # a strided width: the gather's phases
    assert direct((1, 20, 20), 3, (1, 1, 1)) is not None or isa == "avx2"
    assert direct((1, rows - 1, 20), 3) is None  # no full strip


def test_depthwise_float32_runs_the_depthwise_kernels(monkeypatch):
    calls = []
    for name in ("forward", "backward_input", "backward_weight"):
        real = getattr(conv_depthwise, name)
        monkeypatch.setattr(
            conv_depthwise, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a)
        )
    x, w = np.ones((2, 4, 9, 9), np.float32), np.ones((4, 1, 3, 3), np.float32)
    y = fc.conv2d(x, w, groups=4, padding=1)
    fc.conv2d_backward_input(y, w, x.shape, groups=4, padding=1)
    fc.conv2d_backward_weight(y, x, w.shape, groups=4, padding=1)
    assert calls == ["forward", "backward_input", "backward_weight"]
    assert not conv_simd._is_depthwise(conv_geometry(2, (1, 4, 9, 9), (8, 1, 3, 3), 1, 1, 1, 4), 4, 8)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs a machine with 2 or more cores")
@pytest.mark.parametrize(
    ("d", "x_shape", "k", "kw"),
    [
        (2, (3, 5, 23, 37), 3, dict(padding=1)),  # strips
        (2, (3, 5, 23, 37), 3, dict(padding=2, stride=2, padding_mode="reflect")),  # strips, fold
        (2, (2, 7, 6, 19), 3, dict(padding=2, dilation=2)),  # tiles
        (1, (4, 6, 50), 5, dict(padding=3, stride=2, padding_mode="circular")),
        (3, (2, 3, 6, 9, 11), 3, dict(padding=1)),  # 3-D strips
    ],
)
def test_depthwise_thread_counts_give_identical_bits(d, x_shape, k, kw):
    rng = np.random.default_rng(5)
    c = x_shape[1]
    kw = dict(kw, groups=c)
    x, w, b = (
        rand(rng, x_shape, np.float32),
        rand(rng, (c, 1, *(k,) * d), np.float32),
        rand(rng, (c,), np.float32),
    )
    dy = rand(rng, getattr(fc, f"conv{d}d")(x, w, b, **kw).shape, np.float32)
    assert_same_bits_for_thread_counts(d, x, w, b, dy, kw)


@pytest.mark.parametrize("stride", [1, 2])
def test_weight_strips_same_bits_with_all_width_taps_in_registers(monkeypatch, stride):
    """The backward-weight strips with every width tap's sums in registers (3x3 on AVX-512)
    add the same products in the same order as one width tap at a time: the same bits."""
    monkeypatch.setattr(simd, "ISA", "avx512")
    rng = np.random.default_rng(7)
    x, dy = rand(rng, (2, 3, 19, 21), np.float32), None
    w_shape = (3, 1, 3, 3)
    dy = rand(
        rng,
        fc.conv2d(x, rand(rng, w_shape, np.float32), stride=stride, padding=1, groups=3).shape,
        np.float32,
    )
    got = {}
    for every in (True, False):
        if not every:
            monkeypatch.setattr(simd, "fits", lambda vectors: False)
        conv_depthwise._kernels.cache_clear()
        conv_depthwise._forward_plan.cache_clear()
        method = conv_depthwise._forward_plan(conv_geometry(2, x.shape, w_shape, stride, 1, 1, 3).lift3())[0]
        assert method[0] == "strip" and ("c0_0_0" in conv_depthwise._strip_source(*method[1:])) == every
        got[every] = fc.conv2d_backward_weight(dy, x, w_shape, stride=stride, padding=1, groups=3)
    conv_depthwise._kernels.cache_clear()
    conv_depthwise._forward_plan.cache_clear()
    assert np.array_equal(got[True], got[False])


@st.composite
def direct_configs(draw):
    """(d, x_shape, w_shape, kwargs) the direct strips take: 2-D or 3-D, zero padding (any
    amount, also past the kernel's reach, and 'same'), width stride 1, square kernels of 2
    to 5 rows, width and depth dilation, at least 8 output rows."""
    d = draw(st.sampled_from([2, 3]))
    c, n, k = draw(st.sampled_from([1, 3, 17])), draw(st.integers(1, 2)), draw(st.integers(2, 5))
    kernel = (draw(st.integers(1, 3)),) * (d - 2) + (k, k)
    dilation = (draw(st.integers(1, 2)),) * (d - 2) + (1, draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 2)),) * (d - 2) + (draw(st.integers(1, 2)), 1)
    if draw(st.booleans()) and stride == (1,) * d:
        padding = "same"
    else:
        padding = tuple(draw(st.integers(0, k + 1)) for _ in range(d))
    reach = [dil * (kk - 1) + 1 for kk, dil in zip(kernel, dilation, strict=True)]
    size = [draw(st.integers(max(1, reach[0] - 2), 6))] if d == 3 else []
    size.append(draw(st.integers(8 * stride[-2] + reach[-2], 30)))
    size.append(draw(st.integers(max(1, reach[-1] - 2 * k - 2), 40)))
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=c)
    return d, (n, c, *size), (c, 1, *kernel), kw


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=direct_configs(), seed=st.integers(0, 2**32 - 1))
def test_direct_strips_same_bits_as_gathered_strips(monkeypatch, cfg, seed):
    """The strips that read x (or dy) in place, zero padding as masked-off lanes, add the same
    products in the same order as the strips over a gathered, padded plane: the same bits,
    for the forward and the input gradient; and the direct path is the one taken."""
    d, x_shape, w_shape, kw = cfg
    try:
        geom = conv_geometry(d, x_shape, w_shape, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    except ValueError:  # padding past the kernel's reach leaves no output on some axis
        return
    geom = geom.lift3()
    if geom.out_size[1] < 8 or min(geom.out_size) < 1:
        return
    rng = np.random.default_rng(seed)
    x, w, b = (
        rand(rng, x_shape, np.float32),
        rand(rng, w_shape, np.float32),
        rand(rng, (x_shape[1],), np.float32),
    )
    monkeypatch.setattr(simd, "ISA", "avx512")
    got = {}
    for way in ("stream", "direct", "gathered"):  # stream: the direct strips' stores streamed
        conv_depthwise._direct_plan.cache_clear()
        monkeypatch.setattr(layout, "STREAM_BYTES", 0 if way == "stream" else 1 << 62)
        if way == "gathered":
            monkeypatch.setattr(conv_depthwise, "_direct_plan", lambda *args: None)
        else:
            assert conv_depthwise._direct_plan(
                geom.in_size, geom.out_size, geom.kernel, geom.stride, geom.dilation, geom.pad_lo
            )
        y = getattr(fc, f"conv{d}d")(x, w, b, **kw)
        dy = rand(np.random.default_rng(seed + 1), y.shape, np.float32)
        got[way] = y, getattr(fc, f"conv{d}d_backward_input")(dy, w, x_shape, **kw)
    monkeypatch.undo()
    conv_depthwise._direct_plan.cache_clear()
    for way in ("stream", "direct"):
        for new, old in zip(got[way], got["gathered"], strict=True):
            np.testing.assert_array_equal(new, old)
    y = got["direct"][0]
    _assert_close(y, ref.conv(x, w, b, **kw), ref.conv(np.abs(x), np.abs(w), np.abs(b), **kw))


@pytest.mark.parametrize(
    ("shape", "kw"),
    [
        ((2, 3, 26, 45), dict(padding=1)),  # interior strips and vectors beside edge ones
        ((1, 2, 12, 64), dict(padding=0, dilation=(1, 2))),  # no padding: every strip inside
        ((1, 2, 14, 40), dict(padding=(3, 0), dilation=(1, 3))),  # rows outside, columns inside
    ],
)
def test_direct_strips_inside_the_plane_load_plainly(monkeypatch, shape, kw):
    """The direct strips whose taps read only cells inside the plane load without masks:
    the same bits as the gathered strips, for the forward and the input gradient."""
    monkeypatch.setattr(simd, "ISA", "avx512")
    assert "vload(x, p + 0 * W)" in conv_depthwise._direct_source(3, 1, 4)
    rng = np.random.default_rng(5)
    c = shape[1]
    x, w, b = rand(rng, shape, np.float32), rand(rng, (c, 1, 3, 3), np.float32), rand(rng, (c,), np.float32)
    kw = dict(kw, groups=c)
    got = []
    for way in ("direct", "gathered"):
        conv_depthwise._direct_plan.cache_clear()
        if way == "gathered":
            monkeypatch.setattr(conv_depthwise, "_direct_plan", lambda *args: None)
        y = fc.conv2d(x, w, b, **kw)
        dy = rand(np.random.default_rng(6), y.shape, np.float32)
        got.append((y, fc.conv2d_backward_input(dy, w, shape, **kw)))
    monkeypatch.undo()
    conv_depthwise._direct_plan.cache_clear()
    for new, old in zip(*got, strict=True):
        np.testing.assert_array_equal(new, old)


def test_cpu_vendor_reads_proc_cpuinfo(tmp_path):
    """The vendor that decides whether outputs stream (``layout.STREAM_BYTES``) is the
    first ``vendor_id`` line of /proc/cpuinfo; "" without the file."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nvendor_id\t: GenuineIntel\n")
    assert layout.cpu_vendor(str(info)) == "AuthenticAMD"
    assert layout.cpu_vendor(str(tmp_path / "absent")) == ""
    info.write_text("processor\t: 0\n")
    assert layout.cpu_vendor(str(info)) == ""


def test_llc_bytes_reads_the_highest_cache_level(tmp_path):
    """The last-level cache below which outputs never stream (``layout.STREAM_BYTES``) is
    the highest ``level`` among sysfs's cache entries, its ``size`` in K/M/G or bytes;
    unreadable or malformed entries are skipped, and no entries at all give 0."""
    for name, level, size in [("index0", 1, "48K"), ("index2", 2, "2048K"), ("index3", 3, "480M")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "level").write_text(f"{level}\n")
        (tmp_path / name / "size").write_text(f"{size}\n")
    (tmp_path / "index4").mkdir()  # no files: skipped
    (tmp_path / "uevent").write_text("")  # not a folder: skipped
    assert layout.llc_bytes(str(tmp_path)) == 480 << 20
    (tmp_path / "index3" / "size").write_text("many\n")  # malformed: the next level down wins
    assert layout.llc_bytes(str(tmp_path)) == 2048 << 10
    (tmp_path / "index2" / "size").write_text("1048576")
    assert layout.llc_bytes(str(tmp_path)) == 1 << 20
    assert layout.llc_bytes(str(tmp_path / "absent")) == 0


def test_stream_copy_writes_exactly_its_cells():
    """``layout.stream_copy`` from every offset of a 64-byte line, of every length around a
    line: plain stores before the first whole line and after the last, streamed ones
    between; exactly the cells asked for change."""

    @numba.njit
    def copy(dst, d0, src, count):
        layout.stream_copy(dst, d0, src, count)
        simd.fence()

    src = np.arange(1, 81, dtype=np.float32)
    for d0 in range(17):
        for count in (1, 5, 15, 16, 17, 31, 32, 33, 47, 64):
            dst = np.full(120, -1, np.float32)
            copy(dst, d0, src, count)
            want = np.full(120, -1, np.float32)
            want[d0 : d0 + count] = src[:count]
            np.testing.assert_array_equal(dst, want)


def test_lanes_load_reads_exactly_its_lanes(isa):
    """``simd.vload_lanes``: lane i holds src[at + i] where bit i is set, else 0, also where
    at + i lies before or past src (those cells are never read: a fault would crash)."""

    @numba.njit
    def load(dst, src, at, bits):
        simd.vstore(dst, 0, simd.vload_lanes(src, at, bits))

    src = np.arange(1, 41, dtype=np.float32)
    dst = np.empty(16, np.float32)
    for at, bits in ((0, 0xFFFF), (5, 0b1010_0000_0000_0101), (-3, 0xFFF8), (30, 0x03FF), (7, 0)):
        load(dst, src, at, bits)
        want = [src[at + i] if bits >> i & 1 else 0 for i in range(16)]
        np.testing.assert_array_equal(dst, np.array(want, np.float32))
    assert conv_depthwise._inside(-3, 40) == 0xFFF8 and conv_depthwise._inside(30, 40) == 0x03FF
    assert conv_depthwise._inside(-20, 40) == 0 and conv_depthwise._inside(40, 40) == 0
    assert conv_depthwise._inside(0, 5) == 0x1F and conv_depthwise._inside(-2, 5) == 0b111_1100


@pytest.mark.parametrize("n", range(1, 17))
def test_partial_vectors_touch_exactly_their_lanes(n, isa):
    """Loads and stores of the first n lanes (a masked store on AVX-512, plain stores of 8,
    4, 2, 1 lanes on AVX2; both compiled here, for the ISA of the fixture): the n cells
    move, the cells around them stay."""

    @numba.njit  # compiled afresh, under this ISA
    def store_and_load(dst, src, at, n):
        simd.vstore_first(dst, at, simd.vload_first(src, at, n), n)

    src = np.arange(40, dtype=np.float32)
    dst = np.full(40, -1, np.float32)
    store_and_load(dst, src, 5, n)
    want = np.full(40, -1, np.float32)
    want[5 : 5 + n] = src[5 : 5 + n]
    np.testing.assert_array_equal(dst, want)


@numba.njit
def _gather_plane(g, x, plan_maps, ops, L, run):
    map_d, map_h = plan_maps
    if run:
        conv_depthwise._gather_run(g, x.reshape(-1), 0, x.shape[3], x.shape[4], map_d, map_h, ops, L)
    else:
        conv_depthwise._gather(g, x.reshape(-1), 0, x.shape[3], x.shape[4], map_d, map_h, ops, L)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width, stride_w", [(13, 1), (16, 1), (35, 1), (13, 2), (20, 3)])
def test_gather_builds_the_padded_plane(mode, width, stride_w):
    """The plane gather equals the index maps read cell by cell (-1: zero) on every row, also
    where zero padding at width stride 1 takes the whole-vector run (which reads past a row's
    run, masked only at the very end of x: here the plane is all of x)."""
    x = np.random.default_rng(width).standard_normal((1, 1, 1, 5, width)).astype(np.float32)
    geom = conv_geometry(3, x.shape, (1, 1, 1, 3, 3), (1, 1, stride_w), (0, 1, 1), 1, 1, mode)
    method, (map_d, map_h, ops, L, *_) = conv_depthwise._forward_plan(geom)
    run = ops[0, 0] == conv_depthwise._RUN
    assert run == (mode == "zeros" and stride_w == 1)
    g = np.full(len(map_d) * len(map_h) * L + 16, np.nan, np.float32)
    _gather_plane(g, x, (map_d, map_h), ops, L, run)
    Dp, Hp, Wp = conv_depthwise.layout.extents(geom)
    map_w = conv_depthwise.layout.index_maps(geom.in_size, geom.pad_lo, (Dp, Hp, Wp), mode)[2]
    wq = L // stride_w
    cells = np.arange(stride_w)[:, None] + np.arange(wq)[None, :] * stride_w  # as _forward_plan
    table = np.where(cells < Wp, map_w[np.minimum(cells, Wp - 1)], -1).ravel()
    want = np.zeros((len(map_d), len(map_h), L), np.float32)
    for i, j, k in np.ndindex(want.shape):
        if map_d[i] >= 0 and map_h[j] >= 0 and table[k] >= 0:
            want[i, j, k] = x[0, 0, map_d[i], map_h[j], table[k]]
    np.testing.assert_array_equal(g[: want.size].reshape(want.shape), want)
