"""max_pool{1,2,3}d and its backward: the explicit-window reference, PyTorch (indices
included), ties, NaN, -inf, ceil_mode edges, finite differences, overlapping windows, the
notes' example, layouts and determinism."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastconv as fc
from tests import reference as ref
from tests.conftest import DTYPES, rand


@st.composite
def pool_configs(draw, dims=(1, 2, 3), dilation=True, padding=True, allow_empty_batch=True):
    """x shape and keyword arguments of a valid pooling: kernel, stride (None or given),
    padding up to half the kernel, dilation, ceil_mode; no window reads only padding."""
    d = draw(st.sampled_from(dims))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(d))
    stride = draw(st.none() | st.tuples(*(st.integers(1, 3) for _ in range(d))))
    pad = tuple(draw(st.integers(0, k // 2 if padding else 0)) for k in kernel)
    dil = tuple(draw(st.integers(1, 2 if dilation else 1)) for _ in range(d))
    size = tuple(draw(st.integers(1, 7)) for _ in range(d))
    ceil_mode = draw(st.booleans())
    kw = dict(kernel_size=kernel, stride=stride, padding=pad, ceil_mode=ceil_mode)
    if dilation:
        kw["dilation"] = dil
    out, windows = ref._pool_windows(size, kernel, stride, pad, dil, ceil_mode)
    assume(min(out) >= 1 and all(cells for _, cells, _ in windows))
    n = draw(st.integers(0 if allow_empty_batch else 1, 2))
    return d, (n, draw(st.integers(1, 3)), *size), kw


def ops(d):
    return getattr(fc, f"max_pool{d}d"), getattr(fc, f"max_pool{d}d_backward")


@settings(max_examples=40, deadline=None)
@given(cfg=pool_configs(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_matches_reference(cfg, dtype, seed):
    """Values and indices exactly as the reference; the backward scatters through them."""
    d, x_shape, kw = cfg
    forward, backward = ops(d)
    rng = np.random.default_rng(seed)
    x = rand(rng, x_shape, dtype)
    y, idx = forward(x, return_indices=True, **kw)
    want, want_idx = ref.max_pool(x, **kw)
    assert y.dtype == dtype and idx.dtype == np.int64
    assert np.array_equal(y, want.astype(dtype)) and np.array_equal(idx, want_idx)
    assert np.array_equal(forward(x, **kw), y)
    g = rand(rng, y.shape, dtype)
    dx = backward(g, idx, x_shape)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, ref.max_pool_backward(g, idx, x_shape), rtol=1e-6, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    cfg=pool_configs(allow_empty_batch=False),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
    values=st.sampled_from(["normal", "ties"]),
)
def test_matches_torch(cfg, dtype, seed, values):
    """Output, indices and gradient identical to PyTorch's, with ties as well."""
    torch = pytest.importorskip("torch")
    d, x_shape, kw = cfg
    forward, backward = ops(d)
    rng = np.random.default_rng(seed)
    x = rand(rng, x_shape, dtype) if values == "normal" else rng.integers(0, 2, x_shape).astype(dtype)
    xt = torch.from_numpy(x).requires_grad_()
    yt, it = getattr(torch.nn.functional, f"max_pool{d}d")(xt, return_indices=True, **kw)
    g = rand(rng, tuple(yt.shape), dtype)
    yt.backward(torch.from_numpy(g))
    y, idx = forward(x, return_indices=True, **kw)
    assert np.array_equal(y, yt.detach().numpy()) and np.array_equal(idx, it.numpy())
    np.testing.assert_allclose(backward(g, idx, x_shape), xt.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_seed_example():
    """The notes' example: 2x2 max pooling with stride 2 on a 4x4 map."""
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32)[None, None]
    y, idx = fc.max_pool2d(x, 2, stride=2, return_indices=True)
    assert np.array_equal(y[0, 0], [[6, 8], [3, 4]])
    assert np.array_equal(idx[0, 0], [[5, 7], [8, 15]])


def test_ties_first_maximum_wins():
    x = np.zeros((1, 1, 4, 4), np.float64)
    y, idx = fc.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    # every window's first in-input cell (scan order), padding never chosen
    assert np.array_equal(idx[0, 0], [[0, 0, 1, 2], [0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10]])


def test_nan_propagates():
    """A window holding NaN yields NaN, its index the window's last NaN (PyTorch's rule)."""
    x = np.array([[[1.0, np.nan, 3.0, np.nan, 2.0, 7.0, 0.0, np.nan]]], np.float32)
    y, idx = fc.max_pool1d(x, 5, stride=3, return_indices=True)
    assert np.isnan(y[0, 0, 0]) and idx[0, 0, 0] == 3
    assert np.isnan(y[0, 0, 1]) and idx[0, 0, 1] == 7  # window 3..7: NaN at 3 and 7
    want_y, want_idx = ref.max_pool(x, 5, 3)
    assert np.array_equal(idx, want_idx) and np.array_equal(y, want_y, equal_nan=True)


