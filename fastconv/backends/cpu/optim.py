"""Optimizer updates in NumPy, in place, under the CUDA backend's op names and signatures.

The formulas are ``fastconv.optim``'s (PyTorch's); hyper-parameters are Python floats, so
NumPy casts them to the parameter's dtype and float32 parameters update in float32.
"""

from __future__ import annotations

import numpy as np


def sgd_step(p, g, buf, lr, weight_decay, momentum, dampening, nesterov, first) -> None:
    """One SGD update of p in place; buf is the momentum buffer (None without momentum),
    overwritten with g on the first step."""
    if weight_decay != 0:
        g = g + weight_decay * p
    if momentum != 0:
        if first:
            buf[...] = g
        else:
            buf *= momentum
            buf += (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    p -= lr * g


def adam_step(p, g, m, v, v_max, lr, beta1, beta2, eps, weight_decay, decoupled, step) -> None:
    """One Adam (``decoupled``: AdamW) update of p, m, v (and v_max for amsgrad, else None)
    in place, at step number ``step`` (1 for the first)."""
    if weight_decay != 0:
        if decoupled:
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
    m += (1 - beta1) * (g - m)  # torch's lerp_: m + (1 - beta1) * (g - m)
    v *= beta2
    v += (1 - beta2) * g * g
    if v_max is not None:
        np.maximum(v_max, v, out=v_max)
        v = v_max
    step_size = lr / (1 - beta1**step)
    denom = np.sqrt(v) / (1 - beta2**step) ** 0.5 + eps
    p -= step_size * m / denom  # torch's addcdiv_ order: (step_size * m) / denom
