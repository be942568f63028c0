"""``Dropout``: zero each element with probability ``p`` in training, scale the rest by
``1 / (1 - p)`` (inverted dropout), identity in evaluation. Seeded with its own Generator;
on CUDA arrays the mask is drawn on the host and copied to the device once per forward."""

from __future__ import annotations

import numpy as np

from .. import backends, shapes
from .init import generator
from .module import Array, Module


class Dropout(Module):
    """Inverted dropout, as ``torch.nn.Dropout``; masks come from ``rng`` (None, an int seed
    or a ``np.random.Generator``), so a seeded layer drops the same elements every run.

    Shapes:
        x: any shape, float32 or float64
        returns: the shape and dtype of x
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        self.p = shapes.check_probability("p", p)
        self.rng = generator(rng)

    def forward(self, x: Array) -> Array:
        shapes.check_array("x", x, tuple(range(8)))
        backend = backends.backend_for(x=x)
        y = backend.empty(x.shape, x.dtype)
        if not self.training or self.p == 0.0:
            self._save(None, x.shape)
            backend.copy(y, x)
            return y
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        # drawn on the host, so a seeded layer drops the same elements on either device
        mask = backend.to_device((self.rng.random(x.shape) >= self.p) * x.dtype.type(scale))
        backend.mul(y, x, mask)
        self._save(mask, x.shape)
        return y

    def backward(self, grad_output: Array) -> Array:
        mask, shape = self._saved()
        shapes.check_layer_grad("Dropout", grad_output, shape)
        backend = backends.backend_for(grad_output=grad_output, mask=mask)
        dtype = grad_output.dtype if mask is None else np.result_type(grad_output.dtype, mask.dtype)
        dx = backend.empty(shape, dtype)
        if mask is None:
            backend.copy(dx, grad_output)
        else:
            backend.mul(dx, grad_output, mask)
        return dx

    def extra_repr(self) -> str:
        return f"p={self.p}"
