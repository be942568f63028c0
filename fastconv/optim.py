"""Optimizers with PyTorch's update formulas: SGD -> Adam -> AdamW, in order of complexity.

An optimizer holds ``param_groups`` (a list of dicts, each with ``"params"`` and its
hyper-parameters, as ``torch.optim``) and per-parameter ``state``. ``step()`` reads each
parameter's ``.grad`` and updates ``.data`` in place; parameters whose ``.grad`` is None are
skipped. The updates are backend ops (``sgd_step``, ``adam_step``), so parameters on a
CUDA device update there, with their state buffers on the same device. The learning-rate schedulers live in ``fastconv.lr_scheduler`` and are re-exported
here, so ``fastconv.optim.StepLR`` works as ``torch.optim.lr_scheduler.StepLR`` does.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import backends
from .lr_scheduler import CosineAnnealingLR, LRScheduler, ReduceLROnPlateau, StepLR

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "LRScheduler",
    "StepLR",
    "CosineAnnealingLR",
    "ReduceLROnPlateau",
]


def _check_nonneg(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``zero_grad``.

    ``params`` is an iterable of Parameters (``.data``/``.grad``), or of dicts
    ``{"params": [...], **overrides}`` for per-group hyper-parameters, as in PyTorch.
    """

    def __init__(self, params: Iterable, defaults: dict):
        params = list(params)
        if not params:
            raise ValueError("params must not be empty: the optimizer got no parameters")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups: list[dict] = []
        self.state: dict[int, dict] = {}
        for group in groups:
            group = {**defaults, **group, "params": list(group["params"])}
            for p in group["params"]:
                if not hasattr(p, "data") or not hasattr(p, "grad"):
                    raise TypeError(
                        f"params must hold Parameters with .data and .grad, got {type(p).__name__}"
                    )
            self._check_group(group)
            self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:
        _check_nonneg("lr", group["lr"])
        _check_nonneg("weight_decay", group["weight_decay"])

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to None, as PyTorch's ``zero_grad(set_to_none=True)``."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _grads(self):
        """(group, parameter, its state, the backend of its arrays) for each parameter with
        a gradient; the backend's update ops work in place, state lives on that device."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    backend = backends.backend_for(data=p.data, grad=p.grad)
                    yield group, p, self.state.setdefault(id(p), {}), backend

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient."""
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, weight decay and Nesterov.

    PyTorch's formula, per parameter ``p`` with gradient ``g``::

        g = g + weight_decay * p
        buf = g                                         (first step)
        buf = momentum * buf + (1 - dampening) * g      (later steps)
        g = g + momentum * buf if nesterov else buf     (when momentum != 0)
        p = p - lr * g
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        _check_nonneg("momentum", group["momentum"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening == 0, got "
                f"momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def step(self) -> None:
        """One SGD update (see the class docstring for the formula)."""
        for group, p, state, backend in self._grads():
            momentum = group["momentum"]
            first = momentum != 0 and "momentum_buffer" not in state
            if first:
                state["momentum_buffer"] = backend.empty(p.data.shape, p.data.dtype)
            backend.sgd_step(
                p.data, p.grad, state.get("momentum_buffer"), group["lr"], group["weight_decay"],
                momentum, group["dampening"], group["nesterov"], first,
            )  # fmt: skip


class Adam(Optimizer):
    """Adam (Kingma & Ba), with PyTorch's bias correction and optional AMSGrad.

    Per parameter, at step ``t``::

        g = g + weight_decay * p                        (L2 penalty; AdamW decays p instead)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        denom = sqrt(v) / sqrt(1 - beta2**t) + eps      (max of all v so far with amsgrad)
        p = p - lr / (1 - beta1**t) * m / denom
    """

    _decoupled = False

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        _check_nonneg("eps", group["eps"])
        betas = group["betas"]
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")

    def step(self) -> None:
        """One Adam update (see the class docstring for the formula)."""
        for group, p, state, backend in self._grads():
            if not state:
                shape, dtype = p.data.shape, p.data.dtype
                state.update(
                    step=0, exp_avg=backend.zeros(shape, dtype), exp_avg_sq=backend.zeros(shape, dtype)
                )
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = backend.zeros(shape, dtype)
            state["step"] += 1
            beta1, beta2 = group["betas"]
            backend.adam_step(
                p.data, p.grad, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
                group["lr"], beta1, beta2, group["eps"], group["weight_decay"], self._decoupled, state["step"],
            )  # fmt: skip


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p = p * (1 - lr * weight_decay)``
    before the Adam step, instead of adding ``weight_decay * p`` to the gradient."""

    _decoupled = True

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
