"""Layers against PyTorch in float64: load a torch layer's state_dict into ours, then compare
the forward output, the input gradient, every parameter gradient and the buffers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings

from fastconv import nn
from tests.conftest import conv_configs

torch = pytest.importorskip("torch")
tnn = torch.nn
F64 = np.float64


SAME_EVEN = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")

# name: (ours, theirs, input shape[, marks])
PAIRS = {
    "conv1d": (
        lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1, dtype=F64),
        lambda: tnn.Conv1d(3, 4, 3, stride=2, padding=1),
        (2, 3, 9),
    ),
    "conv2d_depthwise_replicate": (
        lambda: nn.Conv2d(4, 8, 3, groups=4, padding=2, dilation=2, padding_mode="replicate", dtype=F64),
        lambda: tnn.Conv2d(4, 8, 3, groups=4, padding=2, dilation=2, padding_mode="replicate"),
        (2, 4, 6, 5),
    ),
    "conv2d_same_even_kernel": (
        lambda: nn.Conv2d(2, 3, (2, 4), padding="same", dtype=F64),
        lambda: tnn.Conv2d(2, 3, (2, 4), padding="same"),
        (1, 2, 5, 6),
        SAME_EVEN,
    ),
    "conv3d_reflect": (
        lambda: nn.Conv3d(2, 3, 2, stride=(1, 2, 1), padding=1, padding_mode="reflect", dtype=F64),
        lambda: tnn.Conv3d(2, 3, 2, stride=(1, 2, 1), padding=1, padding_mode="reflect"),
        (2, 2, 3, 4, 3),
    ),
    "linear": (lambda: nn.Linear(6, 4, dtype=F64), lambda: tnn.Linear(6, 4), (3, 6)),
    "flatten": (lambda: nn.Flatten(1, 2), lambda: tnn.Flatten(1, 2), (2, 3, 4, 2)),
    "relu": (lambda: nn.ReLU(), lambda: tnn.ReLU(), (4, 5)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.3), lambda: tnn.LeakyReLU(0.3), (4, 5)),
    "sigmoid": (lambda: nn.Sigmoid(), lambda: tnn.Sigmoid(), (4, 5)),
    "tanh": (lambda: nn.Tanh(), lambda: tnn.Tanh(), (4, 5)),
    "softmax": (lambda: nn.Softmax(dim=1), lambda: tnn.Softmax(dim=1), (2, 5, 3)),
    "batchnorm1d": (lambda: nn.BatchNorm1d(3, dtype=F64), lambda: tnn.BatchNorm1d(3), (6, 3)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3, dtype=F64), lambda: tnn.BatchNorm2d(3), (2, 3, 4, 3)),
    "batchnorm3d_momentum_none": (
        lambda: nn.BatchNorm3d(2, momentum=None, dtype=F64),
        lambda: tnn.BatchNorm3d(2, momentum=None),
        (2, 2, 2, 3, 2),
    ),
    "lrn_alexnet": (
        lambda: nn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0),
        lambda: tnn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0),
        (2, 7, 3, 3),
    ),
    "lrn_even": (lambda: nn.LocalResponseNorm(2), lambda: tnn.LocalResponseNorm(2), (2, 4, 3)),
    "conv_transpose1d": (
        lambda: nn.ConvTranspose1d(3, 2, 3, stride=2, padding=1, output_padding=1, dtype=F64),
        lambda: tnn.ConvTranspose1d(3, 2, 3, stride=2, padding=1, output_padding=1),
        (2, 3, 5),
    ),
    "conv_transpose2d_groups": (
        lambda: nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 1), groups=2, dilation=(1, 2), dtype=F64),
        lambda: tnn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 1), groups=2, dilation=(1, 2)),
        (2, 4, 3, 4),
    ),
    "conv_transpose3d": (
        lambda: nn.ConvTranspose3d(2, 3, 2, stride=2, bias=False, dtype=F64),
        lambda: tnn.ConvTranspose3d(2, 3, 2, stride=2, bias=False),
        (1, 2, 2, 2, 3),
    ),
    "max_pool1d": (lambda: nn.MaxPool1d(3, 2, padding=1), lambda: tnn.MaxPool1d(3, 2, padding=1), (2, 3, 8)),
    "max_pool2d_ceil_dilated": (
        lambda: nn.MaxPool2d(2, 2, dilation=2, ceil_mode=True),
        lambda: tnn.MaxPool2d(2, 2, dilation=2, ceil_mode=True),
        (2, 2, 7, 6),
    ),
    "max_pool3d": (lambda: nn.MaxPool3d(2), lambda: tnn.MaxPool3d(2), (1, 2, 4, 4, 5)),
    "avg_pool1d": (lambda: nn.AvgPool1d(3, 2, padding=1), lambda: tnn.AvgPool1d(3, 2, padding=1), (2, 3, 8)),
    "avg_pool2d_exclude_pad": (
        lambda: nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
        lambda: tnn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
        (2, 2, 6, 5),
    ),
    "avg_pool3d_divisor": (
        lambda: nn.AvgPool3d(2, divisor_override=3),
        lambda: tnn.AvgPool3d(2, divisor_override=3),
        (1, 2, 4, 4, 2),
    ),
    "lp_pool1d": (lambda: nn.LPPool1d(3, 2), lambda: tnn.LPPool1d(3, 2), (2, 3, 7)),
    "lp_pool2d_ceil": (
        lambda: nn.LPPool2d(2, (2, 3), stride=2, ceil_mode=True),
        lambda: tnn.LPPool2d(2, (2, 3), stride=2, ceil_mode=True),
        (2, 3, 5, 6),
    ),
    "adaptive_avg_pool2d": (
        lambda: nn.AdaptiveAvgPool2d((3, 2)),
        lambda: tnn.AdaptiveAvgPool2d((3, 2)),
        (2, 3, 7, 5),
    ),
    "adaptive_max_pool2d": (lambda: nn.AdaptiveMaxPool2d(3), lambda: tnn.AdaptiveMaxPool2d(3), (2, 3, 7, 5)),
    "adaptive_avg_pool1d": (lambda: nn.AdaptiveAvgPool1d(4), lambda: tnn.AdaptiveAvgPool1d(4), (2, 3, 7)),
    "adaptive_max_pool3d": (
        lambda: nn.AdaptiveMaxPool3d((2, None, 3)),
        lambda: tnn.AdaptiveMaxPool3d((2, None, 3)),
        (1, 2, 3, 2, 5),
    ),
}


def compare_with_torch(ours: nn.Module, theirs, x: np.ndarray, seed: int = 0, tol: float = 1e-10) -> None:
    """Forward, input gradient, parameter gradients and buffers of ``ours`` vs ``theirs``."""
    theirs = theirs.double()
    ours.load_state_dict(theirs.state_dict())
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    g = np.random.default_rng(seed).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    y = ours(x)
    dx = ours.backward(g)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=tol, atol=tol, err_msg="forward")
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol, err_msg="input gradient")
    their_params = dict(theirs.named_parameters())
    assert [k for k, _ in ours.named_parameters()] == list(their_params)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad, their_params[name].grad.numpy(), rtol=tol, atol=tol, err_msg=f"gradient of {name}"
        )
    their_state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        np.testing.assert_allclose(value, their_state[key].numpy(), rtol=tol, atol=tol, err_msg=key)


@pytest.mark.parametrize("name", [pytest.param(k, marks=v[3:]) for k, v in PAIRS.items()])
def test_layer_matches_torch(name):
    make_ours, make_theirs, shape = PAIRS[name][:3]
    torch.manual_seed(len(name))
    x = np.random.default_rng(len(name)).standard_normal(shape)
    compare_with_torch(make_ours(), make_theirs(), x)


@SAME_EVEN
@settings(max_examples=25, deadline=None)
@given(conv_configs(modes=("zeros", "reflect", "replicate", "circular")))
def test_conv_layers_match_torch_on_random_configurations(config):
    d, x_shape, w_shape, kw = config
    args = (x_shape[1], w_shape[0], w_shape[2:])
    ours = getattr(nn, f"Conv{d}d")(*args, dtype=F64, **kw)
    theirs = getattr(tnn, f"Conv{d}d")(*args, **kw)
    x = np.random.default_rng(sum(x_shape)).standard_normal(x_shape)
    compare_with_torch(ours, theirs, x)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_max_unpool_matches_torch(d):
    x = np.random.default_rng(d).standard_normal((2, 3) + (5,) * d)
    pooled, indices = getattr(tnn, f"MaxPool{d}d")(2, return_indices=True)(torch.tensor(x))
    theirs = getattr(tnn, f"MaxUnpool{d}d")(2)
    ours = getattr(nn, f"MaxUnpool{d}d")(2)
    size = (2, 3) + (5,) * d
    pt = pooled.detach().requires_grad_(True)
    yt = theirs(pt, indices, output_size=size)
    g = np.random.default_rng(0).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    y = ours(pooled.detach().numpy(), indices.numpy(), output_size=size)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(ours.backward(g), pt.grad.numpy())


def test_max_pool_return_indices_match_torch():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 7))
    y, idx = nn.MaxPool2d(3, 2, padding=1, return_indices=True)(x)
    yt, idxt = tnn.MaxPool2d(3, 2, padding=1, return_indices=True)(torch.tensor(x))
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, idxt.numpy())


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_batchnorm_running_statistics_follow_torch_over_steps(momentum):
    ours, theirs = (
        nn.BatchNorm2d(3, momentum=momentum, dtype=F64),
        tnn.BatchNorm2d(3, momentum=momentum).double(),
    )
    rng = np.random.default_rng(5)
    for step in range(4):
        x = rng.standard_normal((3, 3, 2, 4)) * (step + 1) + step
        compare_with_torch(ours, theirs, x, seed=step)
    assert int(ours.num_batches_tracked) == 4
    ours.eval()
    theirs.eval()
    compare_with_torch(ours, theirs, rng.standard_normal((2, 3, 2, 4)), seed=9)


def test_small_network_state_dict_round_trip():
    """A LeNet-like network: torch -> ours gives torch's outputs; ours -> torch likewise."""

    def build_ours(dtype):
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, dtype=dtype),
            nn.BatchNorm2d(4, dtype=dtype),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(36, 5, dtype=dtype),
        )

    theirs = tnn.Sequential(
        tnn.Conv2d(1, 4, 3),
        tnn.BatchNorm2d(4),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Flatten(),
        tnn.Linear(36, 5),
    ).double()
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8))
    theirs(torch.tensor(x))  # one training step moves the running statistics
    theirs.eval()
    ours = build_ours(np.float32)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    assert ours[0].weight.dtype == np.float32, "loading keeps the model's dtype"
    ours.eval()
    with torch.no_grad():
        want = theirs(torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours(x.astype(np.float32)), want, rtol=1e-4, atol=1e-5)

    back = build_ours(F64).eval()
    back.load_state_dict(ours.astype(F64).state_dict())
    reloaded = (
        tnn.Sequential(
            tnn.Conv2d(1, 4, 3),
            tnn.BatchNorm2d(4),
            tnn.ReLU(),
            tnn.MaxPool2d(2),
            tnn.Flatten(),
            tnn.Linear(36, 5),
        )
        .double()
        .eval()
    )
    reloaded.load_state_dict({k: torch.from_numpy(v) for k, v in back.state_dict().items()})
    with torch.no_grad():
        np.testing.assert_allclose(reloaded(torch.tensor(x)).numpy(), back(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda r: nn.Conv2d(4, 8, 3, groups=2, rng=r), lambda: tnn.Conv2d(4, 8, 3, groups=2)),
        (lambda r: nn.Linear(20, 7, rng=r), lambda: tnn.Linear(20, 7)),
        (
            lambda r: nn.ConvTranspose2d(4, 6, 3, groups=2, rng=r),
            lambda: tnn.ConvTranspose2d(4, 6, 3, groups=2),
        ),
    ],
    ids=["conv2d", "linear", "conv_transpose2d"],
)
def test_default_init_has_torch_bounds_and_is_seeded(ours, theirs):
    """PyTorch draws weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); so do we."""
    torch.manual_seed(0)
    t = theirs()
    fan_in = math.prod(t.weight.shape[1:])
    bound = 1 / math.sqrt(fan_in)
    a, b, c = ours(3), ours(3), ours(4)
    for name in ("weight", "bias"):
        mine, ref = getattr(a, name).data, getattr(t, name).detach().numpy()
        assert mine.shape == ref.shape and mine.dtype == np.float32
        assert np.abs(mine).max() <= bound and np.abs(ref).max() <= bound
        assert np.abs(mine).max() > 0.6 * bound, "weights should fill the PyTorch interval"
        np.testing.assert_array_equal(mine, getattr(b, name).data)
        assert not np.array_equal(mine, getattr(c, name).data)
