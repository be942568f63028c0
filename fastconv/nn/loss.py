"""Losses as layers: ``loss = criterion(prediction, target)`` returns a Python float, and
``criterion.backward()`` returns ``d loss / d prediction`` (times an optional scalar)."""

from __future__ import annotations

import numpy as np

from .. import backends, shapes
from .module import Array, Module, move

_REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def backward(self, grad_output: float = 1.0) -> Array:
        """``d loss / d prediction``, scaled by ``grad_output`` (a scalar, default 1), on the
        prediction's device."""
        grad, device = self._saved()
        return move(grad * grad.dtype.type(grad_output), device)

    def _host(self, prediction: Array) -> tuple[Array, str]:
        # Losses are tiny: a CUDA prediction is computed on the host, its gradient moved back.
        device = backends.device_of(prediction)
        return (prediction if device == "cpu" else move(prediction, "cpu")), device

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits, as ``torch.nn.CrossEntropyLoss``: ``-log softmax(x)[y]``,
    averaged (``reduction="mean"``) or summed over the batch. With ``label_smoothing=e`` the
    target is ``(1 - e) * one_hot(y) + e / C``. Targets may also be class probabilities.

    Log-sum-exp runs after subtracting each row's maximum, so logits of 1e8 in float32 give
    a finite, correct loss and gradient.

    Shapes:
        logits: (N, C), float32 or float64
        target: (N,) integer class indices in [0, C), or (N, C) probabilities (logits' dtype)
        returns: a Python float; ``backward()`` returns (N, C), the dtype of logits
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(reduction)
        self.label_smoothing = shapes.check_probability("label_smoothing", label_smoothing)

    def _target_probabilities(self, logits: Array, target: Array) -> Array:
        n, c = logits.shape
        if not isinstance(target, np.ndarray):
            raise TypeError(f"target must be a NumPy array, got {type(target).__name__}")
        if target.dtype.kind in "iu":
            if target.shape != (n,):
                raise ValueError(
                    f"integer target must have shape ({n},) to match logits {logits.shape}, got {target.shape}"
                )
            if n and (target.min() < 0 or target.max() >= c):
                raise ValueError(
                    f"target class indices must be in [0, {c}), got values in [{target.min()}, {target.max()}]"
                )
            probs = np.zeros((n, c), logits.dtype)
            probs[np.arange(n), target] = 1
        else:
            shapes.check_array("target", target, 2, "(N, C) class probabilities")
            shapes.check_same_dtype(logits=logits, target=target)
            if target.shape != (n, c):
                raise ValueError(
                    f"probability target must have the shape of logits {logits.shape}, got {target.shape}"
                )
            probs = target
        e = self.label_smoothing
        return probs * (1 - e) + e / c if e else probs

    def forward(self, logits: Array, target: Array) -> float:
        shapes.check_array("logits", logits, 2, "(N, C)")
        logits, device = self._host(logits)
        probs = self._target_probabilities(logits, target)
        shifted = logits - logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_softmax = shifted - lse
        losses = -(probs * log_softmax).sum(axis=1)
        grad = np.exp(log_softmax) - probs
        if self.reduction == "mean":
            n = logits.shape[0]
            grad /= max(n, 1)
            loss = losses.mean() if n else float("nan")
        else:
            loss = losses.sum()
        self._save(grad, device)
        return float(loss)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class MSELoss(_Loss):
    """Mean (or summed) squared error, as ``torch.nn.MSELoss``.

    Shapes:
        prediction: any shape, float32 or float64
        target: the shape and dtype of prediction
        returns: a Python float; ``backward()`` returns the shape of prediction
    """

    def forward(self, prediction: Array, target: Array) -> float:
        shapes.check_array("prediction", prediction, tuple(range(8)))
        shapes.check_array("target", target, tuple(range(8)))
        shapes.check_same_dtype(prediction=prediction, target=target)
        prediction, device = self._host(prediction)
        target, _ = self._host(target)
        if prediction.shape != target.shape:
            raise ValueError(f"target has shape {target.shape} but prediction has shape {prediction.shape}")
        diff = prediction - target
        grad = 2 * diff
        if self.reduction == "mean":
            grad /= max(diff.size, 1)
            loss = np.mean(diff * diff) if diff.size else float("nan")
        else:
            loss = np.sum(diff * diff)
        self._save(grad, device)
        return float(loss)
