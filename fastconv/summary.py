"""``summary(model, input_shape)``: a Keras-style table of layers, output shapes, parameters
and multiply-accumulates.

Shapes come from the layers themselves: the model runs once, in evaluation mode, on an
empty batch ``(0, *input_shape)``, which costs no arithmetic even for VGG-16, while every
leaf layer's output shape is recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["summary", "LayerSummary", "ModelSummary"]


@dataclass
class LayerSummary:
    """One call of one leaf layer: its dotted name, type, per-sample output shape,
    parameter count and multiply-accumulates per sample."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass
class ModelSummary:
    """The rows of ``summary`` and their totals; ``str()`` (and ``repr()``) is the table."""

    layers: list[LayerSummary] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0

    @property
    def total_macs(self) -> int:
        """Multiply-accumulates of one sample through the whole model."""
        return sum(layer.macs for layer in self.layers)

    def __str__(self) -> str:
        head = ("Layer (type)", "Output Shape", "Param #", "MACs")
        rows = [
            (f"{r.name} ({r.kind})", str((None, *r.output_shape)), f"{r.params:,}", f"{r.macs:,}")
            for r in self.layers
        ]
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(4)]
        line = "  ".join("-" * w for w in widths)

        def fmt(row):
            return "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )

        return "\n".join([
            line, fmt(head), line.replace("-", "="), *map(fmt, rows), line.replace("-", "="),
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.total_params - self.trainable_params:,}",
            f"Total MACs per sample: {self.total_macs:,}",
            line,
        ])  # fmt: skip

    __repr__ = __str__


def _macs(module, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates per sample of convolution and linear layers (0 for the rest:
    pooling, normalisation and activations do no multiply-accumulates worth counting)."""
    kind = type(module).__name__
    if kind.startswith("ConvTranspose"):  # every input value scatters through a kernel slab
        w = module.weight.shape
        return math.prod(x_shape) * w[1] * math.prod(w[2:])
    if kind.startswith("Conv"):  # every output value gathers C_in/groups * kernel products
        w = module.weight.shape
        return math.prod(y_shape) * w[1] * math.prod(w[2:])
    if kind == "Linear":
        return math.prod(y_shape) * module.in_features
    return 0


def summary(model, input_shape, dtype=None) -> ModelSummary:
    """Layer-by-layer table of a ``fastconv.nn`` model, as Keras's ``model.summary()``.

    Each row is one call of a leaf layer (one without children): its output shape for one
    sample, its parameter count and its multiply-accumulates per sample (convolution and
    linear layers). ``print(fc.summary(model, (3, 227, 227)))`` shows the table. The model
    runs once on an empty batch in evaluation mode; its train/eval mode is restored after.

    Shapes:
        input_shape: one sample's shape without the batch axis, e.g. (C, H, W)
        returns: a ModelSummary; output shapes exclude the batch axis
    """
    if not hasattr(model, "named_modules"):
        raise TypeError(f"model must be a fastconv.nn.Module, got {type(model).__name__}")
    shape = tuple(input_shape)
    if not all(isinstance(s, int | np.integer) and s >= 1 for s in shape):
        raise ValueError(f"input_shape must be positive ints without the batch axis, got {input_shape!r}")
    params = list(model.parameters())
    if dtype is None:
        dtype = params[0].data.dtype if params else np.float32
    result = ModelSummary(total_params=sum(p.data.size for p in params))
    result.trainable_params = result.total_params
    modes = {id(m): m.training for m in model.modules()}
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    for name, m in leaves:
        object.__setattr__(m, "forward", _recording(m, name or type(m).__name__, result))
    try:
        model.eval()
        model(np.zeros((0, *shape), dtype))
    finally:
        for _, m in leaves:
            object.__delattr__(m, "forward")
        for m in model.modules():
            object.__setattr__(m, "training", modes[id(m)])
    return result


def _recording(module, name: str, result: ModelSummary):
    forward = module.forward
    own_params = sum(p.data.size for p in module.parameters(recurse=False))

    def record(x, *args, **kwargs):
        y = forward(x, *args, **kwargs)
        out = y[0] if isinstance(y, tuple) else y  # (values, indices) of return_indices pools
        x_shape, y_shape = tuple(x.shape[1:]), tuple(out.shape[1:])
        result.layers.append(
            LayerSummary(name, type(module).__name__, y_shape, own_params, _macs(module, x_shape, y_shape))
        )
        return y

    return record
