"""Every bad input raises a ValueError/TypeError naming the argument, the value and the
rule, before any kernel runs (the backend ops are replaced by tripwires here)."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv import shapes
from fastconv.backends import cpu


@pytest.fixture(autouse=True)
def no_kernels(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("a kernel ran before validation finished")

    for op in ("conv_forward", "conv_backward_input", "conv_backward_weight", "conv_backward_bias"):
        monkeypatch.setattr(cpu, op, tripwire)


X = np.zeros((2, 4, 8, 8), np.float32)
W = np.zeros((6, 4, 3, 3), np.float32)


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: fc.conv2d(X[0, 0], W), ValueError, r"x must have 3 or 4 dimensions.*got 2"),
        (lambda: fc.conv2d(X, W[0]), ValueError, r"weight must have 4 dimensions.*got 3"),
        (lambda: fc.conv1d(X, W), ValueError, r"x must have 2 or 3 dimensions.*got 4"),
        (
            lambda: fc.conv2d(X, np.zeros((6, 3, 3, 3), np.float32)),
            ValueError,
            r"expects 3 input channels.*input has 4",
        ),
        (
            lambda: fc.conv2d(X, np.zeros((6, 2, 3, 3), np.float32), groups=3),
            ValueError,
            r"groups=3 must divide in_channels=4",
        ),
        (
            lambda: fc.conv2d(X, np.zeros((5, 2, 3, 3), np.float32), groups=2),
            ValueError,
            r"groups=2 must divide out_channels=5",
        ),
        (lambda: fc.conv2d(X, W, groups=0), ValueError, r"groups must be positive, got 0"),
        (
            lambda: fc.conv2d(X, W, np.zeros(5, np.float32)),
            ValueError,
            r"bias must have shape \(6,\).*got \(5,\)",
        ),
        (lambda: fc.conv2d(X, W, np.zeros((6, 1), np.float32)), ValueError, r"bias must have 1 dimensions"),
        (
            lambda: fc.conv2d(X, np.zeros((6, 4, 11, 3), np.float32)),
            ValueError,
            r"kernel .* spans 11 cells, more than the padded input",
        ),
        (lambda: fc.conv2d(X, W, dilation=5), ValueError, r"spans 11 cells"),
        (lambda: fc.conv2d(X, W, stride=0), ValueError, r"stride must be positive, got 0"),
        (lambda: fc.conv2d(X, W, stride=(1, -2)), ValueError, r"stride\[1\] must be positive, got -2"),
        (lambda: fc.conv2d(X, W, dilation=0), ValueError, r"dilation must be positive, got 0"),
        (lambda: fc.conv2d(X, W, padding=-1), ValueError, r"padding must be >= 0, got -1"),
        (lambda: fc.conv2d(X, W, padding=(1, -1)), ValueError, r"padding\[1\] must be >= 0, got -1"),
        (lambda: fc.conv2d(X, W, stride=1.0), TypeError, r"stride must be an int, got 1.0 of type float"),
        (lambda: fc.conv2d(X, W, padding=True), TypeError, r"padding must be an int, got True of type bool"),
        (lambda: fc.conv2d(X, W, groups=1.5), TypeError, r"groups must be an int, got 1.5"),
        (
            lambda: fc.conv2d(X, W, stride=(1, 1, 1)),
            ValueError,
            r"stride must be an int or a tuple of 2 ints, got \(1, 1, 1\) of length 3",
        ),
        (
            lambda: fc.conv2d(X, W, padding="full"),
            ValueError,
            r"padding must be .*'valid' or 'same', got 'full'",
        ),
        (
            lambda: fc.conv2d(X, W, padding="same", stride=2),
            ValueError,
            r"padding='same' is not supported for strided convolutions",
        ),
        (
            lambda: fc.conv2d(X, W, padding_mode="mirror"),
            ValueError,
            r"padding_mode must be one of .*got 'mirror'",
        ),
        (
            lambda: fc.conv2d(X, W, padding=8, padding_mode="reflect"),
            ValueError,
            r"reflect.*padding < input size.*got padding \(8, 8\) for size 8",
        ),
        (
            lambda: fc.conv2d(X, W, padding=9, padding_mode="circular"),
            ValueError,
            r"circular.*padding <= input size",
        ),
        (lambda: fc.conv2d(X.astype(np.int64), W), TypeError, r"x has dtype int64.*x.astype\(np.float32\)"),
        (lambda: fc.conv2d(X.astype(np.float16), W), TypeError, r"x has dtype float16"),
        (lambda: fc.conv2d(X.astype(np.complex64), W), TypeError, r"x has dtype complex64"),
        (lambda: fc.conv2d(X.astype(object), W), TypeError, r"x has dtype object"),
        (lambda: fc.conv2d(X.astype(bool), W), TypeError, r"x has dtype bool"),
        (lambda: fc.conv2d(X.tolist(), W), TypeError, r"x must be a NumPy array.*got list.*np.asarray"),
        (
            lambda: fc.conv2d(X, W.astype(np.float64)),
            TypeError,
            r"weight has dtype float64 but x has dtype float32",
        ),
        (
            lambda: fc.conv2d(X, W, np.zeros(6, np.float64)),
            TypeError,
            r"bias has dtype float64 but x has dtype float32",
        ),
        (lambda: fc.conv2d(X, W, [0.0] * 6), TypeError, r"bias must be a NumPy array"),
        (
            lambda: fc.conv2d(X, np.zeros((6, 4, 0, 3), np.float32)),
            ValueError,
            r"weight must have positive sizes",
        ),
        # backward passes
        (
            lambda: fc.conv2d_backward_input(np.zeros((2, 6, 6, 6), np.float32), W, (2, 4)),
            ValueError,
            r"input_shape must have 3 or 4 entries",
        ),
        (
            lambda: fc.conv2d_backward_input(np.zeros((2, 6, 5, 6), np.float32), W, (2, 4, 8, 8)),
            ValueError,
            r"grad_output has shape \(2, 6, 5, 6\).*output has shape \(2, 6, 6, 6\)",
        ),
        (
            lambda: fc.conv2d_backward_input(np.zeros((2, 6, 6, 6), np.float32), W, (2, 4, 8.0, 8)),
            TypeError,
            r"input_shape\[2\] must be an int",
        ),
        (
            lambda: fc.conv2d_backward_input(np.zeros((2, 6, 6, 6), np.float64), W, (2, 4, 8, 8)),
            TypeError,
            r"weight has dtype float32 but grad_output has dtype float64",
        ),
        (
            lambda: fc.conv2d_backward_input(np.zeros((6, 6, 6), np.float32), W, (2, 4, 8, 8)),
            ValueError,
            r"grad_output must have 4 dimensions",
        ),
        (
            lambda: fc.conv2d_backward_weight(np.zeros((2, 6, 6, 6), np.float32), X, (6, 4, 3)),
            ValueError,
            r"weight_shape must have 4 entries",
        ),
        (
            lambda: fc.conv2d_backward_weight(np.zeros((2, 6, 7, 6), np.float32), X, (6, 4, 3, 3)),
            ValueError,
            r"grad_output has shape",
        ),
        (
            lambda: fc.conv2d_backward_weight(np.zeros((2, 6, 6, 6), np.float32), X, "6,4,3,3"),
            TypeError,
            r"weight_shape must be a tuple of ints",
        ),
        (
            lambda: fc.conv2d_backward_bias(np.zeros((2, 6), np.float32)),
            ValueError,
            r"grad_output must have 3 or 4 dimensions",
        ),
        (
            lambda: fc.conv2d_backward_bias(np.zeros((2, 6, 3, 3), np.int32)),
            TypeError,
            r"grad_output has dtype int32",
        ),
    ],
)
def test_bad_input_is_refused_before_any_kernel(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_memoised_geometry_keeps_validation():
    """A geometry cached for plain arguments comes back for equal plain ones (lists as
    tuples), while equal arguments of other types (bools, floats, in tuples too) are
    validated afresh and refused, and NumPy integers are accepted uncached."""
    args = (2, (2, 4, 8, 8), (6, 4, 3, 3))
    geom = shapes.conv_geometry(*args, (1, 1), (1, 1), 1, 1)
    assert shapes.conv_geometry(*args, [1, 1], [1, 1], 1, 1) is geom
    assert shapes.conv_geometry(*args, 1, 1, 1, 1) == geom
    assert shapes.conv_geometry(*args, np.int64(1), 1, (np.int64(1), 1), 1) == geom
    for stride in (True, 1.0, (1, True), (1.0, 1), [1, 1.0]):
        with pytest.raises(TypeError, match="stride"):
            shapes.conv_geometry(*args, stride, 1, 1, 1)
    with pytest.raises(TypeError, match="groups must be an int, got True"):
        shapes.conv_geometry(*args, 1, 1, 1, True)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        shapes.conv_geometry(*args, 1, 1, 1, 1, "zero")
