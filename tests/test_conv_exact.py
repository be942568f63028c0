"""Integer-valued data in [-4, 4]: every float32 partial sum is exact, so fastconv must
equal the float64 reference bit for bit, whatever order it sums in."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv as fc
from tests import reference as ref
from tests.conftest import conv_configs, ints

MODES = ("zeros", "reflect", "replicate", "circular")


def _assert_exact(got, want):
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want.astype(np.float32))


@settings(max_examples=40, deadline=None)
@given(cfg=conv_configs(modes=MODES, allow_empty_batch=False), seed=st.integers(0, 2**32 - 1))
def test_integer_data_is_bitwise_exact(cfg, seed):
    d, x_shape, w_shape, kw = cfg
    rng = np.random.default_rng(seed)
    x, w, b = ints(rng, x_shape), ints(rng, w_shape), ints(rng, (w_shape[0],))
    y = getattr(fc, f"conv{d}d")(x, w, b, **kw)
    _assert_exact(y, ref.conv(x, w, b, **kw))
    dy = ints(rng, y.shape)
    _assert_exact(
        getattr(fc, f"conv{d}d_backward_input")(dy, w, x_shape, **kw),
        ref.conv_backward_input(dy, w, x_shape, **kw),
    )
    _assert_exact(
        getattr(fc, f"conv{d}d_backward_weight")(dy, x, w_shape, **kw),
        ref.conv_backward_weight(dy, x, w_shape, **kw),
    )


def test_exact_larger_layer_is_mostly_nonzero():
    """A layer with real channel counts: exact, and most outputs are non-zero (so a kernel
    that writes zeros cannot pass on degenerate data)."""
    rng = np.random.default_rng(7)
    x, w, b = ints(rng, (2, 16, 12, 12)), ints(rng, (24, 16, 3, 3)), ints(rng, (24,))
    y = fc.conv2d(x, w, b, padding=1, stride=(1, 2))
    want = ref.conv(x, w, b, padding=1, stride=(1, 2))
    np.testing.assert_array_equal(y, want.astype(np.float32))
    assert np.count_nonzero(y) > 0.9 * y.size
