"""Containers with more than one path: ``Residual`` (ResNet's ``body(x) + shortcut(x)``) and
``Concat`` (inception-style branches joined along the channel axis). ``Sequential`` is in
``module.py``."""

from __future__ import annotations

import numpy as np

from .. import backends, shapes
from .module import Array, Module


class Residual(Module):
    """``y = body(x) + shortcut(x)``, with the identity as the default shortcut; backward sums
    the gradients of both paths. Children are named ``body`` and ``shortcut``.

    Shapes:
        x: whatever body (and shortcut) take
        returns: body(x), which must have the shape of shortcut(x)
    """

    def __init__(self, body: Module, shortcut: Module | None = None):
        super().__init__()
        for name, m in (("body", body), ("shortcut", shortcut)):
            if m is not None and not isinstance(m, Module):
                raise TypeError(f"{name} must be a Module, got {type(m).__name__}")
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: Array) -> Array:
        y = self.body(x)
        skip = x if self.shortcut is None else self.shortcut(x)
        if y.shape != skip.shape:
            raise ValueError(
                f"Residual: body output has shape {tuple(y.shape)} but the shortcut gives "
                f"{tuple(skip.shape)}; give a shortcut (e.g. a 1x1 Conv2d) that matches"
            )
        self._save(True)
        return add_arrays(y, skip)

    def backward(self, grad_output: Array) -> Array:
        self._saved()
        dx = self.body.backward(grad_output)
        return add_arrays(dx, grad_output if self.shortcut is None else self.shortcut.backward(grad_output))


def add_arrays(a: Array, b: Array) -> Array:
    """``a + b`` (same shapes) in a new array on their device, NumPy or CUDA."""
    backend = backends.backend_for(a=a, b=b)
    out = backend.empty(a.shape, np.result_type(a.dtype, b.dtype))
    backend.add(out, a, b)
    return out


class Concat(Module):
    """Run every branch on the same input and concatenate the outputs along ``dim``
    (channels by default), as an inception module does. Branches are named ``"0"``, ``"1"``...

    Shapes:
        x: whatever every branch takes
        returns: the branch outputs joined along ``dim``; other axes must agree
    """

    def __init__(self, *branches: Module, dim: int = 1):
        super().__init__()
        if not branches:
            raise ValueError("Concat needs at least one branch")
        for i, b in enumerate(branches):
            if not isinstance(b, Module):
                raise TypeError(f"Concat branch {i} must be a Module, got {type(b).__name__}")
            setattr(self, str(i), b)
        self.dim = shapes.check_int("dim", dim)

    def forward(self, x: Array) -> Array:
        outs = [b(x) for b in self.children()]
        shapes.check_host("Concat", **{f"branch {i} output": o for i, o in enumerate(outs)})
        rest = {tuple(np.delete(o.shape, self.dim)) for o in outs}
        if len(rest) > 1:
            raise ValueError(
                f"Concat(dim={self.dim}): branch outputs {[tuple(o.shape) for o in outs]} differ "
                "outside the concatenation axis"
            )
        self._save([o.shape[self.dim] for o in outs])
        return np.concatenate(outs, axis=self.dim)

    def backward(self, grad_output: Array) -> Array:
        (sizes,) = self._saved()
        pieces = np.split(grad_output, np.cumsum(sizes)[:-1], axis=self.dim)
        grads = [b.backward(g) for b, g in zip(self.children(), pieces, strict=True)]
        return sum(grads[1:], grads[0])
