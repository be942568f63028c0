"""``Module``, ``Parameter`` and ``Sequential``: layers with explicit forward and backward.

There is no autograd: every layer's ``forward`` keeps what its ``backward`` needs (always,
in training and in evaluation mode, so input gradients of a frozen network work too), and
``backward(grad_output)`` returns the gradient with respect to the input while adding the
parameter gradients into ``Parameter.grad``. ``Parameter.grad`` is None until the first
backward and is summed into with ``+=`` afterwards; ``zero_grad()`` sets it back to None,
as PyTorch's ``zero_grad(set_to_none=True)`` does. The forward input is kept by reference
(not copied): change it in place between forward and backward and the gradients are wrong.

``state_dict()`` returns NumPy copies under PyTorch's key names (``features.0.weight``,
``bn.running_mean``), so weights move between fastconv and PyTorch in both directions.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from .. import backends, shapes

Array = Any  # a NumPy array, or a CUDA array after ``Module.to("cuda")``


def move(a: Array, device: str) -> Array:
    """``a`` on ``device`` through the backend registry: ``backends.get(device).to_device(a)``.

    Shapes:
        a: any shape, a NumPy or CUDA array
        returns: the same values on ``device``
    """
    try:
        backend = backends.get(device)
    except ImportError as err:
        raise RuntimeError(
            f"device={device!r} is not available here: importing its backend failed ({err})"
        ) from err
    to_device = getattr(backend, "to_device", None)
    if to_device is None:
        raise RuntimeError(f"the {device!r} backend has no to_device(array); cannot move arrays")
    return to_device(a)


class Parameter:
    """A trainable array: ``.data`` (the values) and ``.grad`` (None until a backward).

    Shapes:
        data: any shape, float32 or float64
        grad: None, or the shape and dtype of data
    """

    def __init__(self, data: Array):
        shapes.check_array("data", data, tuple(range(8)))
        self.data = data
        self.grad: Array | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    def accumulate(self, grad: Array) -> None:
        """Add ``grad`` into ``.grad``, which starts as a copy of the first one (a CUDA
        ``grad`` is taken over as it is: layers pass freshly allocated arrays)."""
        if backends.device_of(grad) == "cuda":
            if self.grad is None:
                self.grad = grad
            else:
                backends.get("cuda").add_(self.grad, grad)
        elif self.grad is None:
            self.grad = grad.astype(self.data.dtype, copy=True)
        else:
            self.grad += grad

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.data, dtype=dtype)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` skipped, as PyTorch reports it."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _as_numpy(name: str, value) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    elif backends.device_of(value) == "cuda":
        value = move(value, "cpu")
    if not isinstance(value, np.ndarray | np.generic | int | float):
        raise TypeError(f"state_dict[{name!r}] must be an array, got {type(value).__name__}")
    return np.asarray(value)


class Module:
    """Base class of every layer: parameters, buffers and child modules, registered by
    assignment (``self.weight = Parameter(...)``, ``self.body = Sequential(...)``) in the
    order PyTorch registers them, so ``state_dict`` keys and order match PyTorch's.

    Subclasses implement ``forward(x)`` and ``backward(grad_output) -> grad_input``.
    ``backward`` before any ``forward`` raises ``RuntimeError``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)

    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        if isinstance(value, Parameter | Module):
            for registry in (self._parameters, self._buffers, self._modules):
                registry.pop(name, None)
            (self._parameters if isinstance(value, Parameter) else self._modules)[name] = value
        elif name in self._buffers:  # assigning to a buffer keeps it a buffer
            self._buffers[name] = value
        else:
            self._parameters.pop(name, None)
            self._modules.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: Array | None) -> None:
        """A non-trainable array saved in ``state_dict`` (e.g. ``running_mean``); None
        registers the name but leaves it out of ``state_dict``."""
        self._buffers[name] = value
        setattr(self, name, value)

    # -- forward / backward ------------------------------------------------------------

    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_output: Array) -> Array:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _save(self, *values) -> None:
        object.__setattr__(self, "_cache", values)

    def _saved(self) -> tuple:
        """What the last forward saved for backward; RuntimeError before any forward."""
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() was called before forward(): run the "
                "forward pass first, backward uses the arrays it saved"
            )
        return self._cache

    # -- traversal ---------------------------------------------------------------------

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every descendant, depth first, with dotted names."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs; a parameter shared by two layers appears once."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, p in module._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Array]]:
        for mod_prefix, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` back to None."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        """Training mode (batch statistics, dropout on) for this module and its children."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Evaluation mode (running statistics, dropout off): ``train(False)``."""
        return self.train(False)

    # -- state -------------------------------------------------------------------------

    def _state_items(self) -> Iterator[tuple[str, Module, str, bool]]:
        """(key, owner, attribute, is_parameter) in PyTorch's order: a module's parameters,
        then its buffers, then its children."""
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name in module._parameters:
                yield dot + name, module, name, True
            for name, b in module._buffers.items():
                if b is not None:
                    yield dot + name, module, name, False

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer as NumPy arrays, under PyTorch's keys."""
        out = OrderedDict()
        for key, module, name, is_param in self._state_items():
            value = getattr(module, name)
            value = value.data if is_param else value
            out[key] = np.array(move(value, "cpu"), copy=True)
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays (NumPy or torch tensors) into the existing parameters and buffers,
        keeping their dtype and device.

        Every shape must match (``ValueError`` naming the key). With ``strict`` the keys must
        match exactly (``ValueError`` listing the missing and unexpected ones); otherwise the
        lists are returned.
        """
        items = {key: (module, name, is_param) for key, module, name, is_param in self._state_items()}
        missing = [k for k in items if k not in state_dict]
        unexpected = [k for k in state_dict if k not in items]
        if strict and (missing or unexpected):
            raise ValueError(
                f"load_state_dict(strict=True) for {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        values = {k: _as_numpy(k, state_dict[k]) for k in items if k in state_dict}
        for key, value in values.items():
            module, name, is_param = items[key]
            current = getattr(module, name)
            current = current.data if is_param else current
            if tuple(value.shape) != tuple(current.shape):
                raise ValueError(
                    f"size mismatch for {key!r}: the state_dict has shape {tuple(value.shape)}, "
                    f"the model has shape {tuple(current.shape)}"
                )
        for key, value in values.items():
            module, name, is_param = items[key]
            current = getattr(module, name)
            device = backends.device_of(current.data if is_param else current)
            new = move(value.astype((current.data if is_param else current).dtype), device)
            if is_param:
                current.data = new
            else:
                setattr(module, name, new)
        return IncompatibleKeys(missing, unexpected)

    def _map_arrays(self, fn) -> None:
        for module in self.modules():
            for p in module._parameters.values():
                p.data = fn(p.data)
                if p.grad is not None:
                    p.grad = fn(p.grad)
            for name, b in list(module._buffers.items()):
                if b is not None:
                    setattr(module, name, fn(b))
            object.__setattr__(module, "_cache", None)

    def astype(self, dtype) -> Module:
        """Convert every parameter, gradient and floating buffer to ``dtype`` (float32 or
        float64) in place; integer buffers (``num_batches_tracked``) stay int64. Like ``to``,
        this drops what the last forward saved: run forward again before backward."""
        dtype = shapes.check_float_dtype(dtype)
        self._map_arrays(lambda a: a.astype(dtype) if np.dtype(a.dtype).kind == "f" else a)
        return self

    def to(self, device: str) -> Module:
        """Move every parameter and buffer to ``device`` ("cpu" or "cuda") in place."""
        self._map_arrays(lambda a: move(a, device))
        return self

    # -- display -----------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + (")" if not lines else "\n" + "\n".join(lines) + "\n)")


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse. Children are named
    ``"0"``, ``"1"``, ... (or by the keys of an OrderedDict), as in PyTorch.

    Shapes:
        x: whatever the first module takes
        returns: whatever the last module returns
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            named = list(modules[0].items())
        else:
            named = [(str(i), m) for i, m in enumerate(modules)]
        for name, m in named:
            self._add(name, m)

    def _add(self, name: str, module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential takes Modules, got {type(module).__name__} for entry {name!r}")
        setattr(self, name, module)

    def append(self, module: Module) -> Sequential:
        self._add(str(len(self)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*items[index])
        return items[index]

    def forward(self, x: Array) -> Array:
        for m in self:
            x = m(x)
        return x

    def backward(self, grad_output: Array) -> Array:
        for m in reversed(list(self)):
            grad_output = m.backward(grad_output)
        return grad_output
