"""Models and summary: the notes' figures, shapes, and ResNet's block against PyTorch."""

import numpy as np
import pytest

import fastconv as fc
from fastconv import models, nn


def count(model):
    return sum(p.data.size for p in model.parameters())


def test_lenet5_matches_the_notes_table():
    s = fc.summary(models.lenet5(rng=0), (1, 32, 32))
    assert s.total_params == 61_706 and "Total params: 61,706" in str(s)
    convs_and_linears = [(r.output_shape, r.params) for r in s.layers if r.kind in ("Conv2d", "Linear")]
    assert convs_and_linears == [
        ((6, 28, 28), 156),
        ((16, 10, 10), 2416),
        ((120, 1, 1), 48120),
        ((84,), 10164),
        ((10,), 850),
    ]
    pools = [r.output_shape for r in s.layers if r.kind == "AvgPool2d"]
    assert pools == [(6, 14, 14), (16, 5, 5)]
    assert s.total_macs == 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 120 * 400 + 120 * 84 + 84 * 10


def test_alexnet_conv1_figures():
    s = fc.summary(models.alexnet(rng=0), (3, 227, 227))
    conv1 = s.layers[0]
    assert (conv1.name, conv1.kind, conv1.output_shape) == ("features.0", "Conv2d", (96, 55, 55))
    assert conv1.params == 34_944 and conv1.macs == 105_415_200
    assert s.layers[2].output_shape == (96, 27, 27)  # POOL1
    assert [r.output_shape for r in s.layers if r.kind == "MaxPool2d"][-1] == (256, 6, 6)
    assert s.total_params == 62_378_344
    no_bias = fc.summary(nn.Conv2d(3, 96, 11, stride=4, bias=False), (3, 227, 227))
    assert no_bias.total_params == 34_848 and no_bias.total_macs == 105_415_200


def test_vgg16_has_138m_parameters():
    s = fc.summary(models.vgg16(rng=0), (3, 224, 224))
    assert s.total_params == 138_357_544
    assert round(s.total_params / 1e6) == 138
    assert s.total_macs == 15_470_264_320  # the 15.5 GMACs usually quoted
    assert sum(r.kind == "Conv2d" for r in s.layers) == 13


def test_other_parameter_counts_and_options():
    assert count(models.vgg11(rng=0)) == 132_863_336  # torchvision's figures
    assert count(models.resnet18(rng=0)) == 11_689_512
    m = models.resnet18(num_classes=7, in_channels=1, rng=0)
    assert m.state_dict()["conv1.weight"].shape == (64, 1, 7, 7)
    assert m.state_dict()["fc.weight"].shape == (7, 512)
    assert count(models.lenet5(num_classes=5, in_channels=3)) == 61_706 - 85 * 5 + 150 * 2


def test_torchvision_key_names():
    keys = list(models.resnet18(rng=0).state_dict())
    assert keys[:6] == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
    ]
    assert "layer2.0.downsample.0.weight" in keys and "layer2.0.downsample.1.running_var" in keys
    assert "layer1.0.downsample.0.weight" not in keys and keys[-2:] == ["fc.weight", "fc.bias"]


def test_same_seed_same_weights():
    a, b, c = (models.lenet5(rng=s).state_dict() for s in (3, 3, 4))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["0.weight"], c["0.weight"])


def test_forward_backward_shapes_small_inputs():
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    for model in (models.lenet5(rng=0), models.resnet18(num_classes=10, in_channels=1, rng=0)):
        y = model(x)
        assert y.shape == (2, 10) and y.dtype == np.float32
        dx = model.backward(np.ones_like(y))
        assert dx.shape == x.shape and np.isfinite(dx).all()


def test_summary_restores_mode_and_rejects_bad_input():
    m = models.lenet5(rng=0)
    fc.summary(m, (1, 32, 32))
    assert all(mod.training for mod in m.modules())
    m.eval()
    fc.summary(m, (1, 32, 32))
    assert not any(mod.training for mod in m.modules())
    with pytest.raises(ValueError, match="input_shape must be positive ints"):
        fc.summary(m, (0, 32, 32))
    with pytest.raises(TypeError, match="model must be"):
        fc.summary(object(), (1, 32, 32))
    y = m(np.zeros((1, 1, 32, 32), np.float32))  # the layers still work afterwards
    assert y.shape == (1, 10)


def test_summary_counts_transposed_convolution():
    s = fc.summary(nn.ConvTranspose2d(4, 3, 3, stride=2), (4, 5, 5))
    assert s.layers[0].output_shape == (3, 11, 11)
    assert s.layers[0].macs == 4 * 5 * 5 * 3 * 9


def test_basic_block_matches_torch():
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class TorchBlock(tnn.Module):  # torchvision's BasicBlock, written out
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(4, 8, 3, 2, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(8)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(8, 8, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(8)
            self.downsample = tnn.Sequential(tnn.Conv2d(4, 8, 1, 2, bias=False), tnn.BatchNorm2d(8))

        def forward(self, x):
            y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(y + self.downsample(x))

    ours = models.BasicBlock(4, 8, stride=2, dtype=np.float64, rng=0)
    theirs = TorchBlock().double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 9, 9))
    g = rng.standard_normal((3, 8, 5, 5))
    tx = torch.from_numpy(x).requires_grad_()
    ty = theirs(tx)
    ty.backward(torch.from_numpy(g))
    y = ours(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
