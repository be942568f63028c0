"""Training on CUDA arrays: activations, optimizer updates and a whole training step run on
the device and match the CPU.

Runs on the GPU when there is one, else under the CUDA simulator (see ``cuda_target``).
LeNet-5 itself takes minutes per step in the simulator, so the training step is checked on
a small network of LeNet-5's layer types (Conv2d, Tanh, AvgPool2d, Flatten, Linear).
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys

import numpy as np
import pytest

from fastconv import backends, config, models, nn, optim, train
from fastconv.nn.module import move
from tests import cuda_target as ct  # selects the simulator before numba.cuda loads

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


def _kernels_since(before: int) -> set[str]:
    count = ct.device.launches - before
    return {name for name, _, _ in list(ct.device.recent)[-count:]} if count else set()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_on_cuda_matches_cpu(name, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4)).astype(dtype) * 3
    x.flat[:4] = [0.0, -100.0, 100.0, -0.5]  # zero, and |x| where exp overflows
    g = rng.standard_normal(x.shape).astype(dtype)
    cpu, gpu = ACTIVATIONS[name](), ACTIVATIONS[name]()
    y_want, dx_want = cpu(x), cpu.backward(g)
    before = ct.device.launches
    y = gpu(move(x, "cuda"))
    dx = gpu.backward(move(g, "cuda"))
    assert {f"_{name}_forward_kernel", f"_{name}_backward_kernel"} <= _kernels_since(before)
    assert backends.device_of(y) == "cuda" and backends.device_of(dx) == "cuda"
    assert y.dtype == dtype and dx.dtype == dtype
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(move(y, "cpu"), y_want, **tol)
    np.testing.assert_allclose(move(dx, "cpu"), dx_want, **tol)
    assert np.isfinite(move(y, "cpu")).all()


@pytest.mark.parametrize("training", [True, False])
def test_seeded_dropout_on_cuda_drops_what_the_cpu_drops(training):
    x = np.random.default_rng(4).standard_normal((2, 3, 5)).astype(np.float32)
    cpu, gpu = nn.Dropout(0.4, rng=7).train(training), nn.Dropout(0.4, rng=7).train(training)
    y_want, dx_want = cpu(x), cpu.backward(2 * x)
    with ct.expect_launch() if training else contextlib.nullcontext():
        y = gpu(move(x, "cuda"))
        dx = gpu.backward(move(2 * x, "cuda"))
    assert backends.device_of(y) == "cuda" and backends.device_of(dx) == "cuda"
    np.testing.assert_array_equal(move(y, "cpu"), y_want)
    np.testing.assert_array_equal(move(dx, "cpu"), dx_want)
    assert (y_want == 0).any() == training  # training drops some elements, evaluation none


BATCHNORMS = {
    "bn2d": (lambda: nn.BatchNorm2d(3), (2, 3, 2, 3)),
    "bn2d_cumulative_no_affine": (lambda: nn.BatchNorm2d(3, momentum=None, affine=False), (2, 3, 2, 2)),
    "bn1d_features": (lambda: nn.BatchNorm1d(4, track_running_stats=False), (5, 4)),
}


@pytest.mark.parametrize("name", BATCHNORMS)
def test_batchnorm_on_cuda_matches_cpu(name):
    make, shape = BATCHNORMS[name]
    cpu = make()
    gpu = copy.deepcopy(cpu).to("cuda")
    rng = np.random.default_rng(6)
    for mode in ("train", "train", "eval"):
        cpu.train(mode == "train"), gpu.train(mode == "train")
        x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        y_want, dx_want = cpu(x), cpu.backward(g)
        with ct.expect_launch():
            y = gpu(move(x, "cuda"))
            dx = gpu.backward(move(g, "cuda"))
        assert backends.device_of(y) == "cuda" and backends.device_of(dx) == "cuda"
        np.testing.assert_allclose(move(y, "cpu"), y_want, rtol=1e-5, atol=1e-5, err_msg=mode)
        np.testing.assert_allclose(move(dx, "cpu"), dx_want, rtol=1e-4, atol=1e-5, err_msg=mode)
    for (key, want), got in zip(cpu.state_dict().items(), gpu.state_dict().values(), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype, key  # num_batches_tracked: 0-d
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=key)
    for p, q in zip(cpu.parameters(), gpu.parameters(), strict=True):
        np.testing.assert_allclose(move(q.grad, "cpu"), p.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_resnet_block_and_residual_on_cuda_match_cpu(stride):
    kw = dict(dtype=np.float32, rng=np.random.default_rng(8))
    cpu = nn.Sequential(
        models.BasicBlock(2, 2 * stride, stride, **kw),
        nn.Residual(nn.Conv2d(2 * stride, 2 * stride, 1, **kw)),
    )
    gpu = copy.deepcopy(cpu).to("cuda")
    x = np.random.default_rng(9).standard_normal((2, 2, 3, 3)).astype(np.float32)
    y_want = cpu(x)
    dx_want = cpu.backward(np.ones_like(y_want))
    with ct.expect_launch():
        y = gpu(move(x, "cuda"))
        dx = gpu.backward(move(np.ones_like(y_want), "cuda"))
    np.testing.assert_allclose(move(y, "cpu"), y_want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(move(dx, "cpu"), dx_want, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        np.testing.assert_allclose(move(q.grad, "cpu"), p.grad, rtol=1e-4, atol=1e-5, err_msg=name)


OPTIMIZERS = {
    "sgd": (optim.SGD, dict(lr=0.1)),
    "sgd_momentum_dampening_wd": (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    "sgd_nesterov": (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)),
    "adam": (optim.Adam, dict(lr=0.01)),
    "adam_l2_amsgrad": (optim.Adam, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    "adamw_amsgrad": (optim.AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_steps_on_cuda_match_cpu(name):
    cls, kw = OPTIMIZERS[name]
    rng = np.random.default_rng(2)
    cpu = [nn.Parameter(rng.standard_normal(s).astype(np.float32)) for s in ((3, 2), (5,))]
    gpu = [nn.Parameter(move(p.data, "cuda")) for p in cpu]
    opt_cpu, opt_gpu = cls(cpu, **kw), cls(gpu, **kw)
    for step in range(3):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in cpu]
        grads[1][0] = [-50.0, 0.0, 1e-3][step]  # v shrinks: amsgrad keeps its maximum
        for p, q, g in zip(cpu, gpu, grads, strict=True):
            p.grad, q.grad = g, move(g, "cuda")
        opt_cpu.step()
        before = ct.device.launches
        opt_gpu.step()
        kernels = _kernels_since(before) - {"_fill_kernel"}  # fill: Adam's zeroed state
        assert kernels == {"_adam_kernel" if "adam" in name else "_sgd_kernel"}
    for p, q in zip(cpu, gpu, strict=True):
        assert backends.device_of(q.data) == "cuda"
        np.testing.assert_allclose(move(q.data, "cpu"), p.data, rtol=1e-6, atol=1e-7)
        state_cpu, state_gpu = opt_cpu.state[id(p)], opt_gpu.state[id(q)]
        assert state_cpu.keys() == state_gpu.keys()
        for key, value in state_gpu.items():
            if key != "step":
                assert backends.device_of(value) == "cuda", key
                np.testing.assert_allclose(move(value, "cpu"), state_cpu[key], rtol=1e-6, atol=1e-7)
    opt_gpu.zero_grad()
    assert all(q.grad is None for q in gpu)


def lenet_like() -> nn.Sequential:
    kw = dict(dtype=np.float32, rng=np.random.default_rng(0))
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, **kw), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(2, 3, 2, **kw), nn.Tanh(), nn.Flatten(),
        nn.Linear(3, 4, **kw), nn.Tanh(), nn.Linear(4, 3, **kw),
    )  # fmt: skip


def test_training_steps_on_cuda_match_cpu(monkeypatch):
    monkeypatch.setattr(config, "CUDA_THREADS", 8)  # fewer simulated threads per launch
    cpu = lenet_like()
    gpu = copy.deepcopy(cpu).to("cuda")
    start = [p.data.copy() for p in cpu.parameters()]
    opts = [
        optim.SGD(m.parameters(), lr=0.5, momentum=0.9, nesterov=True, weight_decay=5e-4) for m in (cpu, gpu)
    ]
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((2, 1, 6, 6)).astype(np.float32), np.array([1, 2])
    for _ in range(2):
        want = train.train_step(cpu, opts[0], nn.CrossEntropyLoss(), x, y, "cpu")
        before = ct.device.launches
        loss, correct = train.train_step(gpu, opts[1], nn.CrossEntropyLoss(), x, y, "cuda")
        assert "_sgd_kernel" in _kernels_since(before)
        assert np.isfinite(loss) and loss == pytest.approx(want[0], rel=1e-5) and correct == want[1]
    for (name, q), p, p0 in zip(gpu.named_parameters(), cpu.parameters(), start, strict=True):
        assert backends.device_of(q.data) == "cuda", name
        assert not np.array_equal(p.data, p0), name  # training moved every parameter
        np.testing.assert_allclose(move(q.data, "cpu"), p.data, rtol=1e-5, atol=1e-6, err_msg=name)
    gpu.zero_grad()
    assert all(q.grad is None for q in gpu.parameters())


def _idx_folder(folder) -> str:
    rng = np.random.default_rng(5)
    folder.mkdir()
    for split, n in (("train", 4), ("t10k", 4)):
        for kind, array in (
            ("images-idx3", rng.integers(0, 256, (n, 28, 28))),
            ("labels-idx1", np.arange(n) % 3),
        ):
            header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
            (folder / f"{split}-{kind}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())
    return str(folder)


def test_train_command_with_device_cuda(tmp_path, monkeypatch, capsys):
    # the whole command on the device, with a network small enough for the simulator
    def tiny(num_classes, in_channels, rng):
        kw = dict(dtype=np.float32, rng=rng)
        return nn.Sequential(
            nn.AvgPool2d(8), nn.Conv2d(in_channels, 2, 3, **kw), nn.Tanh(), nn.Flatten(),
            nn.Linear(8, num_classes, **kw),
        )  # fmt: skip

    monkeypatch.setitem(train.models.MODELS, "lenet5", tiny)
    monkeypatch.setattr(config, "CUDA_THREADS", 8)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # no plots: faster
    before = ct.device.launches
    argv = ["--device", "cuda", "--dataset", _idx_folder(tmp_path / "data"), "--epochs", "1"]
    assert train.main([*argv, "--batch-size", "2", "--limit", "1", "--out", str(tmp_path / "out")]) == 0
    assert ct.device.launches > before
    assert "test accuracy: " in capsys.readouterr().out
    history = (tmp_path / "out" / "history.json").read_text()
    assert len(json.loads(history)["step_loss"]) == 1
    assert (tmp_path / "out" / "model.npz").stat().st_size > 0
