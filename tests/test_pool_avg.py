"""avg_pool{1,2,3}d and lp_pool{1,2}d with their backward passes: the explicit-window
reference, PyTorch (every ceil_mode / count_include_pad / divisor_override combination), the
adjoint identity, finite differences and the notes' mean pooling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastconv as fc
from tests import reference as ref
from tests.conftest import DTYPES, rand
from tests.test_pool_max import pool_configs

TOL = {np.float32: 1e-6, np.float64: 1e-13}


def ops(d, op="avg"):
    return getattr(fc, f"{op}_pool{d}d"), getattr(fc, f"{op}_pool{d}d_backward")


avg_options = st.fixed_dictionaries(
    {"count_include_pad": st.booleans(), "divisor_override": st.none() | st.sampled_from([1, 3, -2])}
)


@settings(max_examples=40, deadline=None)
@given(
    cfg=pool_configs(dilation=False),
    avg=avg_options,
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_reference_and_adjoint(cfg, avg, dtype, seed):
    """Forward within rounding of the reference; backward is its exact transpose:
    <avg_pool(x), g> = <x, avg_pool_backward(g)>."""
    d, x_shape, kw = cfg
    kw = {**kw, **avg}
    forward, backward = ops(d)
    rng = np.random.default_rng(seed)
    x = rand(rng, x_shape, dtype)
    y = forward(x, **kw)
    want = ref.avg_pool(x, **kw)
    assert y.dtype == dtype and y.shape == want.shape
    scale = np.abs(ref.avg_pool(np.abs(x), **kw))
    assert np.all(np.abs(y - want) <= TOL[dtype] * scale + np.finfo(dtype).tiny)
    g = rand(rng, y.shape, np.float64)
    x64 = x.astype(np.float64)
    dx = backward(g, x_shape, **kw)
    assert dx.shape == x_shape
    lhs = np.vdot(ref.avg_pool(x64, **kw), g)
    assert abs(lhs - np.vdot(x64, dx)) <= 1e-12 * max(1.0, np.vdot(np.abs(x64), np.abs(dx)))


@settings(max_examples=30, deadline=None)
@given(
    cfg=pool_configs(dilation=False, allow_empty_batch=False), avg=avg_options, seed=st.integers(0, 2**32 - 1)
)
def test_matches_torch(cfg, avg, seed):
    """Including the divisor of windows clipped by padding in ceil_mode."""
    torch = pytest.importorskip("torch")
    d, x_shape, kw = cfg
    # torch's avg_pool3d alone refuses inputs smaller than the kernel (even padded or in
    # ceil_mode); fastconv pools them as its 1-D and 2-D versions do
    assume(d < 3 or all(n >= k for n, k in zip(x_shape[2:], kw["kernel_size"], strict=True)))
    kw = {**kw, **avg}
    forward, backward = ops(d)
    rng = np.random.default_rng(seed)
    x = rand(rng, x_shape, np.float64)
    xt = torch.from_numpy(x).requires_grad_()
    if d == 1:  # torch's avg_pool1d has no divisor_override: run it as a 1 x L avg_pool2d
        lift = {
            k: v
            if k in ("ceil_mode", "count_include_pad", "divisor_override") or v is None
            else (1 if k == "kernel_size" or k == "stride" else 0, *v)
            for k, v in kw.items()
        }
        yt = torch.nn.functional.avg_pool2d(xt[:, :, None], **lift)[:, :, 0]
    else:
        yt = getattr(torch.nn.functional, f"avg_pool{d}d")(xt, **kw)
    g = rand(rng, tuple(yt.shape), np.float64)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(forward(x, **kw), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(backward(g, x_shape, **kw), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_seed_mean_pooling():
    """Mean pooling, 2x2 with stride 2, on the notes' 4x4 map."""
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32)[None, None]
    assert np.array_equal(fc.avg_pool2d(x, 2)[0, 0], [[3.25, 5.25], [2, 2]])
    dx = fc.avg_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), x.shape, 2)
    assert np.array_equal(dx, np.full(x.shape, 0.25, np.float32))


@pytest.mark.parametrize("count_include_pad, want", [(True, [1 / 3, 2, 4, 2.5]), (False, [0.5, 2, 4, 5])])
def test_ceil_mode_divisors(count_include_pad, want):
    """Size 6, kernel 3, stride 2, padding 1, ceil_mode: 4 windows starting at -1, 1, 3, 5.
    The first holds one padding cell; the last starts on the last input cell and runs past the
    right padding, so it counts the 2 cells up to the padding's end (or 1 without padding)."""
    x = np.arange(6, dtype=np.float64)[None, None]
    y = fc.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=count_include_pad)
    np.testing.assert_allclose(y[0, 0], want, rtol=1e-15)


