"""Batch normalisation on the GPU, with ``fastconv.nn.BatchNorm``'s (PyTorch's) formulas.

Arrays are viewed as (N, C, P). Per-channel sums run one thread per channel over its N * P
values in a fixed order (deterministic, no atomics); the elementwise parts run one thread
per element. Scalars arrive typed as the data's dtype.
"""

from __future__ import annotations

import math

from numba import cuda

from .device import grid_stride, launch_1d


def _ncp(a):
    n, c = a.shape[0], a.shape[1]
    return a.reshape((n, c, a.size // max(1, n * c)))


@cuda.jit
def _stats_kernel(mean, var, x, inv_count, zero):
    # mean, var (C,) <- mean and biased variance of x (N, C, P) per channel (two passes)
    c, step = grid_stride()
    while c < x.shape[1]:
        s = zero
        for n in range(x.shape[0]):
            for p in range(x.shape[2]):
                s += x[n, c, p]
        m = s * inv_count
        s = zero
        for n in range(x.shape[0]):
            for p in range(x.shape[2]):
                d = x[n, c, p] - m
                s += d * d
        mean[c] = m
        var[c] = s * inv_count
        c += step


@cuda.jit
def _running_kernel(running_mean, running_var, tracked, mean, var, f, unbias, one):
    # running stats (C,) <- (1 - f) * running + f * batch (the variance unbiased); tracked (1,) += 1
    c, step = grid_stride()
    if c == 0:
        tracked[0] += 1
    while c < mean.shape[0]:
        running_mean[c] = (one - f) * running_mean[c] + f * mean[c]
        running_var[c] = (one - f) * running_var[c] + f * (var[c] * unbias)
        c += step


@cuda.jit
def _invstd_kernel(invstd, var, eps, one):
    # invstd (C,) <- 1 / sqrt(var (C,) + eps)
    c, step = grid_stride()
    while c < var.shape[0]:
        invstd[c] = one / math.sqrt(var[c] + eps)
        c += step


@cuda.jit
def _apply_kernel(y, xhat, x, mean, invstd, weight, bias, affine):
    # xhat, y (N, C, P) <- (x - mean) * invstd, then xhat * weight + bias per channel
    i, step = grid_stride()
    C, P = x.shape[1], x.shape[2]
    while i < x.shape[0] * C * P:
        n, c, p = i // (C * P), (i // P) % C, i % P
        h = (x[n, c, p] - mean[c]) * invstd[c]
        xhat[n, c, p] = h
        y[n, c, p] = h * weight[c] + bias[c] if affine else h
        i += step


@cuda.jit
def _grad_sums_kernel(sum_g, sum_gx, g, xhat, zero):
    # sum_g, sum_gx (C,) <- sums of g and g * xhat (N, C, P) per channel
    c, step = grid_stride()
    while c < g.shape[1]:
        s = zero
        sx = zero
        for n in range(g.shape[0]):
            for p in range(g.shape[2]):
                s += g[n, c, p]
                sx += g[n, c, p] * xhat[n, c, p]
        sum_g[c] = s
        sum_gx[c] = sx
        c += step


@cuda.jit
def _backward_kernel(dx, g, xhat, invstd, weight, sum_g, sum_gx, inv_count, one, affine, use_batch):
    # dx (N, C, P) <- (g*w - mean(g*w) - xhat * mean(g*w*xhat)) * invstd (batch statistics),
    # or g*w * invstd (running statistics)
    i, step = grid_stride()
    C, P = g.shape[1], g.shape[2]
    while i < g.shape[0] * C * P:
        n, c, p = i // (C * P), (i // P) % C, i % P
        w = weight[c] if affine else one
        d = g[n, c, p] * w
        if use_batch:
            d = d - sum_g[c] * w * inv_count - xhat[n, c, p] * (sum_gx[c] * w * inv_count)
        dx[n, c, p] = d * invstd[c]
        i += step


def batch_norm_stats(mean, var, x) -> None:
    """mean, var (C,) <- per-channel mean and biased variance of x (N, C, *spatial)."""
    t = x.dtype.type
    launch_1d(_stats_kernel, x.shape[1], mean, var, _ncp(x), t(x.shape[1] / max(1, x.size)), t(0))


def batch_norm_update_running(running_mean, running_var, tracked, mean, var, f, count) -> None:
    """Running statistics += ``f`` (PyTorch's momentum) of the batch's; the variance unbiased
    (``count`` values per channel); ``tracked`` (0-d int64) += 1."""
    t = mean.dtype.type
    launch_1d(
        _running_kernel, mean.shape[0], running_mean, running_var, tracked.reshape((1,)), mean, var,
        t(f), t(count / (count - 1)), t(1),
    )  # fmt: skip


def batch_norm_invstd(invstd, var, eps) -> None:
    """invstd (C,) <- 1 / sqrt(var + eps)."""
    t = var.dtype.type
    launch_1d(_invstd_kernel, var.shape[0], invstd, var, t(eps), t(1))


def batch_norm_apply(y, xhat, x, mean, invstd, weight, bias) -> None:
    """xhat = (x - mean) * invstd per channel; y = xhat * weight + bias (weight None: y = xhat)."""
    affine = weight is not None
    w, b = (weight, bias) if affine else (invstd, invstd)
    launch_1d(_apply_kernel, x.size, _ncp(y), _ncp(xhat), _ncp(x), mean, invstd, w, b, affine)


def batch_norm_backward(dx, sum_g, sum_gx, g, xhat, invstd, weight, use_batch: bool) -> None:
    """dx of batch normalisation; sum_g, sum_gx (C,) <- the bias and weight gradients."""
    t = g.dtype.type
    launch_1d(_grad_sums_kernel, g.shape[1], sum_g, sum_gx, _ncp(g), _ncp(xhat), t(0))
    affine = weight is not None
    w = weight if affine else invstd
    inv_count = t(g.shape[1] / max(1, g.size))
    launch_1d(
        _backward_kernel, g.size, _ncp(dx), _ncp(g), _ncp(xhat), invstd, w, sum_g, sum_gx, inv_count,
        t(1), affine, bool(use_batch),
    )  # fmt: skip
