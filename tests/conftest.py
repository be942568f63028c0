"""Shared test helpers: random convolution configurations (hypothesis) and tolerances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

DTYPES = (np.float32, np.float64)


@pytest.fixture(params=["avx512", "avx2"])
def isa(request, monkeypatch):
    """The register blocks of each instruction set, whatever this machine has: the SIMD
    kernels are sized per ISA (``simd.ISA``), and LLVM runs a kernel sized for either on
    any x86-64 CPU (slower where it spills), so both sets of tables are tested everywhere."""
    from fastconv.backends.cpu import conv_depthwise, simd

    def clear():
        for plan in (
            conv_depthwise._forward_plan,
            conv_depthwise._backward_input_plan,
            conv_depthwise._direct_plan,
        ):
            plan.cache_clear()

    monkeypatch.setattr(simd, "ISA", request.param)
    clear()
    yield request.param
    clear()


@st.composite
def conv_configs(draw, dims=(1, 2, 3), modes=("zeros",), max_size=7, allow_empty_batch=True):
    """A valid convolution: shapes plus keyword arguments, drawn small enough for the
    reference loops. Covers group divisors and depthwise, channel tails, stride, dilation,
    padding beyond the kernel radius, asymmetric per-axis values and 'same'/'valid'."""
    d = draw(st.sampled_from(dims))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cpg_in = draw(st.integers(1, 3))
    cpg_out = draw(st.integers(1, 3))
    depthwise = draw(st.booleans()) and groups > 1
    if depthwise:
        cpg_in = 1
    c_in, c_out = groups * cpg_in, groups * cpg_out
    n = draw(st.integers(0 if allow_empty_batch else 1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(d))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(d))
    mode = draw(st.sampled_from(modes))
    padding_kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(d))
    if padding_kind == "same":
        stride = (1,) * d
        padding = "same"
    elif padding_kind == "valid":
        padding = "valid"
    elif padding_kind == "int":
        padding = draw(st.integers(0, 3))
    else:
        padding = tuple(draw(st.integers(0, 3)) for _ in range(d))
    pads = _resolve(padding, kernel, dilation, d)
    size = []
    for k, dil, (lo, hi) in zip(kernel, dilation, pads, strict=True):
        low = max(1, dil * (k - 1) + 1 - lo - hi)
        if mode == "reflect":
            low = max(low, max(lo, hi) + 1)
        elif mode == "circular":
            low = max(low, max(lo, hi))
        size.append(draw(st.integers(low, max(low, max_size))))
    x_shape = (n, c_in, *size)
    w_shape = (c_out, cpg_in, *kernel)
    stride_arg = stride if draw(st.booleans()) else stride[0] if len(set(stride)) == 1 else stride
    kw = dict(stride=stride_arg, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    return d, x_shape, w_shape, kw


def _resolve(padding, kernel, dilation, d):
    if padding == "valid":
        return [(0, 0)] * d
    if padding == "same":
        out = []
        for k, dil in zip(kernel, dilation, strict=True):
            t = dil * (k - 1)
            out.append((t // 2, t - t // 2))
        return out
    p = padding if isinstance(padding, tuple) else (padding,) * d
    return [(v, v) for v in p]


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def ints(rng, shape, dtype=np.float32):
    """Integer values in [-4, 4]: float32 convolutions of these are exact."""
    return rng.integers(-4, 5, size=shape).astype(dtype)


def assert_same_bits_for_thread_counts(d, x, w, b, dy, kw, counts=(1, 2)):
    """The three convolution passes give bitwise the same results for each thread count."""
    import numba

    import fastconv as fc

    results = []
    saved = numba.get_num_threads()
    try:
        for threads in counts:
            numba.set_num_threads(threads)
            results.append(
                (
                    getattr(fc, f"conv{d}d")(x, w, b, **kw),
                    getattr(fc, f"conv{d}d_backward_input")(dy, w, x.shape, **kw),
                    getattr(fc, f"conv{d}d_backward_weight")(dy, x, w.shape, **kw),
                )
            )
    finally:
        numba.set_num_threads(saved)
    for other in results[1:]:
        for one, two in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(one, two)
