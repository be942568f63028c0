"""Networks from the lecture notes, built from ``fastconv.nn`` layers.

Every builder takes ``num_classes``, ``in_channels``, ``dtype`` and ``rng`` (None, an int seed
or a ``np.random.Generator``: one generator initialises the layers in order, as PyTorch's
global generator does). VGG and ResNet-18 use torchvision's module names, so their
``state_dict`` keys and shapes are torchvision's and weights move between the two.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from . import nn
from .nn.containers import add_arrays
from .nn.init import generator

__all__ = ["lenet5", "alexnet", "vgg11", "vgg16", "resnet18", "BasicBlock", "MODELS"]


def lenet5(num_classes: int = 10, in_channels: int = 1, dtype=np.float32, rng=None) -> nn.Sequential:
    """LeNet-5 as the notes summarise it (LeCun et al. 1998, Keras variant): 6 5x5 filters
    (32x32 -> 6@28x28), 2x2 average pooling, 16 5x5 filters (16@10x10), pooling, 120 5x5
    filters (120@1x1), then 84 and ``num_classes`` fully connected units; tanh activations.
    61,706 parameters at 10 classes.

    Shapes:
        x: (N, in_channels, 32, 32)
        returns: (N, num_classes) logits
    """
    rng = generator(rng)
    kw = dict(dtype=dtype, rng=rng)
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, **kw), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5, **kw), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(16, 120, 5, **kw), nn.Tanh(), nn.Flatten(),
        nn.Linear(120, 84, **kw), nn.Tanh(),
        nn.Linear(84, num_classes, **kw),
    )  # fmt: skip


def alexnet(num_classes: int = 1000, in_channels: int = 3, dtype=np.float32, rng=None) -> nn.Sequential:
    """AlexNet as the notes give it (Krizhevsky et al. 2012, one-GPU form): CONV1 96 11x11
    stride 4 (227 -> 55), max-pool 3x3/2, LRN, CONV2 256 5x5 pad 2, max-pool, LRN, CONV3-5
    384/384/256 3x3 pad 1, max-pool (-> 6x6x256), FC6 4096, FC7 4096, FC8 ``num_classes``,
    ReLU after each layer, dropout 0.5 before FC6 and FC7. Children ``features`` and
    ``classifier``; 62,378,344 parameters at 1000 classes.

    Shapes:
        x: (N, in_channels, 227, 227)
        returns: (N, num_classes) logits
    """
    rng = generator(rng)
    kw = dict(dtype=dtype, rng=rng)
    lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)  # the paper's constants
    features = nn.Sequential(
        nn.Conv2d(in_channels, 96, 11, stride=4, **kw), nn.ReLU(), nn.MaxPool2d(3, 2), nn.LocalResponseNorm(**lrn),
        nn.Conv2d(96, 256, 5, padding=2, **kw), nn.ReLU(), nn.MaxPool2d(3, 2), nn.LocalResponseNorm(**lrn),
        nn.Conv2d(256, 384, 3, padding=1, **kw), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, **kw), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, **kw), nn.ReLU(), nn.MaxPool2d(3, 2),
    )  # fmt: skip
    classifier = nn.Sequential(
        nn.Dropout(0.5, rng=rng), nn.Linear(256 * 6 * 6, 4096, **kw), nn.ReLU(),
        nn.Dropout(0.5, rng=rng), nn.Linear(4096, 4096, **kw), nn.ReLU(),
        nn.Linear(4096, num_classes, **kw),
    )  # fmt: skip
    return _features_classifier(features, None, classifier)


def _features_classifier(features, avgpool, classifier) -> nn.Sequential:
    parts = [
        ("features", features),
        ("avgpool", avgpool),
        ("flatten", nn.Flatten()),
        ("classifier", classifier),
    ]
    return nn.Sequential(OrderedDict((k, m) for k, m in parts if m is not None))


_VGG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def _vgg(depth: int, num_classes: int, in_channels: int, dtype, rng) -> nn.Sequential:
    rng = generator(rng)
    kw = dict(dtype=dtype, rng=rng)
    layers, c = [], in_channels
    for v in _VGG[depth]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1, **kw), nn.ReLU()]
            c = v
    classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096, **kw), nn.ReLU(), nn.Dropout(0.5, rng=rng),
        nn.Linear(4096, 4096, **kw), nn.ReLU(), nn.Dropout(0.5, rng=rng),
        nn.Linear(4096, num_classes, **kw),
    )  # fmt: skip
    return _features_classifier(nn.Sequential(*layers), nn.AdaptiveAvgPool2d((7, 7)), classifier)


def vgg11(num_classes: int = 1000, in_channels: int = 3, dtype=np.float32, rng=None) -> nn.Sequential:
    """VGG-11 (Simonyan & Zisserman 2014, configuration A): only 3x3 convolutions (stride 1,
    pad 1) and 2x2 max pooling, then three fully connected layers, as torchvision's ``vgg11``
    (adaptive 7x7 average pooling before the classifier, so any input >= 32x32 works).
    132,863,336 parameters at 1000 classes.

    Shapes:
        x: (N, in_channels, H, W), 224x224 in the paper
        returns: (N, num_classes) logits
    """
    return _vgg(11, num_classes, in_channels, dtype, rng)


def vgg16(num_classes: int = 1000, in_channels: int = 3, dtype=np.float32, rng=None) -> nn.Sequential:
    """VGG-16 (configuration D): 13 3x3 convolutions in five pooled stages, then three fully
    connected layers, as torchvision's ``vgg16``. 138,357,544 parameters at 1000 classes.

    Shapes:
        x: (N, in_channels, H, W), 224x224 in the paper
        returns: (N, num_classes) logits
    """
    return _vgg(16, num_classes, in_channels, dtype, rng)


class BasicBlock(nn.Module):
    """ResNet's basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x))``, with
    the identity as ``downsample`` unless the stride or width changes (then a 1x1 strided
    convolution and BatchNorm). Children named as torchvision's, so keys match.

    Shapes:
        x: (N, in_planes, H, W)
        returns: (N, planes, ceil(H / stride), ceil(W / stride))
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dtype=np.float32, rng=None):
        super().__init__()
        kw = dict(bias=False, dtype=dtype, rng=rng)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, **kw)
        self.bn1 = nn.BatchNorm2d(planes, dtype=dtype)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, **kw)
        self.bn2 = nn.BatchNorm2d(planes, dtype=dtype)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, **kw), nn.BatchNorm2d(planes, dtype=dtype)
            )
        self.relu_out = nn.ReLU()  # a second instance: each ReLU keeps its own forward mask
        self._body = [self.conv1, self.bn1, self.relu, self.conv2, self.bn2]

    def forward(self, x):
        """``relu(body(x) + shortcut(x))``; see the class docstring for shapes."""
        y = x
        for m in self._body:
            y = m(y)
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu_out(add_arrays(y, skip))

    def backward(self, grad_output):
        """Gradient through the final ReLU, then summed over the body and the shortcut."""
        g = self.relu_out.backward(grad_output)
        dx = g
        for m in reversed(self._body):
            dx = m.backward(dx)
        return add_arrays(dx, g if self.downsample is None else self.downsample.backward(g))


