"""Optimizer updates on the GPU: one fused kernel per update rule, in place.

The formulas are ``fastconv.optim``'s (PyTorch's), applied per element, so each element
belongs to one thread: no races, no atomics. Hyper-parameters are cast to the parameter's
dtype on the host (float32 parameters update in float32); state buffers that an update does
not use are passed as a stand-in and never written.
"""

from __future__ import annotations

import math

from numba import cuda

from .device import grid_stride, launch_1d
from .elementwise import flat


@cuda.jit
def _sgd_kernel(p, g, buf, lr, weight_decay, momentum, dampening_1m, use_wd, use_momentum, nesterov, first):
    # p (n,) -= lr * update(g (n,)); buf (n,) the momentum buffer (unused without momentum)
    i, step = grid_stride()
    while i < p.shape[0]:
        d = g[i]
        if use_wd:
            d = d + weight_decay * p[i]
        if use_momentum:
            b = d if first else buf[i] * momentum + dampening_1m * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] = p[i] - lr * d
        i += step


@cuda.jit
def _adam_kernel(
    p, g, m, v, v_max, weight_decay, beta1_1m, beta2, beta2_1m, eps, step_size, bias2_sqrt,
    l2, decoupled, amsgrad,
):  # fmt: skip
    # p, g, m, v, v_max (n,): one Adam(W) step in place (v_max unused without amsgrad)
    i, step = grid_stride()
    while i < p.shape[0]:
        d = g[i]
        if decoupled:
            p[i] = p[i] * weight_decay  # weight_decay holds 1 - lr * weight_decay here
        elif l2:
            d = d + weight_decay * p[i]
        mi = m[i] + beta1_1m * (d - m[i])
        vi = v[i] * beta2 + beta2_1m * d * d
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vm = v_max[i]
            if not (vi <= vm or vm != vm):  # np.maximum: larger value, NaN propagates
                vm = vi
            v_max[i] = vm
            vi = vm
        p[i] = p[i] - step_size * mi / (math.sqrt(vi) / bias2_sqrt + eps)
        i += step


def sgd_step(p, g, buf, lr, weight_decay, momentum, dampening, nesterov, first) -> None:
    """One SGD update of p in place (``fastconv.optim.SGD``'s formula); buf is the momentum
    buffer (None without momentum), overwritten with g on the first step."""
    t = p.dtype.type
    o = flat(p)
    b = flat(g) if buf is None else flat(buf)
    launch_1d(
        _sgd_kernel, o.size, o, flat(g), b, t(lr), t(weight_decay), t(momentum), t(1 - dampening),
        weight_decay != 0, momentum != 0, bool(nesterov), bool(first),
    )  # fmt: skip


def adam_step(p, g, m, v, v_max, lr, beta1, beta2, eps, weight_decay, decoupled, step) -> None:
    """One Adam (``decoupled``: AdamW) update of p, m, v (and v_max for amsgrad, else None)
    in place, at step number ``step`` (1 for the first), as ``fastconv.optim.Adam``."""
    t = p.dtype.type
    o = flat(p)
    wd = 1 - lr * weight_decay if decoupled else weight_decay
    launch_1d(
        _adam_kernel, o.size, o, flat(g), flat(m), flat(v), flat(v if v_max is None else v_max),
        t(wd), t(1 - beta1), t(beta2), t(1 - beta2), t(eps),
        t(lr / (1 - beta1**step)), t((1 - beta2**step) ** 0.5),
        weight_decay != 0, bool(decoupled and weight_decay != 0), v_max is not None,
    )  # fmt: skip
