"""conv{1,2,3}d and its backward passes against the naive float64 references, on random
configurations drawn by hypothesis (all padding modes, groups, depthwise, N = 0)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv as fc
from tests import reference as ref
from tests.conftest import DTYPES, conv_configs, rand

MODES = ("zeros", "reflect", "replicate", "circular")
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def fns(d):
    return (
        getattr(fc, f"conv{d}d"),
        getattr(fc, f"conv{d}d_backward_input"),
        getattr(fc, f"conv{d}d_backward_weight"),
        getattr(fc, f"conv{d}d_backward_bias"),
    )


def assert_close(got, want, scale, dtype):
    """|got - want| <= tol * scale per element, where scale = sum of |terms| of that element."""
    assert got.dtype == dtype
    assert got.shape == want.shape
    bound = TOL[dtype] * scale + np.finfo(dtype).tiny
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= bound), f"max error {err.max()} exceeds bound {bound.flat[np.argmax(err - bound)]}"


@settings(max_examples=60, deadline=None)
@given(
    cfg=conv_configs(modes=MODES),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
    with_bias=st.booleans(),
)
def test_forward_matches_reference(cfg, dtype, seed, with_bias):
    d, x_shape, w_shape, kw = cfg
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    b = rand(rng, (w_shape[0],), dtype) if with_bias else None
    conv = fns(d)[0]
    y = conv(x, w, b, **kw)
    want = ref.conv(x, w, b, **kw)
    scale = ref.conv(np.abs(x), np.abs(w), None if b is None else np.abs(b), **kw)
    assert_close(y, want, scale, dtype)


@settings(max_examples=60, deadline=None)
@given(cfg=conv_configs(modes=MODES), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_backward_matches_reference(cfg, dtype, seed):
    d, x_shape, w_shape, kw = cfg
    rng = np.random.default_rng(seed)
    _, backward_input, backward_weight, backward_bias = fns(d)
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    y_shape = ref.conv(x[:1] if x_shape[0] else np.zeros((1, *x_shape[1:])), w, **kw).shape
    dy = rand(rng, (x_shape[0], *y_shape[1:]), dtype)

    dx = backward_input(dy, w, x_shape, **kw)
    scale = ref.conv_backward_input(np.abs(dy), np.abs(w), x_shape, **kw)
    assert_close(dx, ref.conv_backward_input(dy, w, x_shape, **kw), scale, dtype)

    dw = backward_weight(dy, x, w_shape, **kw)
    scale = ref.conv_backward_weight(np.abs(dy), np.abs(x), w_shape, **kw)
    assert_close(dw, ref.conv_backward_weight(dy, x, w_shape, **kw), scale, dtype)

    db = backward_bias(dy)
    assert_close(db, ref.conv_backward_bias(dy), ref.conv_backward_bias(np.abs(dy)), dtype)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_channel_tails(d):
    """Odd channel counts (19 -> 33) and a long axis, against the reference."""
    rng = np.random.default_rng(d)
    size = {1: (23,), 2: (9, 7), 3: (4, 5, 3)}[d]
    x = rand(rng, (1, 19, *size), np.float64)
    w = rand(rng, (33, 19, *(3,) * d), np.float64)
    y = fns(d)[0](x, w, padding=1)
    np.testing.assert_allclose(y, ref.conv(x, w, padding=1), rtol=1e-12, atol=1e-12)
