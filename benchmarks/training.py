"""One full training step (forward, cross-entropy, backward, SGD with momentum) of LeNet-5
and of a ResNet basic block (the suite's resnet_3x3_64 shape) with a linear head."""

import numpy as np

BATCH = {"lenet5": 64, "resnet_block": 8}


def _build(model, dtype, n, size=56):
    """(model, x, labels), seeded; ``size`` is the block's input height and width."""
    from fastconv import models, nn

    rng = np.random.default_rng(0)
    if model == "lenet5":
        net, x_shape = models.lenet5(dtype=dtype, rng=0), (n, 1, 32, 32)
    else:
        block = models.BasicBlock(64, 64, dtype=dtype, rng=0)
        head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10, dtype=dtype, rng=0)]
        net, x_shape = nn.Sequential(block, *head), (n, 64, size, size)
    return net, rng.standard_normal(x_shape).astype(dtype), rng.integers(0, 10, n)


def _check_gradient(model):
    """Reference check: in float64 on a small batch, the directional derivative of the loss
    along a random direction of all parameters matches a central difference (a small step
    and input, so that few ReLU kinks are crossed)."""
    from fastconv import nn

    net, x, labels = _build(model, np.float64, 4, size=12)
    loss_fn = nn.CrossEntropyLoss()
    net.zero_grad()
    loss_fn(net(x), labels)
    net.backward(loss_fn.backward())
    params = list(net.parameters())
    rng = np.random.default_rng(1)
    direction = [rng.standard_normal(p.shape) for p in params]
    pairs = list(zip(params, direction, strict=True))
    analytic = sum(np.vdot(p.grad, v) for p, v in pairs)
    eps, losses = 1e-8, []
    for sign in (1, -1):
        for p, v in pairs:
            p.data += sign * eps * v
        losses.append(loss_fn(net(x), labels))
        for p, v in pairs:
            p.data -= sign * eps * v
    numeric = (losses[0] - losses[1]) / (2 * eps)
    if not abs(analytic - numeric) <= 1e-5 * max(1.0, abs(numeric)):
        raise AssertionError(f"{model}: gradient {analytic} != finite difference {numeric}")


class TrainStep:
    params = [list(BATCH), ["float32"]]
    param_names = ["model", "dtype"]

    def setup(self, model, dtype):
        try:
            from fastconv import models, nn, optim  # noqa: F401 (models: used by _build)
        except ImportError as e:
            raise NotImplementedError(f"this version lacks models, nn or optim: {e}") from e
        _check_gradient(model)
        self.net, self.x, self.labels = _build(model, dtype, BATCH[model])
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9)
        first = self.step()
        if not self.step() < first:  # compiled now; and the step must lower the loss
            raise AssertionError(f"{model}: a training step did not lower the loss")

    def step(self):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.net(self.x), self.labels)
        self.net.backward(self.loss_fn.backward())
        self.optimizer.step()
        return loss

    def time_step(self, model, dtype):
        self.step()
