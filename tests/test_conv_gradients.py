"""Backward passes as derivatives: adjoint identities and finite differences (float64)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv as fc
from tests.conftest import conv_configs, rand

MODES = ("zeros", "reflect", "replicate", "circular")


def ops(d):
    return (
        getattr(fc, f"conv{d}d{s}") for s in ("", "_backward_input", "_backward_weight", "_backward_bias")
    )


@settings(max_examples=60, deadline=None)
@given(cfg=conv_configs(modes=MODES, allow_empty_batch=False), seed=st.integers(0, 2**32 - 1))
def test_adjoint_identities(cfg, seed):
    """<conv(x, w), g> = <x, dX(g, w)> = <w, dW(g, x)>: the backward passes are the exact
    transposes of the forward map (a convolution is linear in x and in w)."""
    d, x_shape, w_shape, kw = cfg
    conv, backward_input, backward_weight, _ = ops(d)
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape, np.float64), rand(rng, w_shape, np.float64)
    y = conv(x, w, **kw)
    g = rand(rng, y.shape, np.float64)
    lhs = np.vdot(y, g)
    scale = np.vdot(np.abs(y), np.abs(g)) + 1e-300
    assert abs(lhs - np.vdot(x, backward_input(g, w, x_shape, **kw))) <= 1e-12 * max(scale, 1)
    assert abs(lhs - np.vdot(w, backward_weight(g, x, w_shape, **kw))) <= 1e-12 * max(scale, 1)


@settings(max_examples=15, deadline=None)
@given(cfg=conv_configs(modes=MODES, max_size=5, allow_empty_batch=False), seed=st.integers(0, 2**32 - 1))
def test_finite_differences(cfg, seed):
    """Central differences of L = <conv(x, w, b), g> match every backward pass."""
    d, x_shape, w_shape, kw = cfg
    conv, backward_input, backward_weight, backward_bias = ops(d)
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape, np.float64), rand(rng, w_shape, np.float64)
    b = rand(rng, (w_shape[0],), np.float64)
    g = rand(rng, conv(x, w, b, **kw).shape, np.float64)

    def loss(x_, w_, b_):
        return np.vdot(conv(x_, w_, b_, **kw), g)

    analytic = {
        "x": backward_input(g, w, x_shape, **kw),
        "w": backward_weight(g, x, w_shape, **kw),
        "b": backward_bias(g),
    }
    args = {"x": x, "w": w, "b": b}
    eps = 1e-6
    for name, arr in args.items():
        flat_idx = rng.choice(arr.size, size=min(arr.size, 6), replace=False)
        for i in flat_idx:
            plus = {k: v.copy() for k, v in args.items()}
            minus = {k: v.copy() for k, v in args.items()}
            plus[name].flat[i] += eps
            minus[name].flat[i] -= eps
            numeric = (loss(plus["x"], plus["w"], plus["b"]) - loss(minus["x"], minus["w"], minus["b"])) / (
                2 * eps
            )
            assert abs(numeric - analytic[name].flat[i]) <= 1e-6 * (1 + abs(numeric)), (name, i)
