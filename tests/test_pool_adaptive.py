"""adaptive_avg_pool{1,2,3}d and adaptive_max_pool{1,2,3}d with their backward passes:
reference windows, PyTorch, the adjoint identity, global pooling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv as fc
from tests import reference as ref
from tests.conftest import DTYPES, rand


@st.composite
def adaptive_configs(draw, allow_empty_batch=True):
    """Input shape and output size (shrinking, equal or growing: windows may overlap)."""
    d = draw(st.integers(1, 3))
    size = tuple(draw(st.integers(1, 6)) for _ in range(d))
    out = tuple(draw(st.integers(1, 4)) for _ in range(d))
    n = draw(st.integers(0 if allow_empty_batch else 1, 2))
    return d, (n, draw(st.integers(1, 3)), *size), out


def ops(d, op):
    return getattr(fc, f"adaptive_{op}_pool{d}d"), getattr(fc, f"adaptive_{op}_pool{d}d_backward")


@settings(max_examples=30, deadline=None)
@given(cfg=adaptive_configs(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_matches_reference(cfg, dtype, seed):
    d, x_shape, out = cfg
    rng = np.random.default_rng(seed)
    x = rand(rng, x_shape, dtype)
    avg, avg_backward = ops(d, "avg")
    y = avg(x, out)
    assert y.dtype == dtype and y.shape == (*x_shape[:2], *out)
    np.testing.assert_allclose(y, ref.adaptive_avg_pool(x, out), rtol=1e-6, atol=1e-6)
    g = rand(rng, y.shape, np.float64)
    dx = avg_backward(g, x_shape)
    x64 = x.astype(np.float64)
    lhs = np.vdot(ref.adaptive_avg_pool(x64, out), g)
    assert abs(lhs - np.vdot(x64, dx)) <= 1e-12 * max(1.0, np.vdot(np.abs(x64), np.abs(dx)))

    max_, max_backward = ops(d, "max")
    y, idx = max_(x, out, return_indices=True)
    want, want_idx = ref.adaptive_max_pool(x, out)
    assert np.array_equal(y, want.astype(dtype)) and np.array_equal(idx, want_idx)
    np.testing.assert_allclose(
        max_backward(g, idx, x_shape), ref.max_pool_backward(g, idx, x_shape), rtol=1e-12, atol=1e-12
    )


@settings(max_examples=20, deadline=None)
@given(cfg=adaptive_configs(allow_empty_batch=False), seed=st.integers(0, 2**32 - 1))
def test_matches_torch(cfg, seed):
    torch = pytest.importorskip("torch")
    d, x_shape, out = cfg
    rng = np.random.default_rng(seed)
    x = rand(rng, x_shape, np.float64)
    g = rand(rng, (*x_shape[:2], *out), np.float64)
    for op in ("avg", "max"):
        forward, backward = ops(d, op)
        xt = torch.from_numpy(x).requires_grad_()
        yt = getattr(torch.nn.functional, f"adaptive_{op}_pool{d}d")(
            xt, out, *([True] if op == "max" else [])
        )
        if op == "max":
            yt, it = yt
            y, idx = forward(x, out, return_indices=True)
            assert np.array_equal(idx, it.numpy())
            dx = backward(g, idx, x_shape)
        else:
            y, dx = forward(x, out), backward(g, x_shape)
        yt.backward(torch.from_numpy(g))
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_global_pooling_and_none_sizes():
    rng = np.random.default_rng(7)
    x = rand(rng, (2, 3, 5, 4), np.float64)
    np.testing.assert_allclose(fc.adaptive_avg_pool2d(x, 1), x.mean(axis=(2, 3), keepdims=True), rtol=1e-14)
    assert np.array_equal(fc.adaptive_max_pool2d(x, 1), x.max(axis=(2, 3), keepdims=True))
    assert fc.adaptive_avg_pool2d(x, (None, 2)).shape == (2, 3, 5, 2)
    assert fc.adaptive_max_pool2d(x[0], (3, None)).shape == (3, 3, 4)  # unbatched
    dx = fc.adaptive_avg_pool2d_backward(np.ones((3, 1, 1)), (3, 5, 4))
    assert np.array_equal(dx, np.full((3, 5, 4), 1 / 20))