def test_unbatched_and_layouts():
    rng = np.random.default_rng(4)
    x = rand(rng, (2, 5, 7, 6), np.float32)
    want = fc.avg_pool3d(x[None], 2, 1, 1, count_include_pad=False)[0]
    for view in (np.asfortranarray(x), np.repeat(x, 2, axis=-1)[..., ::2]):
        assert np.array_equal(fc.avg_pool3d(view, 2, 1, 1, count_include_pad=False), want)
    dx = fc.avg_pool3d_backward(want, x.shape, 2, 1, 1, count_include_pad=False)
    assert np.array_equal(
        dx, fc.avg_pool3d_backward(want[None], (1, *x.shape), 2, 1, 1, count_include_pad=False)[0]
    )


# -- Lp pooling --

lp_configs = pool_configs(dims=(1, 2), dilation=False, padding=False, allow_empty_batch=False)


def _lp_kw(kw):
    return {k: v for k, v in kw.items() if k != "padding"}


@settings(max_examples=30, deadline=None)
@given(
    cfg=lp_configs,
    p=st.sampled_from([1.0, 2, 3.5]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_lp_matches_reference(cfg, p, dtype, seed):
    d, x_shape, kw = cfg
    kw = _lp_kw(kw)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 2.0, x_shape).astype(dtype)  # positive: x**3.5 is real
    y = ops(d, "lp")[0](x, p, **kw)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref.lp_pool(x, p, **kw), rtol=10 * TOL[dtype])


@settings(max_examples=20, deadline=None)
@given(cfg=lp_configs, p=st.sampled_from([1.0, 2, 3]), seed=st.integers(0, 2**32 - 1))
def test_lp_matches_torch(cfg, p, seed):
    """Forward and gradient, signed inputs (integer p), ceil_mode's clipped windows."""
    torch = pytest.importorskip("torch")
    d, x_shape, kw = cfg
    kw = _lp_kw(kw)
    forward, backward = ops(d, "lp")
    rng = np.random.default_rng(seed)
    x = (
        rng.uniform(0.5, 2.0, x_shape) * rng.choice([-1, 1], x_shape)
        if p == 2
        else rng.uniform(0.5, 2.0, x_shape)
    )
    xt = torch.from_numpy(x).requires_grad_()
    # torch's lp_pool1d wants plain ints
    tkw = {k: v[0] if d == 1 and isinstance(v, tuple) else v for k, v in kw.items()}
    yt = getattr(torch.nn.functional, f"lp_pool{d}d")(xt, p, **tkw)
    g = rand(rng, tuple(yt.shape), np.float64)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(forward(x, p, **kw), yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(backward(g, x, p, **kw), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_lp_finite_differences_and_zero_windows():
    rng = np.random.default_rng(6)
    x = rng.uniform(0.5, 2.0, (2, 2, 5, 6))
    x[0, 0, :2, :2] = 0.0  # an all-zero window: its gradient is zero, not NaN
    kw = dict(kernel_size=2, stride=(2, 1), ceil_mode=True)
    g = rand(rng, fc.lp_pool2d(x, 2.5, **kw).shape, np.float64)
    dx = fc.lp_pool2d_backward(g, x, 2.5, **kw)
    assert np.all(np.isfinite(dx)) and not dx[0, 0, :2, :2].any()
    for i in rng.choice(x.size, 20, replace=False):
        if x.flat[i] == 0:
            continue
        step = np.zeros(x.size)
        step[i] = 1e-6
        step = step.reshape(x.shape)
        num = (
            np.vdot(fc.lp_pool2d(x + step, 2.5, **kw), g) - np.vdot(fc.lp_pool2d(x - step, 2.5, **kw), g)
        ) / 2e-6
        assert abs(num - dx.flat[i]) <= 1e-6 * max(1.0, abs(num))


def test_l2_pooling_is_the_window_norm():
    x = np.array([[[3.0, 4.0, 0.0, 5.0, 12.0, 0.0]]], np.float32)
    assert np.array_equal(fc.lp_pool1d(x, 2, 3), [[[5.0, 13.0]]])
    assert np.array_equal(fc.lp_pool1d(np.abs(x), 1, 3), [[[7.0, 17.0]]])
