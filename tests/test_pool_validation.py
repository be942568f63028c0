"""Every bad pooling argument raises a ValueError/TypeError naming the argument, the value and
the rule, before any kernel runs (the backend ops are replaced by tripwires here). The one
exception, the range of pooling indices, is checked by the index kernels as they read them
(``test_pool_fast_paths.test_index_range_checked_by_the_kernels``)."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv.backends import cpu

OPS = (
    "max_pool_forward",
    "max_pool_backward",
    "avg_pool_forward",
    "avg_pool_backward",
    "lp_pool_forward",
    "lp_pool_backward",
    "max_unpool_forward",
    "max_unpool_backward",
)


@pytest.fixture(autouse=True)
def no_kernels(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("a kernel ran before validation finished")

    for op in OPS:
        monkeypatch.setattr(cpu, op, tripwire)


X = np.zeros((2, 3, 6, 6), np.float32)
G = np.zeros((2, 3, 3, 3), np.float32)
IDX = np.zeros((2, 3, 3, 3), np.int64)


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: fc.max_pool2d(X, 0), ValueError, r"kernel_size must be positive, got 0"),
        (lambda: fc.max_pool2d(X, (2, -1)), ValueError, r"kernel_size\[1\] must be positive, got -1"),
        (lambda: fc.max_pool2d(X, 2, stride=0), ValueError, r"stride must be positive, got 0"),
        (lambda: fc.max_pool2d(X, 2, padding=-1), ValueError, r"padding must be >= 0, got -1"),
        (
            lambda: fc.max_pool2d(X, 3, padding=2),
            ValueError,
            r"padding=\(2, 2\) must be at most half of kernel_size=\(3, 3\)",
        ),
        (lambda: fc.avg_pool1d(X[0], 2, padding=2), ValueError, r"at most half of kernel_size"),
        (lambda: fc.max_pool2d(X, 2, dilation=0), ValueError, r"dilation must be positive"),
        (lambda: fc.max_pool2d(X, 7), ValueError, r"output size \(0, 0\) is empty.*\(6, 6\)"),
        (
            lambda: fc.max_pool1d(np.zeros((1, 1, 2)), 2, dilation=3, padding=1),
            ValueError,
            r"reads only padding",
        ),
        (lambda: fc.max_pool2d(X[:, :, :0], 2), ValueError, r"non-empty spatial axes"),
        (lambda: fc.max_pool2d(X, 2.0), TypeError, r"kernel_size must be an int, got 2.0"),
        (lambda: fc.max_pool2d(X, (2, 2, 2)), ValueError, r"tuple of 2 ints.*length 3"),
        (lambda: fc.max_pool2d(X, 2, ceil_mode=1), TypeError, r"ceil_mode must be True or False, got 1"),
        (
            lambda: fc.max_pool2d(X, 2, return_indices="yes"),
            TypeError,
            r"return_indices must be True or False",
        ),
        (lambda: fc.max_pool2d(X.astype(np.float16), 2), TypeError, r"x has dtype float16"),
        (lambda: fc.max_pool2d(X[0, 0], 2), ValueError, r"x must have 3 or 4 dimensions.*got 2"),
        (
            lambda: fc.max_pool2d_backward(G, IDX.astype(np.int32), X.shape),
            TypeError,
            r"indices must have dtype int64.*got int32",
        ),
        (
            lambda: fc.max_pool2d_backward(G, IDX[:, :, :2], X.shape),
            ValueError,
            r"indices must have shape \(2, 3, 3, 3\), got \(2, 3, 2, 3\)",
        ),
        (
            lambda: fc.max_pool2d_backward(G, IDX.tolist(), X.shape),
            TypeError,
            r"indices must be a NumPy array",
        ),
        (
            lambda: fc.max_pool2d_backward(G, IDX, (2, 4, 6, 6)),
            ValueError,
            r"grad_output has shape \(2, 3, 3, 3\), but the max pooling's output has shape \(2, 4, 3, 3\)",
        ),
        (lambda: fc.avg_pool2d(X, 2, divisor_override=0), ValueError, r"divisor_override must be nonzero"),
        (lambda: fc.avg_pool2d(X, 2, divisor_override=1.5), TypeError, r"divisor_override must be an int"),
        (
            lambda: fc.avg_pool2d(X, 2, count_include_pad=None),
            TypeError,
            r"count_include_pad must be True or False",
        ),
        (
            lambda: fc.avg_pool2d_backward(G[:, :, :2], X.shape, 2),
            ValueError,
            r"grad_output has shape \(2, 3, 2, 3\), but the average pooling's output has shape \(2, 3, 3, 3\)",
        ),
        (lambda: fc.lp_pool2d(X, 0, 2), ValueError, r"norm_type must be positive and finite, got 0"),
        (lambda: fc.lp_pool2d(X, float("inf"), 2), ValueError, r"norm_type.*got inf.*max_pool"),
        (lambda: fc.lp_pool2d(X, "2", 2), TypeError, r"norm_type must be a number"),
        (lambda: fc.lp_pool2d_backward(G, X.astype(np.float64), 2, 2), TypeError, r"x has dtype float64"),
        (lambda: fc.adaptive_avg_pool2d(X, 0), ValueError, r"output_size must be positive, got 0"),
        (
            lambda: fc.adaptive_max_pool2d(X, (2, 2, 2)),
            ValueError,
            r"output_size must be an int or a tuple of 2",
        ),
        (
            lambda: fc.max_unpool2d(G, IDX, 2, output_size=(9, 6)),
            ValueError,
            r"output_size=\(9, 6\) must lie strictly between \(4, 4\) and \(8, 8\)",
        ),
        (
            lambda: fc.max_unpool2d(G, IDX, 2, output_size=(6,)),
            ValueError,
            r"output_size must have 2 or 4 entries",
        ),
        (lambda: fc.max_unpool2d(G, IDX[0], 2), ValueError, r"indices must have shape \(2, 3, 3, 3\)"),
        (lambda: fc.max_unpool2d(G, IDX.astype(np.float32), 2), TypeError, r"indices must have dtype int64"),
        (
            lambda: fc.max_unpool2d(G, IDX, 1, padding=2),
            ValueError,
            r"max_unpool output size \(-1, -1\) is empty",
        ),
        (
            lambda: fc.max_unpool2d_backward(X, IDX[:1]),
            ValueError,
            r"indices must have shape \(2, 3, any, any\)",
        ),
    ],
)
def test_validation(call, exc, message):
    with pytest.raises(exc, match=message):
        call()
