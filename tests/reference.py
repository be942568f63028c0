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


def conv_transpose(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The notes' expanding convolution as a scatter loop: every input cell adds ``x * w`` onto
    the window it expands to, ``z[n, o, i*stride + k*dilation] += w[c, o, k] * x[n, c, i]``;
    then ``padding`` cells are cropped from each end and ``output_padding`` appended.

    w (C_in, C_out/groups, *k)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    d = x.ndim - 2
    stride, dilation = _tuple(stride, d), _tuple(dilation, d)
    padding, output_padding = _tuple(padding, d), _tuple(output_padding, d)
    kernel = w.shape[2:]
    full = [
        (n - 1) * s + dil * (k - 1) + 1 + op
        for n, s, dil, k, op in zip(x.shape[2:], stride, dilation, kernel, output_padding, strict=True)
    ]
    opg, cpg = w.shape[1], x.shape[1] // groups
    z = np.zeros((x.shape[0], opg * groups, *full))
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        g = c // cpg
        for p in itertools.product(*(range(s) for s in x.shape[2:])):
            win = (n, slice(g * opg, (g + 1) * opg), *_window(p, stride, dilation, kernel))
            z[win] += x[(n, c, *p)] * w[c]
    out = [f - 2 * p for f, p in zip(full, padding, strict=True)]
    z = z[(slice(None), slice(None), *(slice(p, p + o) for p, o in zip(padding, out, strict=True)))]
    return z + (0.0 if b is None else np.asarray(b, np.float64).reshape(-1, *[1] * d))


# -- pooling --


def pool_output_size(n, k, s, p, dil, ceil_mode):
    """PyTorch's rule; in ceil_mode the last window must start inside the input or left padding."""
    span = n + 2 * p - dil * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    return out - 1 if ceil_mode and (out - 1) * s >= n + p else out


def _pool_windows(size, kernel, stride, padding, dilation, ceil_mode):
    """(output size, windows): every window as (output position, the input positions it reads
    with padding dropped, the number of cells it covers in the padded input, clipped at the
    right padding's end)."""
    d = len(size)
    kernel = _tuple(kernel, d)
    stride = kernel if stride is None else _tuple(stride, d)
    padding, dilation = _tuple(padding, d), _tuple(dilation, d)
    out = [pool_output_size(*a, ceil_mode) for a in zip(size, kernel, stride, padding, dilation, strict=True)]
    windows = []
    for o in itertools.product(*(range(m) for m in out)):
        taps = [
            [i * s - p + j * dil for j in range(k)]
            for i, s, p, dil, k in zip(o, stride, padding, dilation, kernel, strict=True)
        ]
        inside = [[t for t in ts if 0 <= t < n] for ts, n in zip(taps, size, strict=True)]
        padded = np.prod(
            [len([t for t in ts if t < n + p]) for ts, n, p in zip(taps, size, padding, strict=True)]
        )
        windows.append((o, list(itertools.product(*inside)), padded))
    return out, windows


def max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(out, indices): the largest cell of every window and its flat position in the (n, c)
    plane; ties: the first in scan order; a window with NaN gives NaN at its last NaN."""
    x = np.asarray(x, np.float64)
    out, windows = _pool_windows(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    return _max_over(x, out, [(o, cells) for o, cells, _ in windows])


def _max_over(x, out, windows):
    y = np.zeros((*x.shape[:2], *out))
    idx = np.zeros(y.shape, np.int64)
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for o, cells in windows:
            vals = [x[(n, c, *cell)] for cell in cells]
            nans = [i for i, v in enumerate(vals) if np.isnan(v)]
            best = nans[-1] if nans else int(np.argmax(vals))
            y[(n, c, *o)] = vals[best]
            idx[(n, c, *o)] = np.ravel_multi_index(cells[best], x.shape[2:])
    return y, idx


def max_pool_backward(dy, indices, input_shape):
    """Every dy cell added to the input cell its index names."""
    dx = np.zeros(input_shape)
    for n, c in itertools.product(range(input_shape[0]), range(input_shape[1])):
        for o in itertools.product(*(range(m) for m in dy.shape[2:])):
            cell = np.unravel_index(indices[(n, c, *o)], input_shape[2:])
            dx[(n, c, *cell)] += dy[(n, c, *o)]
    return dx


def avg_pool(
    x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    """Window sums (zero padding) divided by divisor_override, or by the window's cells in the
    padded input (count_include_pad), or by its input cells."""
    x = np.asarray(x, np.float64)
    out, windows = _pool_windows(x.shape[2:], kernel_size, stride, padding, 1, ceil_mode)
    y = np.zeros((*x.shape[:2], *out))
    for o, cells, padded in windows:
        div = divisor_override or (padded if count_include_pad else len(cells))
        total = sum(x[(slice(None), slice(None), *cell)] for cell in cells)
        y[(slice(None), slice(None), *o)] = total / div
    return y


def lp_pool(x, norm_type, kernel_size, stride=None, ceil_mode=False):
    """(sum over the window of x**p) ** (1/p); as PyTorch, a window clipped by ceil_mode is
    averaged over its cells and scaled by the full kernel size."""
    x = np.asarray(x, np.float64)
    avg = avg_pool(x**norm_type, kernel_size, stride, 0, ceil_mode)
    return (avg * np.prod(_tuple(kernel_size, x.ndim - 2))) ** (1.0 / norm_type)


def _adaptive_windows(size, out_size):
    """Output cell o of an axis of size n pools cells floor(o*n/out) .. ceil((o+1)*n/out) - 1."""
    for o in itertools.product(*(range(m) for m in out_size)):
        ranges = [range(i * n // m, -(-(i + 1) * n // m)) for i, n, m in zip(o, size, out_size, strict=True)]
        yield o, list(itertools.product(*ranges))


def adaptive_avg_pool(x, output_size):
    x = np.asarray(x, np.float64)
    out = _tuple(output_size, x.ndim - 2)
    y = np.zeros((*x.shape[:2], *out))
    for o, cells in _adaptive_windows(x.shape[2:], out):
        y[(slice(None), slice(None), *o)] = sum(x[(slice(None), slice(None), *c)] for c in cells) / len(cells)
    return y


def adaptive_max_pool(x, output_size):
    x = np.asarray(x, np.float64)
    out = _tuple(output_size, x.ndim - 2)
    return _max_over(x, out, list(_adaptive_windows(x.shape[2:], out)))


def max_unpool(x, indices, output_shape):
    """Zeros of output_shape with every x cell written at its flat plane index (in order)."""
    y = np.zeros(output_shape)
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for o in itertools.product(*(range(m) for m in x.shape[2:])):
            y[(n, c, *np.unravel_index(indices[(n, c, *o)], output_shape[2:]))] = x[(n, c, *o)]
    return y
