"""Each CPU convolution algorithm, forced, on random configurations: the SIMD kernels that
``auto`` picks for float32 and the direct loops they fall back to must both be right."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv import config
from fastconv.backends.cpu import conv as cpu_conv
from fastconv.shapes import conv_geometry
from tests import reference as ref
from tests.conftest import conv_configs, ints, rand

MODES = ("zeros", "reflect", "replicate", "circular")


@pytest.fixture(params=["auto", "direct"])
def algorithm(request, monkeypatch):
    monkeypatch.setattr(config, "CONV_ALGORITHM", request.param)
    return request.param


def _passes(d, x, w, b, dy, kw):
    return (
        getattr(fc, f"conv{d}d")(x, w, b, **kw),
        getattr(fc, f"conv{d}d_backward_input")(dy, w, x.shape, **kw),
        getattr(fc, f"conv{d}d_backward_weight")(dy, x, w.shape, **kw),
    )


def _refs(d, x, w, b, dy, kw):
    return (
        ref.conv(x, w, b, **kw),
        ref.conv_backward_input(dy, w, x.shape, **kw),
        ref.conv_backward_weight(dy, x, w.shape, **kw),
    )


# the fixture only sets a module attribute, the same for every generated input
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(modes=MODES, allow_empty_batch=False), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_forced_algorithms_are_exact_on_integer_data(algorithm, cfg, seed, data):
    d, x_shape, w_shape, kw = cfg
    groups = kw["groups"] = data.draw(st.sampled_from([1, 1, 2, 3]))  # dense, and dense per group
    c_in = groups * data.draw(st.sampled_from([1, 3, 17, 19]))
    c_out = groups * data.draw(st.sampled_from([2, 16, 33]))
    x_shape, w_shape = (x_shape[0], c_in, *x_shape[2:]), (c_out, c_in // groups, *w_shape[2:])
    rng = np.random.default_rng(seed)
    x, w, b = ints(rng, x_shape), ints(rng, w_shape), ints(rng, (c_out,))
    geom = conv_geometry(
        d, x_shape, w_shape, kw["stride"], kw["padding"], kw["dilation"], groups, kw["padding_mode"]
    )
    dy = ints(rng, (x_shape[0], c_out, *geom.out_size))
    for got, want in zip(_passes(d, x, w, b, dy, kw), _refs(d, x, w, b, dy, kw), strict=True):
        np.testing.assert_array_equal(got, want.astype(np.float32))


@pytest.mark.parametrize("c_out", [16, 32, 48, 64, 96])
def test_every_register_block_shape(algorithm, c_out):
    """Output-channel counts that select each register block (1, 2, 3, 4 vectors; odd block
    counts padded), with a width that leaves a tail in the pixel block."""
    rng = np.random.default_rng(c_out)
    x, w, b = (
        rand(rng, (2, 20, 9, 13), np.float32),
        rand(rng, (c_out, 20, 3, 3), np.float32),
        rand(rng, (c_out,), np.float32),
    )
    dy = rand(rng, (2, c_out, 9, 13), np.float32)
    kw = dict(padding=1)
    for got, want in zip(_passes(2, x, w, b, dy, kw), _refs(2, x, w, b, dy, kw), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_auto_uses_simd_for_float32_and_direct_for_float64():
    geom = conv_geometry(2, (1, 8, 9, 9), (16, 8, 3, 3), 1, 1, 1, 1).lift3()
    assert cpu_conv.algorithm("forward", geom, np.float32) == "simd"
    assert cpu_conv.algorithm("backward_input", geom, np.float32) == "simd"
    assert cpu_conv.algorithm("forward", geom, np.float64) == "direct"
    strided = conv_geometry(2, (1, 8, 9, 9), (16, 8, 3, 3), 2, 1, 1, 1).lift3()
    assert cpu_conv.algorithm("backward_input", strided, np.float32) == "simd"
    grouped = conv_geometry(2, (1, 8, 9, 9), (16, 4, 3, 3), 1, 1, 1, 2).lift3()
    assert cpu_conv.algorithm("forward", grouped, np.float32) == "simd"


# the fixture only sets a module attribute, the same for every generated input
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(modes=MODES, allow_empty_batch=False), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_forced_algorithms_depthwise(algorithm, cfg, seed, data):
    """groups = C_in = C_out, channel counts below, at and beyond one 16-lane block."""
    d, x_shape, w_shape, kw = cfg
    c = data.draw(st.sampled_from([2, 16, 19, 33]))
    kw["groups"] = c
    x_shape, w_shape = (x_shape[0], c, *x_shape[2:]), (c, 1, *w_shape[2:])
    rng = np.random.default_rng(seed)
    x, w, b = ints(rng, x_shape), ints(rng, w_shape), ints(rng, (c,))
    geom = conv_geometry(
        d, x_shape, w_shape, kw["stride"], kw["padding"], kw["dilation"], c, kw["padding_mode"]
    )
    dy = ints(rng, (x_shape[0], c, *geom.out_size))
    for got, want in zip(_passes(d, x, w, b, dy, kw), _refs(d, x, w, b, dy, kw), strict=True):
        np.testing.assert_array_equal(got, want.astype(np.float32))