def resnet18(num_classes: int = 1000, in_channels: int = 3, dtype=np.float32, rng=None) -> nn.Sequential:
    """ResNet-18 (He et al. 2015), torchvision's layout and names: 7x7/2 stem convolution,
    BatchNorm, ReLU, 3x3/2 max pooling, four stages of two ``BasicBlock`` (64, 128, 256, 512
    channels; stride 2 from the second stage), global average pooling, one fully connected
    layer. 11,689,512 parameters at 1000 classes.

    Shapes:
        x: (N, in_channels, H, W), 224x224 in the paper (any size >= 32 works)
        returns: (N, num_classes) logits
    """
    rng = generator(rng)
    layers = [
        ("conv1", nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False, dtype=dtype, rng=rng)),
        ("bn1", nn.BatchNorm2d(64, dtype=dtype)),
        ("relu", nn.ReLU()),
        ("maxpool", nn.MaxPool2d(3, 2, padding=1)),
    ]
    c = 64
    for i, planes in enumerate((64, 128, 256, 512)):
        stride = 1 if i == 0 else 2
        blocks = [BasicBlock(c, planes, stride, dtype, rng), BasicBlock(planes, planes, 1, dtype, rng)]
        layers.append((f"layer{i + 1}", nn.Sequential(*blocks)))
        c = planes
    layers += [
        ("avgpool", nn.AdaptiveAvgPool2d((1, 1))),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(512, num_classes, dtype=dtype, rng=rng)),
    ]
    return nn.Sequential(OrderedDict(layers))


MODELS = {"lenet5": lenet5, "alexnet": alexnet, "vgg11": vgg11, "vgg16": vgg16, "resnet18": resnet18}
"""Builders by name, for the command line (``--model``)."""
