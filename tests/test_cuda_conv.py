"""CUDA convolution (forward, backward input, weight, bias) through the public functional
API with device arrays, against the CPU backend and the float64 reference.

Runs on the GPU when there is one, else under the CUDA simulator (see ``cuda_target``):
tiny shapes, threads per block shrunk to 7 or 16 so that multi-block grids, partial tiles
and split-K slices all run.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv import config
from tests import cuda_target as ct  # selects the simulator before numba.cuda loads
from tests import reference as ref
from tests.conftest import ints, rand

# (d, x_shape, w_shape, keyword arguments, threads per block)
CASES = [
    (1, (2, 3, 9), (4, 3, 3), dict(stride=2, padding=1), 7),
    (1, (1, 4, 8), (4, 2, 2), dict(dilation=3, padding=2, groups=2, padding_mode="circular"), 16),
    (2, (2, 3, 5, 6), (5, 3, 3, 3), dict(padding=1), 16),
    (2, (2, 3, 5, 6), (4, 3, 2, 3), dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2)), 7),
    (2, (1, 4, 5, 5), (4, 1, 3, 3), dict(padding="same", groups=4), 7),  # depthwise
    (2, (2, 6, 4, 5), (3, 2, 2, 2), dict(stride=2, groups=3, padding=1), 16),
    (2, (1, 2, 5, 4), (3, 2, 3, 3), dict(padding=2, padding_mode="reflect"), 16),
    (2, (2, 2, 4, 4), (2, 2, 3, 2), dict(padding=(1, 3), padding_mode="replicate"), 7),
    (2, (1, 2, 4, 5), (2, 2, 3, 3), dict(stride=2, padding=(2, 1), padding_mode="circular"), 7),
    (3, (1, 2, 3, 4, 4), (3, 2, 2, 3, 2), dict(stride=(1, 2, 1), padding=1), 16),
    (3, (2, 2, 3, 3, 4), (2, 1, 2, 2, 3), dict(groups=2, padding=1, padding_mode="reflect"), 16),
]


def _ids(case):
    d, x_shape, w_shape, kw, threads = case
    args = ",".join(f"{k}={v}" for k, v in kw.items())
    return f"{d}d-x{x_shape}-w{w_shape}-{args}-t{threads}"


def _exact(got, want):
    """Bitwise equality of a CUDA result with a float32 expectation; most outputs non-zero."""
    host = ct.to_host(got)
    assert host.dtype == np.float32 and host.shape == want.shape
    np.testing.assert_array_equal(host, want.astype(np.float32))
    assert np.count_nonzero(want) > want.size // 2, "test data too sparse to show anything"


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_integer_data_matches_cpu_and_reference_bitwise(case, monkeypatch):
    d, x_shape, w_shape, kw, threads = case
    monkeypatch.setattr(config, "CUDA_THREADS", threads)
    rng = np.random.default_rng(len(x_shape) * 100 + threads)
    x, w, b = ints(rng, x_shape), ints(rng, w_shape), ints(rng, (w_shape[0],))
    conv = getattr(fc, f"conv{d}d")
    xg, wg, bg = ct.to_device(x), ct.to_device(w), ct.to_device(b)

    with ct.expect_launch():
        y = conv(xg, wg, bg, **kw)
    want = ref.conv(x, w, b, **kw)
    _exact(y, want)
    _exact(y, conv(x, w, b, **kw))

    dy = ints(rng, want.shape)
    dyg = ct.to_device(dy)
    with ct.expect_launch():
        dx = getattr(fc, f"conv{d}d_backward_input")(dyg, wg, x_shape, **kw)
    _exact(dx, ref.conv_backward_input(dy, w, x_shape, **kw))

    with ct.expect_launch():
        dw = getattr(fc, f"conv{d}d_backward_weight")(dyg, xg, w_shape, **kw)
    _exact(dw, ref.conv_backward_weight(dy, x, w_shape, **kw))

    with ct.expect_launch():
        db = getattr(fc, f"conv{d}d_backward_bias")(dyg)
    _exact(db, dy.sum(axis=tuple(i for i in range(dy.ndim) if i != 1)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_data_within_reference_tolerance(dtype, monkeypatch):
    monkeypatch.setattr(config, "CUDA_THREADS", 16)
    rng = np.random.default_rng(7)
    x, w, b = rand(rng, (2, 4, 5, 6), dtype), rand(rng, (6, 2, 3, 2), dtype), rand(rng, (6,), dtype)
    kw = dict(stride=(1, 2), padding=1, dilation=(2, 1), groups=2, padding_mode="reflect")
    xg, wg = ct.to_device(x), ct.to_device(w)
    y = ct.to_host(fc.conv2d(xg, wg, ct.to_device(b), **kw))
    assert y.dtype == dtype
    want = ref.conv(x, w, b, **kw)
    scale = ref.conv(np.abs(x), np.abs(w), np.abs(b), **kw)  # sum |x * w| per output
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.all(np.abs(y - want) <= rtol * scale)

    dy = rand(rng, want.shape, dtype)
    dyg = ct.to_device(dy)
    dx = ct.to_host(fc.conv2d_backward_input(dyg, wg, x.shape, **kw))
    dw = ct.to_host(fc.conv2d_backward_weight(dyg, xg, w.shape, **kw))
    np.testing.assert_allclose(
        dx, ref.conv_backward_input(dy, w, x.shape, **kw), rtol=rtol * 10, atol=rtol * 10
    )
    np.testing.assert_allclose(
        dw, ref.conv_backward_weight(dy, x, w.shape, **kw), rtol=rtol * 10, atol=rtol * 10
    )


def test_shrunk_threads_run_multi_block_partial_tile_and_split_k_paths(monkeypatch):
    """Tiny shapes still exercise every path once threads per block are shrunk."""
    monkeypatch.setattr(config, "CUDA_THREADS", 7)
    rng = np.random.default_rng(11)
    x, w = ints(rng, (2, 3, 5, 7)), ints(rng, (5, 3, 3, 3))
    xg = ct.to_device(x)
    y = fc.conv2d(xg, ct.to_device(w), padding=1)
    name, grid, block = ct.device.recent[-1]
    t = ct.gemm.tiles(2 * 5 * 7, 5)
    assert block == 4 and grid[0] > 1 and (2 * 5 * 7) % t.bm, (grid, t)  # several blocks, a partial one
    dw = fc.conv2d_backward_weight(y, xg, w.shape, padding=1)
    (_, grid, _), (name, _, _) = ct.device.recent[-2], ct.device.recent[-1]
    assert grid[1] > 1 and grid[2] > 1 and name == "_sum_slabs_kernel", grid  # column blocks, K split
    dy = ct.to_host(y)
    _exact(dw, ref.conv_backward_weight(dy, x, w.shape, padding=1))


def test_unbatched_input_and_results_stay_on_device():
    rng = np.random.default_rng(3)
    x, w = ints(rng, (2, 5, 5)), ints(rng, (3, 2, 2, 2))
    with ct.expect_launch():
        y = fc.conv2d(ct.to_device(x), ct.to_device(w), padding=1)
    _exact(y, ref.conv(x[None], w, padding=1)[0])


def test_results_are_repeatable_bitwise(monkeypatch):
    monkeypatch.setattr(config, "CUDA_THREADS", 7)
    rng = np.random.default_rng(5)
    x, dy = rand(rng, (2, 2, 6, 5), np.float32), rand(rng, (2, 3, 6, 5), np.float32)
    xg, dyg = ct.to_device(x), ct.to_device(dy)
    first = ct.to_host(fc.conv2d_backward_weight(dyg, xg, (3, 2, 3, 3), padding=1))
    again = ct.to_host(fc.conv2d_backward_weight(dyg, xg, (3, 2, 3, 3), padding=1))
    np.testing.assert_array_equal(first, again)


def test_mixed_devices_are_refused():
    x = np.ones((1, 1, 4, 4), np.float32)
    with pytest.raises(TypeError, match="different devices"):
        fc.conv2d(x, ct.to_device(np.ones((1, 1, 2, 2), np.float32)))
