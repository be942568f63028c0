"""Module mechanics: registration, state_dict keys and loading (errors, dtype), train/eval,
astype, to(device), containers' key names."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from fastconv import backends, nn
from fastconv.nn import module as module_mod


def small_net(dtype=np.float32) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            [
                (
                    "features",
                    nn.Sequential(
                        nn.Conv2d(1, 2, 3, dtype=dtype, rng=0),
                        nn.BatchNorm2d(2, dtype=dtype),
                        nn.ReLU(),
                        nn.MaxPool2d(2),
                    ),
                ),
                ("flatten", nn.Flatten()),
                ("fc", nn.Linear(2, 3, dtype=dtype, rng=1)),
            ]
        )
    )


def test_state_dict_uses_torch_key_names_and_order():
    sd = small_net().state_dict()
    assert list(sd) == [
        "features.0.weight",
        "features.0.bias",
        "features.1.weight",
        "features.1.bias",
        "features.1.running_mean",
        "features.1.running_var",
        "features.1.num_batches_tracked",
        "fc.weight",
        "fc.bias",
    ]
    assert sd["features.0.weight"].shape == (2, 1, 3, 3) and sd["fc.weight"].shape == (3, 2)
    assert (
        sd["features.1.num_batches_tracked"].dtype == np.int64
        and sd["features.1.num_batches_tracked"].shape == ()
    )


def test_state_dict_matches_torch_for_containers_and_options():
    torch = pytest.importorskip("torch")
    ours = nn.Sequential(
        nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 3, bias=False), nn.BatchNorm2d(2)), nn.Conv2d(2, 2, 1)),
        nn.BatchNorm1d(2, affine=False),
        nn.BatchNorm1d(2, track_running_stats=False),
    )
    theirs = torch.nn.Sequential()
    res = torch.nn.Module()
    res.body = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3, bias=False), torch.nn.BatchNorm2d(2))
    res.shortcut = torch.nn.Conv2d(2, 2, 1)
    theirs.append(res)
    theirs.append(torch.nn.BatchNorm1d(2, affine=False))
    theirs.append(torch.nn.BatchNorm1d(2, track_running_stats=False))
    want = theirs.state_dict()
    got = ours.state_dict()
    assert list(got) == list(want)
    assert all(got[k].shape == tuple(want[k].shape) for k in want)


def test_concat_branch_names():
    c = nn.Concat(nn.Conv2d(1, 1, 1), nn.Sequential(nn.Conv2d(1, 1, 1)))
    assert list(c.state_dict()) == ["0.weight", "0.bias", "1.0.weight", "1.0.bias"]


def test_load_state_dict_round_trip_keeps_dtype_and_copies():
    src, dst = small_net(np.float64), small_net(np.float32)
    src.features[0].weight.data += 1.0
    sd = src.state_dict()
    sd["features.1.num_batches_tracked"] = np.array(7)
    assert dst.load_state_dict(sd) == ([], [])
    for key, value in dst.state_dict().items():
        np.testing.assert_allclose(value, sd[key].astype(value.dtype), rtol=1e-7)
    assert dst.features[0].weight.dtype == np.float32
    assert dst.features[1].running_var.dtype == np.float32
    assert int(dst.features[1].num_batches_tracked) == 7
    sd["fc.bias"][:] = 100.0  # the model owns copies, not the caller's arrays
    assert np.all(dst.fc.bias.data != 100.0)
    got = dst.state_dict()
    got["fc.bias"][:] = -5.0  # and state_dict hands out copies
    assert np.all(dst.fc.bias.data != -5.0)


def test_load_state_dict_reports_missing_and_unexpected_keys():
    net = small_net()
    sd = net.state_dict()
    del sd["fc.bias"]
    sd["fc.scale"] = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"missing keys \['fc.bias'\], unexpected keys \['fc.scale'\]"):
        net.load_state_dict(sd)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["fc.bias"] and result.unexpected_keys == ["fc.scale"]


def test_load_state_dict_rejects_wrong_shapes_before_changing_anything():
    net = small_net()
    before = net.state_dict()
    sd = small_net().state_dict()
    sd["features.0.bias"] = np.zeros(2, np.float32) + 3
    sd["fc.weight"] = np.zeros((2, 3), np.float32)
    with pytest.raises(
        ValueError,
        match=r"size mismatch for 'fc.weight': the state_dict has shape \(2, 3\), the model has shape \(3, 2\)",
    ):
        net.load_state_dict(sd, strict=False)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_load_state_dict_rejects_non_arrays():
    net = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"state_dict\['weight'\] must be an array, got str"):
        net.load_state_dict({"weight": "zeros", "bias": np.zeros(2)})


def test_train_eval_reach_every_child():
    net = small_net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_parameters_are_registered_in_order_and_shared_ones_once():
    shared = nn.Linear(2, 2)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias"]
    assert len(list(small_net().parameters())) == 6
    net.fc = None  # re-assigning a plain value drops nothing registered under another name
    assert len(list(net.parameters())) == 2


def test_astype_converts_parameters_gradients_and_float_buffers():
    net = small_net()
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)
    net.backward(np.ones_like(net(x)))
    net.astype(np.float64)
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in net.parameters())
    bn = net.features[1]
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64
    assert net(x.astype(np.float64)).dtype == np.float64
    with pytest.raises(TypeError, match="dtype must be float32 or float64, got float16"):
        net.astype(np.float16)


def test_to_cpu_is_a_no_op_conversion():
    net = small_net()
    before = net.state_dict()
    assert net.to("cpu") is net
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    with pytest.raises(ValueError, match="device must be one of"):
        net.to("tpu")


def test_to_routes_through_the_backend_to_device(monkeypatch):
    class FakeBackend:
        moved = []

        @staticmethod
        def to_device(a):
            FakeBackend.moved.append(a.shape)
            return a * 2

    net = nn.Linear(3, 2)
    w = net.weight.data.copy()
    monkeypatch.setattr(module_mod.backends, "get", lambda device: FakeBackend)
    net.to("cuda")
    assert FakeBackend.moved == [(2, 3), (2,)]
    np.testing.assert_array_equal(net.weight.data, 2 * w)


def test_to_unavailable_device_raises_a_clear_error(monkeypatch):
    def broken(device):
        raise ImportError("No module named 'numba.cuda.cudadrv'")

    net = nn.Linear(2, 2)
    monkeypatch.setattr(module_mod.backends, "get", broken)
    with pytest.raises(RuntimeError, match="device='cuda' is not available here"):
        net.to("cuda")
    monkeypatch.setattr(module_mod.backends, "get", lambda device: object())
    with pytest.raises(RuntimeError, match="has no to_device"):
        net.to("cuda")


def test_cpu_backend_to_device_keeps_numpy_arrays():
    a = np.ones(3)
    assert backends.get("cpu").to_device(a) is a


def test_subclass_must_call_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(np.zeros(2))

    with pytest.raises(RuntimeError, match=r"must call super\(\).__init__\(\) first"):
        Broken()


def test_custom_module_registers_parameters_buffers_and_children():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(np.ones(3))
            self.register_buffer("calls", np.zeros(()))
            self.inner = nn.Linear(3, 3, dtype=np.float64)

    m = Scale()
    m.calls = m.calls + 1  # assigning keeps a buffer a buffer
    assert list(m.state_dict()) == ["gain", "calls", "inner.weight", "inner.bias"]
    assert m.state_dict()["calls"] == 1
    assert "Linear(in_features=3, out_features=3, bias=True)" in repr(m)


def test_parameter_rejects_non_float_data():
    with pytest.raises(TypeError, match="data has dtype int64"):
        nn.Parameter(np.zeros(3, np.int64))
