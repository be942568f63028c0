"""CrossEntropyLoss and MSELoss: values and gradients against PyTorch and finite differences,
stability for huge logits in float32, and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastconv import nn
from tests.nn_gradcheck import numeric_grad


def test_cross_entropy_is_stable_for_logits_of_1e8_in_float32():
    logits = np.array([[1e8, -1e8, 0.0], [0.0, 1e8, 1e8], [-1e8, -1e8, -1e8]], np.float32)
    labels = np.array([0, 2, 1])
    ce = nn.CrossEntropyLoss()
    loss = ce(logits, labels)
    assert math.isclose(loss, (0.0 + math.log(2) + math.log(3)) / 3, rel_tol=1e-6)
    grad = ce.backward()
    assert grad.dtype == np.float32 and np.all(np.isfinite(grad))
    want = np.array([[0, 0, 0], [0, 0.5, -0.5], [1 / 3, -2 / 3, 1 / 3]], np.float32) / 3
    np.testing.assert_allclose(grad, want, atol=1e-7)
    wrong = ce(logits, np.array([1, 0, 1]))
    assert math.isclose(wrong, (2e8 + (1e8 + math.log(2)) + math.log(3)) / 3, rel_tol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_matches_torch(reduction, smoothing, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((5, 4)) * 3).astype(dtype)
    labels = rng.integers(0, 4, 5)
    ce = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    loss = ce(logits, labels)
    grad = ce.backward(2.0)
    lt = torch.tensor(logits, requires_grad=True)
    want = torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)(lt, torch.tensor(labels))
    (2 * want).backward()
    tol = 1e-6 if dtype == np.float32 else 1e-13
    assert math.isclose(loss, want.item(), rel_tol=tol)
    np.testing.assert_allclose(grad, lt.grad.numpy(), rtol=tol, atol=tol)
    assert grad.dtype == dtype


def test_cross_entropy_with_probability_targets_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 5))
    target = rng.dirichlet(np.ones(5), size=3)
    ce = nn.CrossEntropyLoss(label_smoothing=0.1)
    loss, grad = ce(logits, target), ce.backward()
    lt = torch.tensor(logits, requires_grad=True)
    want = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(lt, torch.tensor(target))
    want.backward()
    assert math.isclose(loss, want.item(), rel_tol=1e-13)
    np.testing.assert_allclose(grad, lt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "criterion",
    [nn.CrossEntropyLoss(label_smoothing=0.3), nn.MSELoss(), nn.MSELoss("sum")],
    ids=["cross_entropy", "mse_mean", "mse_sum"],
)
def test_loss_gradient_matches_finite_differences(criterion):
    rng = np.random.default_rng(2)
    pred = rng.standard_normal((4, 3))
    target = (
        rng.integers(0, 3, 4) if isinstance(criterion, nn.CrossEntropyLoss) else rng.standard_normal((4, 3))
    )
    criterion(pred, target)
    grad = criterion.backward()
    np.testing.assert_allclose(
        grad, numeric_grad(lambda: criterion(pred, target), pred), rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_torch(reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    pred, target = (
        rng.standard_normal((2, 3, 2)).astype(np.float32),
        rng.standard_normal((2, 3, 2)).astype(np.float32),
    )
    mse = nn.MSELoss(reduction)
    loss, grad = mse(pred, target), mse.backward()
    pt = torch.tensor(pred, requires_grad=True)
    want = torch.nn.MSELoss(reduction=reduction)(pt, torch.tensor(target))
    want.backward()
    assert math.isclose(loss, want.item(), rel_tol=1e-6)
    np.testing.assert_allclose(grad, pt.grad.numpy(), rtol=1e-6)
    assert isinstance(loss, float) and grad.dtype == np.float32


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: nn.CrossEntropyLoss()(np.zeros((2, 3), np.float32), np.array([0, 3])),
            ValueError,
            r"target class indices must be in \[0, 3\), got values in \[0, 3\]",
        ),
        (
            lambda: nn.CrossEntropyLoss()(np.zeros((2, 3), np.float32), np.array([0, 1, 2])),
            ValueError,
            r"integer target must have shape \(2,\)",
        ),
        (
            lambda: nn.CrossEntropyLoss()(np.zeros(3, np.float32), np.array([0])),
            ValueError,
            "logits must have 2 dimensions",
        ),
        (
            lambda: nn.CrossEntropyLoss()(np.zeros((2, 3), np.int64), np.array([0, 1])),
            TypeError,
            "logits has dtype int64",
        ),
        (lambda: nn.CrossEntropyLoss(label_smoothing=-0.1), ValueError, "label_smoothing must be in"),
        (
            lambda: nn.MSELoss()(np.zeros(3, np.float32), np.zeros(4, np.float32)),
            ValueError,
            r"target has shape \(4,\) but prediction has shape \(3,\)",
        ),
    ],
)
def test_loss_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