def test_neg_inf_only_windows():
    """-inf everywhere: -inf out, index of the window's first input cell, never padding."""
    x = np.full((1, 2, 3, 5), -np.inf, np.float32)
    y, idx = fc.max_pool2d(x, (3, 2), stride=2, padding=1, ceil_mode=True, return_indices=True)
    assert np.all(y == -np.inf)
    want_y, want_idx = ref.max_pool(x, (3, 2), 2, 1, ceil_mode=True)
    assert np.array_equal(idx, want_idx)
    assert np.array_equal(idx[0, 0], [[0, 1, 3], [5, 6, 8]])


@pytest.mark.parametrize(
    "size, kernel, stride, padding, want",
    [
        (5, 2, 2, 1, 3),  # a 4th window would start at the right padding: dropped
        (6, 2, 2, 1, 4),  # the last window starts on the last input cell, half in the padding
        (4, 3, 2, 1, 3),  # the last window runs past the right padding
        (5, 3, 3, 0, 2),  # no padding: the last window holds 2 cells
        (1, 3, 2, 1, 1),
    ],
)
def test_ceil_mode_edges(size, kernel, stride, padding, want):
    x = np.arange(size, dtype=np.float64)[None, None] * np.array([1, -1])[None, :, None]
    y, idx = fc.max_pool1d(x, kernel, stride, padding, ceil_mode=True, return_indices=True)
    assert y.shape[-1] == want
    want_y, want_idx = ref.max_pool(x, kernel, stride, padding, ceil_mode=True)
    assert np.array_equal(y, want_y) and np.array_equal(idx, want_idx)
    torch = pytest.importorskip("torch")
    yt, it = torch.nn.functional.max_pool1d(
        torch.from_numpy(x), kernel, stride, padding, ceil_mode=True, return_indices=True
    )
    assert np.array_equal(y, yt.numpy()) and np.array_equal(idx, it.numpy())


@pytest.mark.parametrize(
    "d, kw",
    [
        (1, dict(kernel_size=3, stride=1)),
        (2, dict(kernel_size=3, stride=2, padding=1)),
        (3, dict(kernel_size=(2, 3, 2), stride=(1, 2, 1), dilation=(1, 1, 2))),
    ],
)
def test_finite_differences(d, kw):
    """On distinct values the max is locally linear: central differences match exactly;
    overlapping windows (kernel > stride) send several gradients to one cell."""
    forward, backward = ops(d)
    rng = np.random.default_rng(d)
    shape = (2, 2, *{1: (9,), 2: (7, 6), 3: (4, 5, 5)}[d])
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01 + rng.uniform(0, 1e-3, shape)
    y, idx = forward(x, return_indices=True, **kw)
    g = rand(rng, y.shape, np.float64)
    dx = backward(g, idx, shape)
    assert np.bincount(idx.ravel()).max() > 1  # some cell wins several windows
    for i in np.union1d(rng.choice(x.size, 20, replace=False), np.flatnonzero(dx)[:20]):
        step = np.zeros(x.size)
        step[i] = 1e-5
        step = step.reshape(shape)
        num = (np.vdot(forward(x + step, **kw), g) - np.vdot(forward(x - step, **kw), g)) / 2e-5
        assert abs(num - dx.flat[i]) <= 1e-8 * max(1.0, abs(num))


def test_overlapping_windows_accumulate():
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 2] = 1.0  # the maximum of all 9 windows of a 3x3/s1 pooling
    y, idx = fc.max_pool2d(x, 3, stride=1, return_indices=True)
    g = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    dx = fc.max_pool2d_backward(g, idx, x.shape)
    assert dx[0, 0, 2, 2] == 45 and np.count_nonzero(dx) == 1


def test_unbatched_layouts_no_mutation_and_determinism():
    rng = np.random.default_rng(5)
    x = rand(rng, (3, 9, 8), np.float32)
    want, want_idx = fc.max_pool2d(x[None], 3, 2, 1, return_indices=True)
    readonly = x.copy()
    readonly.flags.writeable = False
    for view in (x, np.asfortranarray(x), np.flip(np.flip(x, -1).copy(), -1), readonly):
        before = view.copy()
        y, idx = fc.max_pool2d(view, 3, 2, 1, return_indices=True)
        assert np.array_equal(y, want[0]) and np.array_equal(idx, want_idx[0])
        assert np.array_equal(view, before)
    g = rand(rng, y.shape, np.float32)
    dx = fc.max_pool2d_backward(g, idx, x.shape)
    assert dx.shape == x.shape
    threads = numba.get_num_threads()
    try:
        for t in range(1, threads + 1):
            numba.set_num_threads(t)  # the forward's chunks of rows depend on the thread count
            y_t, idx_t = fc.max_pool2d(x, 3, 2, 1, return_indices=True)
            assert np.array_equal(y_t, y) and np.array_equal(idx_t, idx)
            assert np.array_equal(fc.max_pool2d(x, 3, 2, 1), y)
            assert np.array_equal(fc.max_pool2d_backward(g, idx, x.shape), dx)
    finally:
        numba.set_num_threads(threads)


def test_empty_batch():
    y, idx = fc.max_pool3d(np.zeros((0, 2, 4, 4, 4)), 2, return_indices=True)
    assert y.shape == idx.shape == (0, 2, 2, 2, 2)
    assert fc.max_pool3d_backward(y, idx, (0, 2, 4, 4, 4)).shape == (0, 2, 4, 4, 4)
