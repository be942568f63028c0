"""The CPU pooling fast paths, each against an exact expectation: average pooling whose windows
tile the input (kernel == stride, no padding; global pooling is one window per plane), max
pooling's backward as a scatter-add through any in-range indices (repeats add up), and the
memoised pooling geometry (validation unchanged)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv import shapes
from fastconv.backends.cpu import pool as cpu_pool
from fastconv.functional import pool as fpool
from tests import reference as ref
from tests.conftest import DTYPES, ints, rand


@st.composite
def tiled_configs(draw):
    """(d, x shape, kernel, keyword arguments) of an average pooling whose windows tile the
    input: size = out*kernel + tail per axis (tail < kernel: cells no window reaches)."""
    d = draw(st.sampled_from([1, 2, 3]))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(d))
    size = tuple(draw(st.integers(1, 3)) * k + draw(st.integers(0, k - 1)) for k in kernel)
    stride = draw(st.sampled_from([None, kernel, kernel[0] if len(set(kernel)) == 1 else kernel]))
    kw = dict(
        kernel_size=kernel,
        stride=stride,
        count_include_pad=draw(st.booleans()),
        divisor_override=draw(st.sampled_from([None, 3, -2])),
    )
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *size)
    return d, shape, kernel, kw


def block_sums(x, kernel):
    """x (N, C, *size) -> float64 sums over the kernel blocks tiling it (tail dropped)."""
    out = [n // k for n, k in zip(x.shape[2:], kernel, strict=True)]
    x = x[(..., *(slice(o * k) for o, k in zip(out, kernel, strict=True)))].astype(np.float64)
    split = [a for o, k in zip(out, kernel, strict=True) for a in (o, k)]
    return x.reshape(*x.shape[:2], *split).sum(axis=tuple(range(3, 2 + 2 * len(kernel), 2)))


def spread(g, kernel, size):
    """g (N, C, *out) repeated over each kernel block, zero on the tail: (N, C, *size)."""
    for axis, k in enumerate(kernel):
        g = np.repeat(g, k, axis=2 + axis)
    dx = np.zeros((*g.shape[:2], *size), g.dtype)
    dx[(..., *(slice(n) for n in g.shape[2:]))] = g
    return dx


@settings(max_examples=40, deadline=None)
@given(cfg=tiled_configs(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_tiled_avg_pool_is_exact(cfg, dtype, seed):
    """Small integers sum exactly, so the forward is bitwise (sum / divisor), correctly rounded
    (no reciprocal), NaN and inf propagating; the backward is bitwise dy / divisor on every
    cell of its block and 0 on the tail."""
    d, shape, kernel, kw = cfg
    geom = fpool.lift3(fpool.pool_geometry(d, shape, kernel, kw["stride"], 0))
    assert cpu_pool._tile(geom) is not None  # the fast path runs
    forward, backward = getattr(fc, f"avg_pool{d}d"), getattr(fc, f"avg_pool{d}d_backward")
    rng = np.random.default_rng(seed)
    x = ints(rng, shape, dtype)
    if rng.integers(2):
        x.flat[rng.integers(x.size, size=2)] = rng.choice([np.nan, np.inf, -np.inf], 2)
    div = dtype(kw["divisor_override"] or np.prod(kernel))
    with np.errstate(invalid="ignore"):
        want = block_sums(x, kernel).astype(dtype) / div
    y = forward(x, **kw)
    assert y.dtype == dtype and np.array_equal(y, want, equal_nan=True)
    g = ints(rng, y.shape, dtype)
    dx = backward(g, shape, **kw)
    assert dx.dtype == dtype and np.array_equal(dx, spread(g / div, kernel, shape[2:]))


@settings(max_examples=20, deadline=None)
@given(cfg=tiled_configs(), ceil_mode=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_tiled_avg_pool_matches_reference(cfg, ceil_mode, seed):
    """Random values within rounding of the reference; with ceil_mode a tail becomes a clipped
    window and the general kernel takes over."""
    d, shape, kernel, kw = cfg
    kw = {**kw, "ceil_mode": ceil_mode}
    rng = np.random.default_rng(seed)
    x = rand(rng, shape, np.float32)
    y = getattr(fc, f"avg_pool{d}d")(x, **kw)
    scale = np.abs(ref.avg_pool(np.abs(x), **kw))
    assert np.all(np.abs(y - ref.avg_pool(x, **kw)) <= 1e-6 * scale + np.finfo(np.float32).tiny)


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool(d, dtype):
    """kernel_size = the input size and adaptive output 1: one window per plane, summed in one
    contiguous pass; float layouts, unbatched input and the backward's broadcast."""
    rng = np.random.default_rng(d)
    size = {1: (13,), 2: (7, 7), 3: (3, 4, 5)}[d]
    x = ints(rng, (3, 5, *size), dtype)
    want = block_sums(x, size).astype(dtype) / dtype(np.prod(size))
    avg, avg_bwd = getattr(fc, f"avg_pool{d}d"), getattr(fc, f"avg_pool{d}d_backward")
    adaptive = getattr(fc, f"adaptive_avg_pool{d}d")
    for view in (x, np.asfortranarray(x)):
        assert np.array_equal(avg(view, size), want)
        assert np.array_equal(adaptive(view, 1), want)
    assert np.array_equal(avg(x[0], size), want[0])
    assert np.array_equal(avg(x, size, divisor_override=-3), block_sums(x, size).astype(dtype) / dtype(-3))
    y = rand(rng, (3, 5, *size), dtype)
    tol = {np.float32: 1e-6, np.float64: 1e-13}[dtype] * ref.avg_pool(np.abs(y), size)
    assert np.all(np.abs(avg(y, size) - ref.avg_pool(y, size)) <= tol)
    g = rand(rng, want.shape, dtype)
    want_dx = np.broadcast_to(g / dtype(np.prod(size)), x.shape)
    assert np.array_equal(avg_bwd(g, x.shape, size), want_dx)
    assert np.array_equal(getattr(fc, f"adaptive_avg_pool{d}d_backward")(g, x.shape), want_dx)


