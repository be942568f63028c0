"""max_unpool{1,2,3}d and its backward: the reference, PyTorch, round trips with max_pool
and the adjoint identity (unpooling is linear in x)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv as fc
from tests import reference as ref
from tests.conftest import DTYPES, rand
from tests.test_pool_max import pool_configs


def ops(d):
    return getattr(fc, f"max_unpool{d}d"), getattr(fc, f"max_unpool{d}d_backward")


def _unpool_kw(kw):
    return {k: kw[k] for k in ("kernel_size", "stride", "padding")}


@settings(max_examples=40, deadline=None)
@given(cfg=pool_configs(dilation=False), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_matches_reference_and_adjoint(cfg, dtype, seed):
    """Indices from max_pool (overlapping windows give duplicates: the last write wins)."""
    d, x_shape, kw = cfg
    unpool, backward = ops(d)
    rng = np.random.default_rng(seed)
    x = rand(rng, x_shape, dtype)
    pooled, idx = getattr(fc, f"max_pool{d}d")(x, return_indices=True, **kw)
    ukw = {**_unpool_kw(kw), "output_size": x_shape[2:]}
    y = unpool(pooled, idx, **ukw)
    assert y.dtype == dtype and y.shape == x_shape
    assert np.array_equal(y, ref.max_unpool(pooled, idx, x_shape).astype(dtype))
    kept = y != 0
    assert np.array_equal(y[kept], x[kept])  # every unpooled value sits where it came from
    g = rand(rng, x_shape, np.float64)
    dx = backward(g, idx)
    assert dx.shape == pooled.shape
    planes = idx.reshape(x_shape[0] * x_shape[1], -1) if idx.size else idx.reshape(0, 0)
    g_planes = g.reshape(planes.shape[0], -1) if g.size else g.reshape(0, 0)
    assert np.array_equal(dx.ravel(), np.take_along_axis(g_planes, planes, -1).ravel())
    if all(len(set(p)) == len(p) for p in planes):  # no index repeats: unpooling is injective
        v = rng.standard_normal(pooled.shape)
        lhs = np.vdot(ref.max_unpool(v, idx, x_shape), g)
        assert abs(lhs - np.vdot(v, dx)) <= 1e-12 * max(1.0, np.abs(g).sum())


@settings(max_examples=20, deadline=None)
@given(cfg=pool_configs(dilation=False, allow_empty_batch=False), seed=st.integers(0, 2**32 - 1))
def test_matches_torch(cfg, seed):
    torch = pytest.importorskip("torch")
    d, x_shape, kw = cfg
    unpool, backward = ops(d)
    rng = np.random.default_rng(seed)
    x = rand(rng, x_shape, np.float64)
    pooled, idx = getattr(fc, f"max_pool{d}d")(x, return_indices=True, **kw)
    ukw = {**_unpool_kw(kw), "output_size": x_shape[2:]}
    pt = torch.from_numpy(pooled).requires_grad_()
    yt = getattr(torch.nn.functional, f"max_unpool{d}d")(pt, torch.from_numpy(idx), **ukw)
    g = rand(rng, x_shape, np.float64)
    yt.backward(torch.from_numpy(g))
    assert np.array_equal(unpool(pooled, idx, **ukw), yt.detach().numpy())
    assert np.array_equal(backward(g, idx), pt.grad.numpy())


def test_default_output_size_and_unbatched():
    x = np.array([[[1.0, 2.0]]])
    idx = np.array([[[1, 3]]])
    y = fc.max_unpool1d(x, idx, 2)  # default size (2 - 1)*2 + 2 = 4
    assert np.array_equal(y, [[[0.0, 1.0, 0.0, 2.0]]])
    assert np.array_equal(fc.max_unpool1d(x[0], idx[0], 2, output_size=(5,)), [[0.0, 1.0, 0.0, 2.0, 0.0]])
    assert np.array_equal(fc.max_unpool1d_backward(np.arange(4.0)[None], idx[0]), [[1.0, 3.0]])


def test_layouts_and_no_mutation():
    """Fortran-order and read-only values and indices give the same bits; nothing is mutated."""
    rng = np.random.default_rng(8)
    x = rand(rng, (2, 3, 6, 5), np.float32)
    pooled, idx = fc.max_pool2d(x, 2, ceil_mode=True, return_indices=True)
    want = fc.max_unpool2d(pooled, idx, 2, output_size=x.shape)
    g = rand(rng, x.shape, np.float32)
    want_dx = fc.max_unpool2d_backward(g, idx)
    want_pool_dx = fc.max_pool2d_backward(pooled, idx, x.shape)
    for a, i in ((np.asfortranarray(pooled), np.asfortranarray(idx)), (pooled.copy(), idx.copy())):
        a.flags.writeable = i.flags.writeable = False
        assert np.array_equal(fc.max_unpool2d(a, i, 2, output_size=x.shape), want)
        assert np.array_equal(fc.max_unpool2d_backward(g, i), want_dx)
        assert np.array_equal(fc.max_pool2d_backward(a, i, x.shape), want_pool_dx)
        assert np.array_equal(a, pooled) and np.array_equal(i, idx)
