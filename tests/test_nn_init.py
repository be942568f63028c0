"""Initialisers: PyTorch's formulas (bounds and standard deviations), seeding, dtype, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastconv import nn
from fastconv.nn import init


def param(shape, dtype=np.float32):
    return nn.Parameter(np.zeros(shape, dtype))


def test_fans_follow_torch():
    assert init.fan_in_and_fan_out((8, 3, 5, 5)) == (75, 200)
    assert init.fan_in_and_fan_out((10, 4)) == (4, 10)
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got shape \(3,\)"):
        init.fan_in_and_fan_out((3,))


def test_kaiming_uniform_bound_and_seed():
    p = init.kaiming_uniform_(param((64, 16, 3, 3)), a=0.0, rng=1)
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 144)
    assert p.dtype == np.float32
    assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.99 * bound
    np.testing.assert_array_equal(p.data, init.kaiming_uniform_(param((64, 16, 3, 3)), rng=1).data)


def test_kaiming_normal_fan_out_relu_std():
    p = init.kaiming_normal_(param((128, 64, 3, 3), np.float64), mode="fan_out", nonlinearity="relu", rng=0)
    assert math.isclose(p.data.std(), math.sqrt(2.0 / (128 * 9)), rel_tol=0.02)
    assert abs(p.data.mean()) < 0.02 * p.data.std()


def test_xavier_uniform_and_constants():
    p = init.xavier_uniform_(param((30, 50)), gain=2.0, rng=3)
    bound = 2.0 * math.sqrt(6.0 / 80)
    assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.95 * bound
    assert np.all(init.ones_(param((2, 3))).data == 1) and np.all(init.zeros_(p).data == 0)
    assert np.all(init.constant_(param(4), 0.5).data == 0.5)


def test_a_generator_is_used_as_is():
    g = np.random.default_rng(5)
    a = init.uniform_(param(6), rng=g).data.copy()
    b = init.uniform_(param(6), rng=g).data
    assert not np.array_equal(a, b), "the shared generator advanced"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: init.kaiming_uniform_(param((2, 2)), mode="fan_avg"),
            ValueError,
            "mode must be 'fan_in' or 'fan_out'",
        ),
        (
            lambda: init.kaiming_normal_(param((2, 2)), nonlinearity="gelu"),
            ValueError,
            "nonlinearity must be one of",
        ),
        (lambda: init.uniform_(param(2), rng=1.5), TypeError, "rng must be an int, got 1.5"),
        (lambda: init.uniform_(param(2), rng=-1), ValueError, "rng must be >= 0, got -1"),
    ],
)
def test_init_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
