"""Deliberately naive float64 references, written from the formulas in the lecture notes.

Every function loops over output cells and forms each window explicitly; nothing is clever,
so each can be checked by eye. All take and return float64 arrays with a batch axis, and
use the same names and arguments as ``fastconv``.
"""

from __future__ import annotations

import itertools

import numpy as np


def _tuple(v, d):
    return tuple(v) if isinstance(v, tuple | list) else (v,) * d


def _same_padding(kernel, dilation):
    total = [dil * (k - 1) for k, dil in zip(kernel, dilation, strict=True)]
    lo = [t // 2 for t in total]
    return lo, [t - a for t, a in zip(total, lo, strict=True)]


def pad(x, pad_lo, pad_hi, mode="zeros"):
    """Pad the spatial axes of x (N, C, *s) the way PyTorch's padding modes do."""
    np_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    width = [(0, 0), (0, 0)] + [(lo, hi) for lo, hi in zip(pad_lo, pad_hi, strict=True)]
    return np.pad(np.asarray(x, np.float64), width, mode=np_mode)


def _geometry(d, x_shape, w_shape, stride, padding, dilation):
    stride, dilation = _tuple(stride, d), _tuple(dilation, d)
    kernel = w_shape[2:]
    if padding == "valid":
        lo = hi = [0] * d
    elif padding == "same":
        lo, hi = _same_padding(kernel, dilation)
    else:
        lo = hi = list(_tuple(padding, d))
    out = [
        (n + a + b - dil * (k - 1) - 1) // s + 1
        for n, a, b, dil, k, s in zip(x_shape[2:], lo, hi, dilation, kernel, stride, strict=True)
    ]
    return stride, dilation, lo, hi, out


def _window(o, stride, dilation, kernel):
    """Index tuple of the (dilated, strided) window that output cell ``o`` reads."""
    return tuple(
        slice(oi * s, oi * s + dil * (k - 1) + 1, dil)
        for oi, s, dil, k in zip(o, stride, dilation, kernel, strict=True)
    )


def conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """y[n, o, p] = b[o] + sum_{c in group(o), k} w[o, c, k] * x_padded[n, c, p*stride + k*dilation]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    d = x.ndim - 2
    stride, dilation, lo, hi, out = _geometry(d, x.shape, w.shape, stride, padding, dilation)
    xp = pad(x, lo, hi, padding_mode)
    n_batch, c_in = x.shape[:2]
    c_out, cpg = w.shape[:2]
    opg = c_out // groups
    y = np.zeros((n_batch, c_out, *out))
    for n, o in itertools.product(range(n_batch), range(c_out)):
        g = o // opg
        for p in itertools.product(*(range(s) for s in out)):
            win = xp[(n, slice(g * cpg, (g + 1) * cpg), *_window(p, stride, dilation, w.shape[2:]))]
            y[(n, o, *p)] = np.sum(win * w[o]) + (0.0 if b is None else b[o])
    return y


def conv_backward_input(dy, w, input_shape, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """Scatter each dy cell back through the window it read: dx_padded[window] += dy * w.

    For a non-zero padding mode the padded gradient is folded back onto the input cells
    that each padded cell copied (the adjoint of ``pad``).
    """
    dy, w = np.asarray(dy, np.float64), np.asarray(w, np.float64)
    d = dy.ndim - 2
    stride, dilation, lo, hi, out = _geometry(d, input_shape, w.shape, stride, padding, dilation)
    padded = [n + a + b for n, a, b in zip(input_shape[2:], lo, hi, strict=True)]
    dxp = np.zeros((*input_shape[:2], *padded))
    cpg, opg = w.shape[1], w.shape[0] // groups
    for n, o in itertools.product(range(input_shape[0]), range(w.shape[0])):
        g = o // opg
        for p in itertools.product(*(range(s) for s in out)):
            win = (n, slice(g * cpg, (g + 1) * cpg), *_window(p, stride, dilation, w.shape[2:]))
            dxp[win] += dy[(n, o, *p)] * w[o]
    return unpad(dxp, input_shape, lo, padding_mode)


def unpad(dxp, input_shape, lo, mode):
    """Adjoint of ``pad``: every padded cell sends its gradient to the cell it copied."""
    idx = np.arange(int(np.prod(input_shape[2:]))).reshape(input_shape[2:])[None, None]
    hi = [p - n - a for p, n, a in zip(dxp.shape[2:], input_shape[2:], lo, strict=True)]
    src = pad(idx, lo, hi, mode).astype(np.int64)[0, 0]
    inside = pad(np.ones((1, 1, *input_shape[2:])), lo, hi, mode)[0, 0] > 0
    dx = np.zeros((*input_shape[:2], int(np.prod(input_shape[2:]))))
    for p in itertools.product(*(range(s) for s in dxp.shape[2:])):
        if inside[p]:
            dx[:, :, src[p]] += dxp[(slice(None), slice(None), *p)]
    return dx.reshape(input_shape)


def conv_backward_weight(dy, x, w_shape, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """dw[o] = sum_{n, p} dy[n, o, p] * x_padded[n, group(o), window(p)]."""
    dy, x = np.asarray(dy, np.float64), np.asarray(x, np.float64)
    d = x.ndim - 2
    stride, dilation, lo, hi, out = _geometry(d, x.shape, w_shape, stride, padding, dilation)
    xp = pad(x, lo, hi, padding_mode)
    cpg, opg = w_shape[1], w_shape[0] // groups
    dw = np.zeros(w_shape)
    for n, o in itertools.product(range(x.shape[0]), range(w_shape[0])):
        g = o // opg
        for p in itertools.product(*(range(s) for s in out)):
            win = xp[(n, slice(g * cpg, (g + 1) * cpg), *_window(p, stride, dilation, w_shape[2:]))]
            dw[o] += dy[(n, o, *p)] * win
    return dw


def conv_backward_bias(dy):
    dy = np.asarray(dy, np.float64)
    return dy.sum(axis=tuple(i for i in range(dy.ndim) if i != 1))


# -- transposed convolution --

# -- pooling --
