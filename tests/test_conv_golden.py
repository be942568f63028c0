"""The worked examples of the lecture notes (seeds 000 and 001) as golden tests."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv import shapes

# Seed 000, "CONVOLUTION (DEEP LEARNING)": a 5x5x3 input (shown padded to 7x7x3), two 3x3x3
# filters, pad 1, stride 2. The notes print each channel as a 2-D slice x[:, :, c].
X = np.array(
    [
        [[0, 0, 2, 2, 1], [0, 1, 0, 2, 1], [1, 0, 0, 2, 1], [0, 0, 0, 1, 0], [1, 2, 1, 1, 2]],
        [[0, 1, 1, 2, 1], [0, 2, 1, 1, 1], [0, 2, 1, 0, 2], [0, 2, 2, 1, 0], [2, 0, 1, 0, 1]],
        [[2, 2, 1, 1, 1], [0, 1, 0, 0, 1], [0, 1, 1, 0, 1], [0, 2, 1, 1, 0], [0, 2, 1, 1, 2]],
    ]
)  # (C, H, W)
W0 = np.array(
    [
        [[1, 0, -1], [0, 1, -1], [-1, 0, 1]],
        [[1, 1, 0], [1, 0, -1], [1, 1, 1]],
        [[-1, -1, 0], [-1, 0, 0], [0, 1, 1]],
    ]
)
W1 = np.array(
    [
        [[1, 0, -1], [-1, -1, -1], [0, 1, 0]],
        [[-1, 0, 0], [-1, 0, 1], [1, 1, 1]],
        [[0, 0, -1], [1, -1, 1], [-1, 1, 0]],
    ]
)
OUT = np.array(
    [
        [[4, 3, 4], [3, 9, 5], [0, -1, 3]],
        [[3, 2, -1], [2, -3, -3], [-3, -6, -4]],
    ]
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_notes_worked_example(dtype):
    x = X[None].astype(dtype)
    w = np.stack([W0, W1]).astype(dtype)
    b = np.array([1, 0], dtype)
    y = fc.conv2d(x, w, b, stride=2, padding=1)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y[0], OUT)  # integer data: exact


def test_notes_worked_example_unbatched():
    w = np.stack([W0, W1]).astype(np.float32)
    y = fc.conv2d(X.astype(np.float32), w, np.array([1, 0], np.float32), stride=2, padding=1)
    np.testing.assert_array_equal(y, OUT)


@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, out_shape",
    [
        # seed 001: 32x32x3 input, ten 5x5 filters, stride 1, pad 2 -> 32x32x10
        ((1, 3, 32, 32), (10, 3, 5, 5), 1, 2, (1, 10, 32, 32)),
        # seed 001: 7x7 input, 3x3 filter, stride 1 -> 5x5; stride 2 -> 3x3
        ((1, 1, 7, 7), (1, 1, 3, 3), 1, 0, (1, 1, 5, 5)),
        ((1, 1, 7, 7), (1, 1, 3, 3), 2, 0, (1, 1, 3, 3)),
        # AlexNet conv1: 227x227x3, 96 11x11 filters, stride 4 -> 55x55x96
        ((1, 3, 227, 227), (96, 3, 11, 11), 4, 0, (1, 96, 55, 55)),
    ],
)
def test_output_size_formula(x_shape, w_shape, stride, padding, out_shape):
    """(N - F + 2P)/S + 1, checked on the geometry and on a real call for the small ones."""
    geom = shapes.conv_geometry(2, x_shape, w_shape, stride, padding, 1, 1)
    assert (x_shape[0], w_shape[0], *geom.out_size) == out_shape
    if np.prod(x_shape) < 10_000:
        y = fc.conv2d(
            np.ones(x_shape, np.float32), np.ones(w_shape, np.float32), stride=stride, padding=padding
        )
        assert y.shape == out_shape


def test_seven_by_seven_stride_three_does_not_fit():
    """Seed 001: a 3x3 filter at stride 3 on 7x7 'doesn't fit'; PyTorch floors to 2x2."""
    geom = shapes.conv_geometry(2, (1, 1, 7, 7), (1, 1, 3, 3), 3, 0, 1, 1)
    assert geom.out_size == (2, 2)