def test_adaptive_avg_pool_tiles_when_the_output_divides_the_input():
    rng = np.random.default_rng(3)
    x = ints(rng, (2, 3, 6, 8), np.float32)
    geom = fpool.lift3(shapes.adaptive_pool_geometry(2, x.shape, (3, 2)))
    assert cpu_pool._tile(geom) == (1, 2, 4)
    assert np.array_equal(fc.adaptive_avg_pool2d(x, (3, 2)), block_sums(x, (2, 4)).astype(np.float32) / 8)


def test_fast_paths_are_deterministic_across_thread_counts():
    rng = np.random.default_rng(7)
    x = rand(rng, (2, 8, 12, 10), np.float32)
    y, idx = fc.max_pool2d(x, 3, 2, 1, return_indices=True)
    g = rand(rng, y.shape, np.float32)
    calls = [
        lambda: fc.max_pool2d(x, 3, 2, 1),
        lambda: fc.max_pool2d(x, 2, return_indices=True)[1],
        lambda: fc.avg_pool2d(x, 2),
        lambda: fc.avg_pool2d(x, (3, 4)),
        lambda: fc.avg_pool2d(x, (12, 10)),
        lambda: fc.avg_pool2d_backward(g[:, :, :2, :2], x.shape, (5, 5)),
        lambda: fc.avg_pool2d_backward(x, x.shape, 1),
        lambda: fc.max_pool2d_backward(g, idx, x.shape),
    ]
    threads = numba.get_num_threads()
    try:
        want = [f() for f in calls]
        for t in range(1, threads + 1):
            numba.set_num_threads(t)
            assert all(np.array_equal(f(), w) for f, w in zip(calls, want, strict=True))
    finally:
        numba.set_num_threads(threads)


# -- max pooling's forward: windows inside the row read without bounds checks --


