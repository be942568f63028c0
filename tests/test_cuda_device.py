"""The CUDA backend's device handling: import without a GPU, the error when one is missing,
transfers, allocation, the elementwise kernels, and ``Module.to("cuda")``.

Runs on the GPU when there is one, else under the CUDA simulator (see ``cuda_target``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv as fc
from fastconv import backends, config, nn
from tests import cuda_target as ct  # selects the simulator before numba.cuda loads

_NO_GPU_SCRIPT = """
import sys, warnings
warnings.simplefilter("error")
import numpy as np
import fastconv, fastconv.nn
assert "numba.cuda" not in sys.modules, "importing fastconv imported numba.cuda"
from fastconv.backends import cuda_available, get
backend = get("cuda")  # importing the backend needs numba-cuda, not a GPU
if cuda_available():
    print("GPU PRESENT")
    raise SystemExit(0)
for attempt in (lambda: backend.to_device(np.ones(3)), lambda: fastconv.nn.Conv2d(1, 1, 1).to("cuda")):
    try:
        attempt()
    except RuntimeError as err:
        print(err)
    else:
        raise SystemExit("no error without a GPU")
"""


def test_import_needs_no_gpu_and_a_cuda_request_without_one_says_so():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    run = subprocess.run([sys.executable, "-c", _NO_GPU_SCRIPT], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    if "GPU PRESENT" in run.stdout:
        pytest.skip("a GPU is present: the no-GPU error cannot be shown here")
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 2 and all("CUDA requested but no GPU is available" in line for line in lines)
    assert "device='cpu'" in lines[0]


def test_cuda_available_and_device_of():
    assert backends.cuda_available()
    assert backends.device_of(ct.to_device(np.ones(2, np.float32))) == "cuda"
    assert backends.device_of(np.ones(2)) == "cpu"


def test_transfers_and_allocation_keep_shape_dtype_and_values():
    x = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]  # non-contiguous host input
    xg = ct.backend.to_device(x)
    assert backends.device_of(xg) == "cuda" and ct.backend.to_device(xg) is xg
    np.testing.assert_array_equal(ct.backend.to_host(xg), x)
    assert ct.backend.to_host(x) is x
    for dtype in (np.float32, np.float64):
        with ct.expect_launch():
            z = ct.backend.zeros((2, 3, 5), dtype)
        assert z.dtype == dtype and z.shape == (2, 3, 5)
        np.testing.assert_array_equal(ct.to_host(z), 0)
        assert ct.backend.empty((0, 4), dtype).shape == (0, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_kernels_match_numpy(dtype, monkeypatch):
    monkeypatch.setattr(config, "CUDA_THREADS", 7)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    x[0, 0, 0, :3] = [np.nan, 0, np.inf]
    dy = rng.standard_normal(x.shape).astype(dtype)
    bias = rng.standard_normal(3).astype(dtype)
    xg, dyg, out = ct.to_device(x), ct.to_device(dy), ct.backend.empty(x.shape, dtype)
    with ct.expect_launch():
        ct.backend.relu_forward(out, xg)
    np.testing.assert_array_equal(ct.to_host(out), np.where(x > 0, x, 0) + np.where(np.isnan(x), x, 0))
    ct.backend.relu_backward(out, dyg, xg)
    np.testing.assert_array_equal(ct.to_host(out), np.where(x <= 0, 0, dy))
    ct.backend.fill(out, 2)
    ct.backend.add_(out, dyg)
    np.testing.assert_array_equal(ct.to_host(out), dtype(2) + dy)
    ct.backend.add_bias(out, ct.to_device(bias))
    np.testing.assert_array_equal(ct.to_host(out), dtype(2) + dy + bias[:, None, None])


def test_module_to_cuda_moves_parameters_and_computes_on_the_gpu():
    rng = np.random.default_rng(0)
    layer = nn.Conv2d(2, 3, 3, padding=1, rng=np.random.default_rng(1))
    want = layer(x := rng.standard_normal((1, 2, 4, 5)).astype(np.float32))
    layer.to("cuda")
    assert all(backends.device_of(p.data) == "cuda" for p in layer.parameters())
    with ct.expect_launch():
        y = layer(ct.to_device(x))
    np.testing.assert_allclose(ct.to_host(y), want, rtol=1e-5, atol=1e-6)
    layer.to("cpu")
    assert all(isinstance(p.data, np.ndarray) for p in layer.parameters())
    np.testing.assert_allclose(fc.conv2d(x, layer.weight.data, layer.bias.data, padding=1), want, rtol=1e-6)
