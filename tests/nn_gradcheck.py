"""Finite-difference and PyTorch checks shared by the ``tests/test_nn_*.py`` files."""

from __future__ import annotations

import numpy as np

from fastconv import nn


def numeric_grad(f, a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to every entry of ``a`` (in place,
    restored afterwards)."""
    g = np.zeros_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


def check_layer_gradients(module: nn.Module, x: np.ndarray, seed: int = 0, tol: float = 1e-6) -> None:
    """``module.backward`` (input and parameter gradients) against central differences of the
    random projection loss ``sum(module(x) * r)``, in float64."""
    assert x.dtype == np.float64
    x = x.copy()
    r = np.random.default_rng(seed).standard_normal(module(x).shape)
    loss = lambda: float(np.sum(module(x) * r))  # noqa: E731

    module.zero_grad()
    module(x)
    dx = module.backward(r)
    grads = {name: p.grad.copy() for name, p in module.named_parameters()}
    assert dx.shape == x.shape and dx.dtype == x.dtype
    want = numeric_grad(loss, x)
    np.testing.assert_allclose(dx, want, rtol=tol, atol=tol, err_msg="input gradient")
    assert np.abs(want).max() > 1e-3, "the check is vacuous: the input gradient is ~0"
    for name, p in module.named_parameters():
        np.testing.assert_allclose(
            grads[name], numeric_grad(loss, p.data), rtol=tol, atol=tol, err_msg=f"gradient of {name}"
        )