@pytest.mark.parametrize("stride, dilation", [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (4, 2)])
@settings(max_examples=12, deadline=None)
@given(
    kernel=st.integers(1, 4),
    pad=st.integers(0, 2),
    width=st.integers(16, 40),
    ceil_mode=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_max_pool_interior_windows(stride, dilation, kernel, pad, width, ceil_mode, seed):
    """Rows wide enough for edge and interior windows (stride 1, stride 2 with taps in pairs or
    one by one, other strides: different loops), few distinct values (ties), NaN and -inf:
    values and indices exactly as the reference; without indices the same values."""
    pad = min(pad, kernel // 2)
    kw = dict(kernel_size=(2, kernel), stride=(1, stride), padding=(0, pad), dilation=(1, dilation))
    out, windows = ref._pool_windows((3, width), (2, kernel), (1, stride), (0, pad), (1, dilation), ceil_mode)
    assume(min(out) >= 1 and all(cells for _, cells, _ in windows))
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (2, 2, 3, width)).astype(np.float32)
    x.flat[rng.integers(x.size, size=4)] = rng.choice([np.nan, -np.inf], 4)
    y, idx = fc.max_pool2d(x, ceil_mode=ceil_mode, return_indices=True, **kw)
    want, want_idx = ref.max_pool(x, ceil_mode=ceil_mode, **kw)
    assert np.array_equal(y, want, equal_nan=True) and np.array_equal(idx, want_idx)
    assert np.array_equal(fc.max_pool2d(x, ceil_mode=ceil_mode, **kw), y, equal_nan=True)
    geom = fpool.lift3(fpool.pool_geometry(2, x.shape, (2, kernel), (1, stride), (0, pad), (1, dilation)))
    assert cpu_pool._interior_w(geom)[2] > cpu_pool._interior_w(geom)[1]  # the interior path runs


def test_max_pool_signed_zero_ties_keep_the_first():
    """Ties between -0.0 and 0.0 keep the first in scan order, value and index, as PyTorch."""
    x = np.zeros((1, 1, 2, 12), np.float32)
    x[0, 0, 0, ::2] = -0.0
    y, idx = fc.max_pool2d(x, 2, return_indices=True)
    assert np.all(np.signbit(y)) and np.array_equal(idx[0, 0, 0], np.arange(0, 12, 2))
    y = fc.max_pool2d(-x, 2)
    assert not np.any(np.signbit(y))


# -- max pooling's backward: a scatter-add through any in-range indices --


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["random", "one_cell", "pooled"])
def test_max_pool_backward_adds_repeated_indices(dtype, kind):
    """Bitwise as np.add.at (repeats add up in order), NaN and inf in grad_output included,
    strided grad_output and indices."""
    rng = np.random.default_rng(11)
    in_shape, out_shape = (2, 3, 6, 5), (2, 3, 4, 4)
    plane = 30
    if kind == "random":
        idx = rng.integers(0, plane, (2, 3, 4, 8))[..., ::2]  # a strided view
    elif kind == "one_cell":
        idx = np.full(out_shape, plane - 1, np.int64)
    else:  # overlapping windows of a real pooling: repeats where windows share a maximum
        idx = fc.max_pool2d(ints(rng, in_shape, dtype), 3, (1, 1), 1, return_indices=True)[1][..., 1:5, 1:5]
    g = rand(rng, (2, 3, 4, 8), dtype)[..., 1::2]
    g[0, 0, 0, :2] = [np.nan, np.inf]
    want = np.zeros((6, 30), dtype)
    np.add.at(want, (np.arange(6)[:, None], idx.reshape(6, -1)), g.reshape(6, -1))
    dx = fc.max_pool2d_backward(g, idx, in_shape)
    assert dx.dtype == dtype and np.array_equal(dx, want.reshape(in_shape), equal_nan=True)
    np.testing.assert_allclose(dx, ref.max_pool_backward(g, idx, in_shape), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "bad, found", [(30, 30), (-1, -1), (-(2**63), -(2**63)), (2**62, 2**62), ((-5, 40), -5)]
)
def test_max_pool_backward_index_range(bad, found):
    """One unsigned pass finds every out-of-range index; the message names the worst."""
    idx = np.zeros((1, 1, 2, 2), np.int64)
    idx.flat[: np.size(bad)] = bad
    with pytest.raises(ValueError, match=rf"indices must lie in \[0, 30\).*found {found}$"):
        fc.max_pool2d_backward(np.ones((1, 1, 2, 2)), idx, (1, 1, 5, 6))
    idx[:] = 29  # the last cell is fine
    assert fc.max_pool2d_backward(np.ones((1, 1, 2, 2)), idx, (1, 1, 5, 6))[0, 0, 4, 5] == 4


