"""conv_transpose{1,2,3}d: the scatter-loop reference, the adjoint identities, finite
differences, PyTorch, validation, and layouts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv.backends import cpu
from fastconv.backends.cpu import conv_transpose as cpu_conv_transpose
from tests import reference as ref
from tests.conftest import DTYPES, ints, rand

TOL = {np.float32: 1e-5, np.float64: 1e-12}


def ops(d):
    return (getattr(fc, f"conv_transpose{d}d{s}") for s in ("", "_backward_input", "_backward_weight"))


@st.composite
def configs(draw, dims=(1, 2, 3), allow_empty_batch=True):
    """x shape, weight shape (C_in, C_out/groups, *k) and keyword arguments of a valid
    transposed convolution, including output_padding up to max(stride, dilation) - 1."""
    d = draw(st.sampled_from(dims))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c_in, opg = groups * draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(d))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(d))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(d))
    output_padding = tuple(
        draw(st.integers(0, max(s, dil) - 1)) for s, dil in zip(stride, dilation, strict=True)
    )
    padding = tuple(draw(st.integers(0, 3)) for _ in range(d))
    size = tuple(draw(st.integers(1, 4)) for _ in range(d))
    out = [
        (n - 1) * s - 2 * p + dil * (k - 1) + op + 1
        for n, s, p, dil, k, op in zip(size, stride, padding, dilation, kernel, output_padding, strict=True)
    ]
    assume(min(out) >= 1)
    n = draw(st.integers(0 if allow_empty_batch else 1, 2))
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    return d, (n, c_in, *size), (c_in, opg, *kernel), kw


@settings(max_examples=30, deadline=None)
@given(cfg=configs(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1), with_bias=st.booleans())
def test_forward_matches_scatter_reference(cfg, dtype, seed, with_bias):
    d, x_shape, w_shape, kw = cfg
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    b = rand(rng, (w_shape[1] * kw["groups"],), dtype) if with_bias else None
    y = next(ops(d))(x, w, b, **kw)
    want = ref.conv_transpose(x, w, b, **kw)
    scale = ref.conv_transpose(np.abs(x), np.abs(w), None if b is None else np.abs(b), **kw)
    assert y.dtype == dtype and y.shape == want.shape
    assert np.all(np.abs(y - want) <= TOL[dtype] * scale + np.finfo(dtype).tiny)


@settings(max_examples=30, deadline=None)
@given(cfg=configs(allow_empty_batch=False), seed=st.integers(0, 2**32 - 1))
def test_adjoint_identities(cfg, seed):
    """<conv_T(x, w), g> = <x, dX(g)> = <w, dW(g, x)>, with conv_T from the scatter
    reference, and dX(g) = conv(g) (conv_T is the adjoint of conv)."""
    d, x_shape, w_shape, kw = cfg
    _, backward_input, backward_weight = ops(d)
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape, np.float64), rand(rng, w_shape, np.float64)
    y = ref.conv_transpose(x, w, **kw)
    g = rand(rng, y.shape, np.float64)
    lhs, scale = np.vdot(y, g), max(np.vdot(np.abs(y), np.abs(g)), 1.0)
    dx = backward_input(g, w, x_shape, **kw)
    assert abs(lhs - np.vdot(x, dx)) <= 1e-12 * scale
    conv_kw = {k: v for k, v in kw.items() if k != "output_padding"}
    full = ref.conv(g, w, **conv_kw)  # output_padding >= stride leaves extra cells: crop them
    crop = (slice(None), slice(None), *(slice(0, n) for n in x_shape[2:]))
    np.testing.assert_allclose(dx, full[crop], rtol=1e-12, atol=1e-12)
    assert abs(lhs - np.vdot(w, backward_weight(g, x, w_shape, **kw))) <= 1e-12 * scale


def test_finite_differences():
    """Central differences of <conv_transpose2d(x, w, b), g> in x, w and b."""
    kw = dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0), groups=2, dilation=(1, 2))
    rng = np.random.default_rng(0)
    x, w, b = (
        rand(rng, (2, 4, 3, 4), np.float64),
        rand(rng, (4, 3, 3, 2), np.float64),
        rand(rng, (6,), np.float64),
    )
    g = rand(rng, fc.conv_transpose2d(x, w, b, **kw).shape, np.float64)
    grads = {
        "x": fc.conv_transpose2d_backward_input(g, w, x.shape, **kw),
        "weight": fc.conv_transpose2d_backward_weight(g, x, w.shape, **kw),
        "bias": g.sum(axis=(0, 2, 3)),
    }
    args = {"x": x, "weight": w, "bias": b}
    for name, arr in args.items():
        for i in rng.choice(arr.size, min(arr.size, 6), replace=False):
            plus, minus = ({**args} for _ in range(2))
            plus[name], minus[name] = arr.copy(), arr.copy()
            plus[name].flat[i] += 1e-6
            minus[name].flat[i] -= 1e-6
            num = (
                np.vdot(fc.conv_transpose2d(**plus, **kw), g) - np.vdot(fc.conv_transpose2d(**minus, **kw), g)
            ) / 2e-6
            assert abs(num - grads[name].flat[i]) <= 1e-6 * max(1.0, abs(num)), name


def test_integer_inputs_are_exact():
    """Small integers make float32 exact: bitwise equal to the reference, mostly non-zero."""
    rng = np.random.default_rng(1)
    x, w, b = ints(rng, (2, 6, 5, 4)), ints(rng, (6, 2, 3, 3)), ints(rng, (6,))
    kw = dict(stride=2, padding=1, output_padding=1, groups=3)
    y = fc.conv_transpose2d(x, w, b, **kw)
    assert np.array_equal(y, ref.conv_transpose(x, w, b, **kw).astype(np.float32))
    assert np.count_nonzero(y) > y.size // 2


@settings(max_examples=15, deadline=None)
@given(cfg=configs(allow_empty_batch=False), seed=st.integers(0, 2**32 - 1))
def test_matches_torch_float64(cfg, seed):
    torch = pytest.importorskip("torch")
    d, x_shape, w_shape, kw = cfg
    forward, backward_input, backward_weight = ops(d)
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape, np.float64), rand(rng, w_shape, np.float64)
    b = rand(rng, (w_shape[1] * kw["groups"],), np.float64)
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    yt = getattr(torch.nn.functional, f"conv_transpose{d}d")(xt, wt, torch.from_numpy(b), **kw)
    g = rand(rng, tuple(yt.shape), np.float64)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(forward(x, w, b, **kw), yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(backward_input(g, w, x_shape, **kw), xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(backward_weight(g, x, w_shape, **kw), wt.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_output_padding_beyond_stride_with_dilation():
    """output_padding may reach dilation - 1 > stride - 1: the extra cells hold only bias."""
    rng = np.random.default_rng(2)
    x, w, b = rand(rng, (1, 2, 4), np.float64), rand(rng, (2, 3, 2), np.float64), rand(rng, (3,), np.float64)
    kw = dict(stride=1, output_padding=2, dilation=3)
    y = fc.conv_transpose1d(x, w, b, **kw)
    assert y.shape == (1, 3, 4 + 3 + 2)
    np.testing.assert_allclose(y, ref.conv_transpose(x, w, b, **kw), rtol=1e-12)
    np.testing.assert_allclose(y[0, :, -2:], np.repeat(b[:, None], 2, axis=1))


def test_unbatched_layouts_and_no_mutation():
    """Unbatched input, Fortran/strided/read-only views: the same bits; inputs untouched."""
    rng = np.random.default_rng(3)
    x, w, b = (
        rand(rng, (4, 5, 6), np.float32),
        rand(rng, (4, 2, 3, 2), np.float32),
        rand(rng, (2,), np.float32),
    )
    kw = dict(stride=(2, 3), padding=1, output_padding=(1, 2))
    want = fc.conv_transpose2d(x[None], w, b, **kw)[0]
    readonly = x.copy()
    readonly.flags.writeable = False
    for view in (np.asfortranarray(x), np.repeat(x, 2, axis=-1)[..., ::2], readonly):
        before = view.copy()
        assert np.array_equal(fc.conv_transpose2d(view, w, b, **kw), want)
        assert np.array_equal(view, before)
    g = rand(rng, want.shape, np.float32)
    dx = fc.conv_transpose2d_backward_input(g, w, x.shape, **kw)
    assert dx.shape == x.shape
    assert np.array_equal(dx, fc.conv_transpose2d_backward_input(g[None], w, (1, *x.shape), **kw)[0])
    dw = fc.conv_transpose2d_backward_weight(g, x, w.shape, **kw)
    assert np.array_equal(dw, fc.conv_transpose2d_backward_weight(g[None], x[None], w.shape, **kw))


def test_empty_batch():
    w = np.ones((2, 3, 2), np.float64)
    assert fc.conv_transpose1d(np.ones((0, 2, 4)), w, stride=2).shape == (0, 3, 8)
    dw = fc.conv_transpose1d_backward_weight(np.ones((0, 3, 8)), np.ones((0, 2, 4)), w.shape, stride=2)
    assert dw.shape == w.shape and not dw.any()


@pytest.fixture
def no_kernels(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("a kernel ran before validation finished")

    for op in ("conv_transpose_forward", "conv_transpose_backward_input", "conv_transpose_backward_weight"):
        monkeypatch.setattr(cpu, op, tripwire)


X = np.zeros((2, 4, 5, 5), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)


@pytest.mark.usefixtures("no_kernels")
@pytest.mark.parametrize(
    "call, exc, message",
    [
        (
            lambda: fc.conv_transpose2d(X, W, stride=2, output_padding=2),
            ValueError,
            r"output_padding must be smaller than either stride or dilation.*output_padding=\(2, 2\), stride=\(2, 2\)",
        ),
        (lambda: fc.conv_transpose2d(X, W, output_padding=(0, 1)), ValueError, r"output_padding.*smaller"),
        (lambda: fc.conv_transpose2d(X, W, stride=0), ValueError, r"stride must be positive, got 0"),
        (lambda: fc.conv_transpose2d(X, W, padding=-1), ValueError, r"padding must be >= 0, got -1"),
        (lambda: fc.conv_transpose2d(X, W, dilation=(1, 0)), ValueError, r"dilation\[1\] must be positive"),
        (
            lambda: fc.conv_transpose2d(X, W, padding=4),
            ValueError,
            r"output size \(-1, -1\) is empty or negative",
        ),
        (lambda: fc.conv_transpose2d(X, W, groups=3), ValueError, r"groups=3 must divide in_channels=4"),
        (lambda: fc.conv_transpose2d(X, W[:2]), ValueError, r"expects 2 input channels.*has 4 channels"),
        (
            lambda: fc.conv_transpose2d(X, W, np.zeros(4, np.float32)),
            ValueError,
            r"bias must have shape \(3,\)",
        ),
        (lambda: fc.conv_transpose2d(X, W.astype(np.float64)), TypeError, r"weight has dtype float64"),
        (lambda: fc.conv_transpose2d(X.astype(np.int32), W), TypeError, r"x has dtype int32"),
        (lambda: fc.conv_transpose2d(X, W, padding="same"), TypeError, r"padding must be an int"),
        (lambda: fc.conv_transpose2d(X[:, :, :0], W), ValueError, r"non-empty spatial axes"),
        (
            lambda: fc.conv_transpose2d_backward_input(np.zeros((2, 3, 6, 6), np.float32), W, X.shape),
            ValueError,
            r"grad_output has shape \(2, 3, 6, 6\).*\(2, 3, 7, 7\)",
        ),
        (
            lambda: fc.conv_transpose2d_backward_weight(np.zeros((2, 3, 7, 7), np.float32), X, (4, 3, 3)),
            ValueError,
            r"weight_shape must have 4 entries",
        ),
    ],
)
def test_validation(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "d, x_shape, w_shape, stride, groups",
    [
        (1, (2, 4, 5), (4, 3, 3), 3, 2),
        (2, (2, 6, 3, 4), (6, 2, 2, 2), 2, 1),
        (2, (1, 6, 3, 2), (6, 1, 1, 3), (1, 3), 3),
        (3, (1, 2, 2, 3, 2), (2, 2, 2, 1, 2), (2, 1, 2), 1),
        (2, (2, 3, 4, 4), (3, 2, 1, 1), 1, 1),
    ],
)
def test_disjoint_blocks(d, x_shape, w_shape, stride, groups, dtype, monkeypatch):
    """kernel == stride without padding (U-Net's up-convolution) runs as a 1x1 convolution
    plus a depth-to-space copy: the scatter reference and the adjoint still hold."""
    calls = []
    blocks_forward = cpu_conv_transpose._blocks_forward
    monkeypatch.setattr(cpu_conv_transpose, "_blocks_forward", lambda *a: calls.append(blocks_forward(*a)))
    rng = np.random.default_rng(9)
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    b = rand(rng, (w_shape[1] * groups,), dtype)
    forward, backward_input, backward_weight = ops(d)
    kw = dict(stride=stride, groups=groups)
    y = forward(x, w, b, **kw)
    want = ref.conv_transpose(x, w, b, **kw)
    scale = ref.conv_transpose(np.abs(x), np.abs(w), np.abs(b), **kw)
    assert y.dtype == dtype and y.shape == want.shape and len(calls) == 1
    assert np.all(np.abs(y - want) <= TOL[dtype] * scale + np.finfo(dtype).tiny)
    g = rand(rng, y.shape, np.float64)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    lhs = np.vdot(forward(x64, w64, **kw), g)
    assert abs(lhs - np.vdot(x64, backward_input(g, w64, x_shape, **kw))) <= 1e-12 * np.abs(g).sum()
    assert abs(lhs - np.vdot(w64, backward_weight(g, x64, w_shape, **kw))) <= 1e-12 * np.abs(g).sum()
