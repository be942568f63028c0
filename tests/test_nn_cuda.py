"""Layers on CUDA arrays after ``Module.to("cuda")``: convolution, ReLU, pooling, Flatten,
Linear and the loss match the CPU model; NumPy-only layers refuse CUDA arrays clearly.

Runs on the GPU when there is one, else under the CUDA simulator (see ``cuda_target``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from fastconv import backends, nn
from fastconv.nn.module import move
from tests import cuda_target as ct  # selects the simulator before numba.cuda loads


def small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=0), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(12, 4, dtype=np.float64, rng=1),
    )  # fmt: skip


def test_cnn_on_cuda_matches_cpu_forward_backward_and_accumulation():
    cpu = small_cnn()
    gpu = copy.deepcopy(cpu).to("cuda")
    assert all(backends.device_of(p.data) == "cuda" for p in gpu.parameters())
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((3, 2, 4, 4)), np.array([0, 3, 1])
    ce_cpu, ce_gpu = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    want = ce_cpu(cpu(x), labels)
    dx_want = cpu.backward(ce_cpu.backward())
    with ct.expect_launch():
        loss = ce_gpu(gpu(move(x, "cuda")), labels)
        grad = ce_gpu.backward()
        assert backends.device_of(grad) == "cuda"
        dx = gpu.backward(grad)
        gpu.backward(grad)  # a second backward accumulates on the device
    assert abs(loss - want) < 1e-12
    np.testing.assert_allclose(move(dx, "cpu"), dx_want, rtol=1e-10, atol=1e-12)
    for (name, p), q in zip(gpu.named_parameters(), cpu.parameters(), strict=True):
        np.testing.assert_allclose(move(p.grad, "cpu"), 2 * q.grad, rtol=1e-10, atol=1e-12, err_msg=name)


def test_state_dict_of_a_cuda_model_is_numpy_and_loading_keeps_the_device():
    gpu = small_cnn().to("cuda")
    sd = gpu.state_dict()
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    sd["4.bias"] = np.arange(4.0)
    gpu.load_state_dict(sd)
    assert backends.device_of(gpu[4].bias.data) == "cuda"
    np.testing.assert_array_equal(move(gpu[4].bias.data, "cpu"), np.arange(4.0))
    back = gpu.to("cpu")
    assert all(isinstance(p.data, np.ndarray) for p in back.parameters())


@pytest.mark.parametrize(
    "layer",
    [nn.Softmax(1), nn.Concat(nn.ReLU(), nn.ReLU()), nn.LocalResponseNorm(2)],
    ids=lambda m: type(m).__name__,
)
def test_numpy_layers_refuse_cuda_arrays(layer):
    x = move(np.zeros((2, 2, 2, 2)), "cuda")
    with pytest.raises(
        TypeError, match=f"{type(layer).__name__} computes in NumPy and takes CPU arrays only"
    ):
        layer(x)