G, IDX = np.ones((2, 3, 3, 3), np.float32), np.zeros((2, 3, 3, 3), np.int64)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: fc.max_pool2d_backward(G, IDX + 36, (2, 3, 6, 6)),
            r"\[0, 36\) \(flat positions in the input planes\), found 36$",
        ),
        (lambda: fc.max_pool2d_backward(G, IDX - 1, (2, 3, 6, 6)), r"\[0, 36\).*found -1$"),
        (lambda: fc.adaptive_max_pool2d_backward(G, IDX + 4, (2, 3, 2, 2)), r"\[0, 4\).*found 4$"),
        (
            lambda: fc.max_unpool2d(G, IDX + 36, 2),
            r"\[0, 36\) \(flat positions in the output planes of size \(6, 6\)\)",
        ),
        (
            lambda: fc.max_unpool2d_backward(np.ones((2, 3, 6, 6)), IDX + 36),
            r"\[0, 36\).*planes of grad_output",
        ),
    ],
)
def test_index_range_checked_by_the_kernels(call, message):
    """The range of pooling indices is checked by the index kernels as they read them (not in
    a pass of its own): an index out of range raises, naming it, and returns nothing."""
    with pytest.raises(ValueError, match=r"indices must lie in " + message):
        call()


@pytest.mark.parametrize("kernel", ["scatter_add", "scatter_add_stream", "scatter", "gather"])
def test_index_kernels_skip_and_count_out_of_range(kernel):
    """Each index kernel skips an index outside its row (never touching memory there), does
    the rest, and returns how many it skipped: negative ones and huge ones alike."""
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 7, (3, 6))
    idx[0, 1], idx[1, 4], idx[2, 0] = -1, 7, -(2**63)
    ok = (idx >= 0) & (idx < 7)
    src = rng.random((3, 6 if kernel != "gather" else 7)).astype(np.float32)
    out = np.full((3, 7 if kernel != "gather" else 6), np.nan, np.float32)
    skipped = getattr(cpu_pool, f"_{kernel}_kernel")(out, src, idx)
    assert skipped == 3
    if kernel == "gather":
        want = np.where(ok, np.take_along_axis(src, np.where(ok, idx, 0), 1), 0)
    else:
        want = np.zeros((3, 7), np.float32)
        for p, j in zip(*np.nonzero(ok), strict=True):
            add = kernel.startswith("scatter_add")
            want[p, idx[p, j]] = want[p, idx[p, j]] + src[p, j] if add else src[p, j]
    assert np.array_equal(out, want)


# -- the memoised geometry --


def test_memoised_geometry_keeps_validation():
    """Arguments equal to cached ones but of another type are validated afresh and refused."""
    x = np.zeros((1, 2, 6, 6), np.float32)
    y = fc.max_pool2d(x, 2)
    assert fpool.pool_geometry(2, x.shape, (2, 2), None, 0) is fpool.pool_geometry(
        2, (5, 1, 6, 6), [2, 2], None, 0
    )
    for kernel in (2.0, (2, 2.0), True, (True, 2), np.array([2, 2])):
        with pytest.raises(TypeError, match="kernel_size"):
            fc.max_pool2d(x, kernel)
    fc.max_pool2d(x, 1)
    with pytest.raises(TypeError, match=r"kernel_size must be an int, got True"):
        fc.max_pool2d(x, True)
    with pytest.raises(TypeError, match="ceil_mode must be True or False, got 1"):
        fc.max_pool2d(x, 2, ceil_mode=1)
    with pytest.raises(ValueError, match="non-empty spatial axes"):
        fc.max_pool2d(x[:, :, :0], 2)
    assert np.array_equal(fc.max_pool2d(x, np.int64(2), stride=(np.int64(2), 2)), y)
    assert np.array_equal(fc.max_pool2d(x, [2, 2], ceil_mode=np.bool_(False)), y)
