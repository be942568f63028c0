"""Every layer's backward (input and parameter gradients) against central finite differences
in float64, plus the behaviour of the parameter-free layers (Dropout, dtype, errors)."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import nn
from tests.nn_gradcheck import check_layer_gradients

F64 = np.float64

LAYERS = {
    "conv1d_stride_pad": (lambda: nn.Conv1d(2, 3, 3, stride=2, padding=1, dtype=F64, rng=0), (2, 2, 7)),
    "conv2d_groups_same_reflect": (
        lambda: nn.Conv2d(4, 6, 3, groups=2, padding="same", padding_mode="reflect", dtype=F64, rng=1),
        (2, 4, 5, 4),
    ),
    "conv2d_dilated_nobias": (
        lambda: nn.Conv2d(2, 3, (2, 3), stride=(2, 1), dilation=(1, 2), bias=False, dtype=F64, rng=2),
        (1, 2, 6, 7),
    ),
    "conv2d_unbatched_circular": (
        lambda: nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular", dtype=F64, rng=3),
        (2, 4, 4),
    ),
    "conv3d": (lambda: nn.Conv3d(2, 2, (1, 2, 2), padding=(0, 1, 0), dtype=F64, rng=4), (1, 2, 2, 3, 3)),
    "conv_transpose2d": (
        lambda: nn.ConvTranspose2d(
            4, 2, 3, stride=2, padding=1, output_padding=1, groups=2, dtype=F64, rng=16
        ),
        (2, 4, 3, 2),
    ),
    "conv_transpose1d_dilated": (
        lambda: nn.ConvTranspose1d(2, 3, 2, dilation=2, bias=False, dtype=F64, rng=17),
        (2, 2, 4),
    ),
    "conv_transpose3d": (
        lambda: nn.ConvTranspose3d(2, 2, (1, 2, 2), stride=(1, 2, 1), dtype=F64, rng=18),
        (1, 2, 2, 2, 3),
    ),
    "max_pool2d": (lambda: nn.MaxPool2d(3, 2, padding=1), (2, 2, 5, 6)),
    "max_pool1d_ceil": (lambda: nn.MaxPool1d(2, ceil_mode=True), (2, 2, 7)),
    "max_pool3d_dilated": (lambda: nn.MaxPool3d(2, 1, dilation=(1, 2, 1)), (1, 2, 3, 4, 3)),
    "avg_pool2d": (lambda: nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), (2, 2, 5, 6)),
    "avg_pool1d": (lambda: nn.AvgPool1d(2), (2, 2, 7)),
    "avg_pool3d": (lambda: nn.AvgPool3d(2, ceil_mode=True), (1, 2, 3, 4, 3)),
    "lp_pool2d": (lambda: nn.LPPool2d(2, 2), (2, 2, 4, 5)),
    "adaptive_avg_pool2d": (lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 2, 5, 4)),
    "adaptive_max_pool2d": (lambda: nn.AdaptiveMaxPool2d(2), (2, 2, 5, 4)),
    "linear": (lambda: nn.Linear(5, 3, dtype=F64, rng=5), (4, 5)),
    "linear_3d_input": (lambda: nn.Linear(4, 2, dtype=F64, rng=6), (2, 3, 4)),
    "flatten": (lambda: nn.Flatten(), (2, 3, 2, 2)),
    "relu": (lambda: nn.ReLU(), (3, 7)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), (3, 7)),
    "sigmoid": (lambda: nn.Sigmoid(), (3, 7)),
    "tanh": (lambda: nn.Tanh(), (3, 7)),
    "softmax_dim1": (lambda: nn.Softmax(dim=1), (3, 5, 2)),
    "softmax_dim_last": (lambda: nn.Softmax(dim=-1), (3, 4)),
    "batchnorm1d_2d_input": (lambda: nn.BatchNorm1d(3, dtype=F64), (5, 3)),
    "batchnorm1d_3d_input": (lambda: nn.BatchNorm1d(2, dtype=F64), (3, 2, 4)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3, dtype=F64), (2, 3, 3, 2)),
    "batchnorm2d_no_affine": (lambda: nn.BatchNorm2d(2, affine=False, dtype=F64), (2, 2, 2, 3)),
    "batchnorm2d_eval": (lambda: _stepped_batchnorm().eval(), (2, 3, 2, 2)),
    "batchnorm2d_no_running_stats_eval": (
        lambda: nn.BatchNorm2d(3, track_running_stats=False, dtype=F64).eval(),
        (2, 3, 2, 2),
    ),
    "lrn_odd": (lambda: nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=1.0), (2, 5, 2, 2)),
    "lrn_even": (lambda: nn.LocalResponseNorm(4, alpha=0.3, beta=0.6, k=2.0), (2, 6, 3)),
    "residual_identity": (
        lambda: nn.Residual(
            nn.Sequential(
                nn.Conv2d(2, 2, 3, padding=1, dtype=F64, rng=7),
                nn.Tanh(),
                nn.Conv2d(2, 2, 1, dtype=F64, rng=8),
            )
        ),
        (2, 2, 4, 4),
    ),
    "residual_projection": (
        lambda: nn.Residual(
            nn.Sequential(
                nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype=F64, rng=9), nn.BatchNorm2d(3, dtype=F64)
            ),
            nn.Conv2d(2, 3, 1, stride=2, dtype=F64, rng=10),
        ),
        (2, 2, 5, 5),
    ),
    "concat_branches": (
        lambda: nn.Concat(
            nn.Conv2d(3, 2, 1, dtype=F64, rng=11),
            nn.Sequential(
                nn.Conv2d(3, 1, 1, dtype=F64, rng=12),
                nn.Sigmoid(),
                nn.Conv2d(1, 2, 3, padding=1, dtype=F64, rng=13),
            ),
            nn.Tanh(),
        ),
        (2, 3, 3, 3),
    ),
    "sequential_head": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 3, dtype=F64, rng=14),
            nn.LeakyReLU(0.1),
            nn.Flatten(),
            nn.Linear(8, 3, dtype=F64, rng=15),
        ),
        (2, 1, 4, 4),
    ),
}


def _stepped_batchnorm() -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(3, dtype=F64)
    rng = np.random.default_rng(99)
    for _ in range(2):
        bn(rng.standard_normal((4, 3, 2, 2)) * 3 + 1)
    bn.weight.data[:] = [0.5, 2.0, -1.0]
    bn.bias.data[:] = [0.1, -0.2, 0.3]
    return bn


@pytest.mark.parametrize("name", LAYERS)
def test_backward_matches_finite_differences(name):
    make, shape = LAYERS[name]
    x = np.random.default_rng(len(name)).standard_normal(shape)
    check_layer_gradients(make(), x)


@pytest.mark.parametrize(
    "name",
    ["conv2d_groups_same_reflect", "linear", "batchnorm2d", "lrn_odd", "softmax_dim1", "residual_projection"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_and_input_not_mutated(name, dtype):
    make, shape = LAYERS[name]
    m = make().astype(dtype)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    x.flags.writeable = False
    before = x.copy()
    y = m(x)
    dx = m.backward(np.ones_like(y))
    assert y.dtype == dtype and dx.dtype == dtype
    assert all(p.grad.dtype == dtype for p in m.parameters())
    np.testing.assert_array_equal(x, before)


def test_parameter_gradients_accumulate_until_zero_grad():
    m = nn.Linear(3, 2, dtype=F64, rng=0)
    x = np.random.default_rng(1).standard_normal((4, 3))
    assert m.weight.grad is None
    m(x)
    m.backward(np.ones((4, 2)))
    once = m.weight.grad.copy()
    m(x)
    m.backward(np.ones((4, 2)))
    np.testing.assert_allclose(m.weight.grad, 2 * once)
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(1, 1, 1),
        nn.Linear(2, 2),
        nn.ReLU(),
        nn.BatchNorm2d(1),
        nn.Dropout(),
        nn.Flatten(),
        nn.Softmax(1),
        nn.LocalResponseNorm(2),
        nn.MaxPool2d(2),
        nn.CrossEntropyLoss(),
        nn.Sequential(nn.ReLU()),
        nn.Residual(nn.ReLU()),
        nn.Concat(nn.ReLU()),
    ],
    ids=lambda m: type(m).__name__,
)
def test_backward_before_forward_raises(layer):
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward\(\)"):
        layer.backward(np.ones((1, 1, 2, 2), np.float32))


def test_grad_output_shape_is_checked():
    m = nn.Linear(3, 2)
    m(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"grad_output has shape \(4, 3\).*returned shape \(4, 2\)"):
        m.backward(np.zeros((4, 3), np.float32))


def test_dropout_is_seeded_inverted_and_identity_in_eval():
    x = np.ones((50, 40), np.float32)
    a, b = nn.Dropout(0.25, rng=7), nn.Dropout(0.25, rng=7)
    ya, yb = a(x), b(x)
    np.testing.assert_array_equal(ya, yb)
    assert set(np.unique(ya)) == {0.0, np.float32(1 / 0.75)}
    assert 0.2 < np.mean(ya == 0) < 0.3
    assert not np.array_equal(a(x), ya), "a second call must draw a new mask"
    g = np.arange(x.size, dtype=np.float32).reshape(x.shape)
    mask = a(x)  # x is all ones: the output is the scaled mask
    np.testing.assert_array_equal(a.backward(g), g * mask)
    a.eval()
    np.testing.assert_array_equal(a(x), x)
    np.testing.assert_array_equal(a.backward(g), g)
    assert np.all(nn.Dropout(1.0, rng=0)(x) == 0)


def test_residual_and_concat_report_mismatched_shapes():
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(
        ValueError, match=r"body output has shape \(1, 3, 4, 4\).*shortcut gives \(1, 2, 4, 4\)"
    ):
        nn.Residual(nn.Conv2d(2, 3, 1))(x)
    with pytest.raises(ValueError, match="differ outside the concatenation axis"):
        nn.Concat(nn.Conv2d(2, 3, 1), nn.Conv2d(2, 3, 3))(x)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, "groups=2 must divide in_channels=3"),
        (lambda: nn.Conv2d(2, 4, 0), ValueError, "kernel_size must be positive, got 0"),
        (lambda: nn.Conv2d(2, 4, 3, padding="same", stride=2), ValueError, "padding='same'"),
        (lambda: nn.Conv2d(2, 4, 3, padding_mode="mirror"), ValueError, "padding_mode must be one of"),
        (lambda: nn.Linear(2, 3, dtype=np.int32), TypeError, "dtype must be float32 or float64"),
        (lambda: nn.Dropout(1.5), ValueError, r"p must be in \[0, 1\], got 1.5"),
        (lambda: nn.CrossEntropyLoss(reduction="avg"), ValueError, "reduction must be one of"),
        (lambda: nn.BatchNorm2d(3, eps=0), ValueError, "eps must be a positive finite number, got 0"),
        (lambda: nn.BatchNorm2d(3, momentum=2.0), ValueError, r"momentum must be in \[0, 1\], got 2.0"),
        (lambda: nn.LeakyReLU("0.1"), TypeError, "negative_slope must be a number, got '0.1'"),
        (lambda: nn.LocalResponseNorm(5, beta=float("nan")), ValueError, "beta must be finite, got nan"),
        (lambda: nn.Concat(), ValueError, "Concat needs at least one branch"),
        (lambda: nn.Sequential(nn.ReLU(), np.zeros(2)), TypeError, "Sequential takes Modules, got ndarray"),
        (
            lambda: nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect"),
            ValueError,
            "only supports padding_mode='zeros'",
        ),
    ],
)
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_forward_errors_name_the_problem():
    with pytest.raises(
        ValueError, match=r"Linear expects 3 features on axis -1 of x, got x of shape \(2, 4\)"
    ):
        nn.Linear(3, 2)(np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="x has dtype float64 but weight has dtype float32"):
        nn.Linear(3, 2)(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"BatchNorm2d expects 3 features on axis 1"):
        nn.BatchNorm2d(3)(np.zeros((2, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(np.zeros((1, 3), np.float32))
