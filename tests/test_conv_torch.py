"""PyTorch as an independent oracle (float64; skipped when torch is absent)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv as fc
from tests.conftest import conv_configs, rand

torch = pytest.importorskip("torch")

MODES = ("zeros", "reflect", "replicate", "circular")


# torch warns that it copies the input for 'same' with even kernels; that is its business
@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@settings(max_examples=40, deadline=None)
@given(cfg=conv_configs(modes=MODES, allow_empty_batch=False), seed=st.integers(0, 2**32 - 1))
def test_matches_torch_float64(cfg, seed):
    d, x_shape, w_shape, kw = cfg
    rng = np.random.default_rng(seed)
    x, w, b = (
        rand(rng, x_shape, np.float64),
        rand(rng, w_shape, np.float64),
        rand(rng, (w_shape[0],), np.float64),
    )
    layer = getattr(torch.nn, f"Conv{d}d")(x_shape[1], w_shape[0], w_shape[2:], dtype=torch.float64, **kw)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        layer.bias.copy_(torch.from_numpy(b))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = layer(xt)
    g = rand(rng, tuple(yt.shape), np.float64)
    yt.backward(torch.from_numpy(g))

    conv = getattr(fc, f"conv{d}d")
    np.testing.assert_allclose(conv(x, w, b, **kw), yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    dx = getattr(fc, f"conv{d}d_backward_input")(g, w, x_shape, **kw)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    dw = getattr(fc, f"conv{d}d_backward_weight")(g, x, w_shape, **kw)
    np.testing.assert_allclose(dw, layer.weight.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        getattr(fc, f"conv{d}d_backward_bias")(g), layer.bias.grad.numpy(), rtol=1e-10, atol=1e-10
    )
