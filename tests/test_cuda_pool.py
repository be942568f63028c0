"""CUDA pooling (max, average, adaptive, Lp, unpooling) and transposed convolution through
the public functional API with device arrays, against the CPU backend (whose own tests check
it against the float64 reference and PyTorch).

Runs on the GPU when there is one, else under the CUDA simulator (see ``cuda_target``):
tiny shapes, threads per block shrunk to 7 so that multi-block grids and tails run.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv import config
from tests import cuda_target as ct  # selects the simulator before numba.cuda loads
from tests.conftest import ints


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch):
    monkeypatch.setattr(config, "CUDA_THREADS", 7)


def _same(got, want):
    host = ct.to_host(got)
    assert host.dtype == want.dtype and host.shape == want.shape
    np.testing.assert_array_equal(host, want)


MAX_CASES = [
    (1, (2, 3, 9), dict(kernel_size=3, stride=2, padding=1)),
    (2, (2, 2, 5, 6), dict(kernel_size=2)),
    (2, (1, 3, 5, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, (2, 2, 6, 5), dict(kernel_size=2, stride=1, dilation=2)),
    (3, (1, 2, 3, 4, 5), dict(kernel_size=(1, 2, 3), stride=(1, 2, 2), padding=(0, 1, 1))),
]


@pytest.mark.parametrize("d, shape, kw", MAX_CASES)
def test_max_pool_values_indices_and_backward_match_cpu(d, shape, kw):
    rng = np.random.default_rng(len(shape))
    x = ints(rng, shape)
    x.reshape(-1)[[1, 7]] = np.nan  # NaN wins, as in PyTorch
    with ct.expect_launch():
        y, idx = getattr(fc, f"max_pool{d}d")(ct.to_device(x), return_indices=True, **kw)
    want, want_idx = getattr(fc, f"max_pool{d}d")(x, return_indices=True, **kw)
    np.testing.assert_array_equal(ct.to_host(y), want)
    _same(idx, want_idx)
    dy = ints(rng, want.shape)
    with ct.expect_launch():
        dx = getattr(fc, f"max_pool{d}d_backward")(ct.to_device(dy), idx, shape)
    _same(dx, getattr(fc, f"max_pool{d}d_backward")(dy, want_idx, shape))


AVG_CASES = [
    (1, (2, 3, 8), dict(kernel_size=3, stride=2, padding=1)),
    (2, (2, 2, 5, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, (1, 3, 5, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    (2, (2, 2, 4, 6), dict(kernel_size=2, divisor_override=3)),
    (3, (1, 2, 3, 4, 5), dict(kernel_size=2, stride=1, padding=1)),
]


@pytest.mark.parametrize("d, shape, kw", AVG_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avg_pool_and_backward_match_cpu(d, shape, kw, dtype):
    rng = np.random.default_rng(len(shape))
    x = ints(rng, shape, dtype)
    with ct.expect_launch():
        y = getattr(fc, f"avg_pool{d}d")(ct.to_device(x), **kw)
    want = getattr(fc, f"avg_pool{d}d")(x, **kw)
    np.testing.assert_allclose(ct.to_host(y), want, rtol=1e-6 if dtype == np.float32 else 1e-15)
    dy = ints(rng, want.shape, dtype)
    with ct.expect_launch():
        dx = getattr(fc, f"avg_pool{d}d_backward")(ct.to_device(dy), shape, **kw)
    np.testing.assert_allclose(
        ct.to_host(dx),
        getattr(fc, f"avg_pool{d}d_backward")(dy, shape, **kw),
        rtol=1e-6 if dtype == np.float32 else 1e-15,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "d, shape, size", [(1, (2, 3, 7), 3), (2, (1, 2, 5, 7), (3, 4)), (3, (1, 2, 3, 4, 5), (2, 3, 2))]
)
def test_adaptive_pooling_matches_cpu(d, shape, size):
    rng = np.random.default_rng(d)
    x = ints(rng, shape)
    with ct.expect_launch():
        y = getattr(fc, f"adaptive_avg_pool{d}d")(ct.to_device(x), size)
    want = getattr(fc, f"adaptive_avg_pool{d}d")(x, size)
    np.testing.assert_allclose(ct.to_host(y), want, rtol=1e-6)
    dy = ints(rng, want.shape)
    dx = getattr(fc, f"adaptive_avg_pool{d}d_backward")(ct.to_device(dy), shape)
    np.testing.assert_allclose(
        ct.to_host(dx), getattr(fc, f"adaptive_avg_pool{d}d_backward")(dy, shape), rtol=1e-6
    )
    y, idx = getattr(fc, f"adaptive_max_pool{d}d")(ct.to_device(x), size, return_indices=True)
    want, want_idx = getattr(fc, f"adaptive_max_pool{d}d")(x, size, return_indices=True)
    _same(y, want)
    _same(idx, want_idx)


def test_lp_pool_matches_cpu():
    rng = np.random.default_rng(4)
    x = np.abs(rng.standard_normal((2, 2, 5, 6))).astype(np.float32) + np.float32(0.25)
    kw = dict(norm_type=3.0, kernel_size=2, stride=(2, 1), ceil_mode=True)
    with ct.expect_launch():
        y = fc.lp_pool2d(ct.to_device(x), **kw)
    want = fc.lp_pool2d(x, **kw)
    np.testing.assert_allclose(ct.to_host(y), want, rtol=1e-5)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    dx = fc.lp_pool2d_backward(ct.to_device(dy), ct.to_device(x), **kw)
    np.testing.assert_allclose(ct.to_host(dx), fc.lp_pool2d_backward(dy, x, **kw), rtol=1e-4, atol=1e-6)


def test_max_unpool_and_backward_match_cpu():
    rng = np.random.default_rng(5)
    x = ints(rng, (2, 3, 4, 6))
    y, idx = fc.max_pool2d(x, 2, return_indices=True)
    with ct.expect_launch():
        u = fc.max_unpool2d(ct.to_device(y), ct.to_device(idx), 2)
    want = fc.max_unpool2d(y, idx, 2)
    _same(u, want)
    du = ints(rng, want.shape)
    with ct.expect_launch():
        dy = fc.max_unpool2d_backward(ct.to_device(du), ct.to_device(idx))
    _same(dy, fc.max_unpool2d_backward(du, idx))


TRANSPOSE_CASES = [
    (1, (2, 3, 5), (3, 2, 3), dict(stride=2, padding=1, output_padding=1)),
    (2, (1, 4, 3, 4), (4, 3, 3, 2), dict(stride=(2, 1), padding=(1, 0), groups=2, dilation=(1, 2))),
    (3, (1, 2, 2, 3, 2), (2, 2, 2, 2, 2), dict(stride=2)),
]


@pytest.mark.parametrize("d, x_shape, w_shape, kw", TRANSPOSE_CASES)
def test_conv_transpose_matches_cpu_bitwise(d, x_shape, w_shape, kw):
    rng = np.random.default_rng(d)
    x, w = ints(rng, x_shape), ints(rng, w_shape)
    b = ints(rng, (w_shape[1] * kw.get("groups", 1),))
    op = getattr(fc, f"conv_transpose{d}d")
    xg, wg = ct.to_device(x), ct.to_device(w)
    with ct.expect_launch():
        y = op(xg, wg, ct.to_device(b), **kw)
    want = op(x, w, b, **kw)
    _same(y, want)
    dy = ints(rng, want.shape)
    dyg = ct.to_device(dy)
    _same(
        getattr(fc, f"conv_transpose{d}d_backward_input")(dyg, wg, x_shape, **kw),
        getattr(fc, f"conv_transpose{d}d_backward_input")(dy, w, x_shape, **kw),
    )
    _same(
        getattr(fc, f"conv_transpose{d}d_backward_weight")(dyg, xg, w_shape, **kw),
        getattr(fc, f"conv_transpose{d}d_backward_weight")(dy, x, w_shape, **kw),
    )
