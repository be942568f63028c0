"""Normalisation layers: ``BatchNorm1d/2d/3d`` (NumPy, or kernels on CUDA arrays) and
AlexNet's ``LocalResponseNorm`` (NumPy)."""

from __future__ import annotations

import numpy as np

from .. import backends, shapes
from .module import Array, Module, Parameter


class _BatchNorm(Module):
    _ndims: tuple[int, ...] = ()
    _layout = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype=np.float32,
    ):
        super().__init__()
        self.num_features = shapes.check_int("num_features", num_features, 1)
        self.eps = shapes.check_real("eps", eps, positive=True)
        self.momentum = None if momentum is None else shapes.check_probability("momentum", momentum)
        self.affine, self.track_running_stats = affine, track_running_stats
        dtype = shapes.check_float_dtype(dtype)
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine else None
        tracked = track_running_stats
        self.register_buffer("running_mean", np.zeros(num_features, dtype) if tracked else None)
        self.register_buffer("running_var", np.ones(num_features, dtype) if tracked else None)
        self.register_buffer("num_batches_tracked", np.array(0, np.int64) if tracked else None)

    def _update_running_stats(self, mean: Array, var: Array, count: int) -> None:
        # PyTorch: the running variance gets the unbiased batch variance.
        self.num_batches_tracked += 1
        f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (count / (count - 1))
        self.running_mean = (1 - f) * self.running_mean + f * mean
        self.running_var = (1 - f) * self.running_var + f * unbiased

    def forward(self, x: Array) -> Array:
        name = type(self).__name__
        shapes.check_array("x", x, self._ndims, self._layout)
        shapes.check_features(name, x, 1, self.num_features)
        shapes.check_same_dtype(
            weight=self.weight.data if self.affine else None, running_mean=self.running_mean, x=x
        )
        if backends.device_of(x) == "cuda":
            return self._forward_cuda(x)
        axes = (0, *range(2, x.ndim))
        bcast = (1, -1) + (1,) * (x.ndim - 2)
        count = x.size // self.num_features
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            if count < 2:
                raise ValueError(
                    f"{name} in training needs more than 1 value per channel, got x of shape "
                    f"{tuple(x.shape)}; use eval() or a larger batch"
                )
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, count)
        else:
            mean, var = self.running_mean, self.running_var
        invstd = (1 / np.sqrt(var + self.eps)).astype(x.dtype)
        xhat = (x - mean.reshape(bcast)) * invstd.reshape(bcast)
        y = xhat * self.weight.data.reshape(bcast) + self.bias.data.reshape(bcast) if self.affine else xhat
        self._save(xhat, invstd, use_batch, axes, bcast)
        return y

    def _use_batch(self, x: Array) -> bool:
        use_batch = self.training or not self.track_running_stats
        if use_batch and x.size // self.num_features < 2:
            raise ValueError(
                f"{type(self).__name__} in training needs more than 1 value per channel, got x of "
                f"shape {tuple(x.shape)}; use eval() or a larger batch"
            )
        return use_batch

    def _forward_cuda(self, x: Array) -> Array:
        # the same formulas as below, as kernels; only momentum=None reads a count back
        cuda = backends.get("cuda")
        c, dtype = self.num_features, x.dtype
        use_batch = self._use_batch(x)
        if use_batch:
            mean, var = cuda.empty((c,), dtype), cuda.empty((c,), dtype)
            cuda.batch_norm_stats(mean, var, x)
            if self.training and self.track_running_stats:
                f = self.momentum
                if f is None:  # cumulative average: 1 / (batches so far)
                    f = 1.0 / (int(cuda.to_host(self.num_batches_tracked)) + 1)
                cuda.batch_norm_update_running(
                    self.running_mean, self.running_var, self.num_batches_tracked, mean, var, f,
                    x.size // c,
                )  # fmt: skip
        else:
            mean, var = self.running_mean, self.running_var
        invstd = cuda.empty((c,), dtype)
        cuda.batch_norm_invstd(invstd, var, self.eps)
        y, xhat = cuda.empty(x.shape, dtype), cuda.empty(x.shape, dtype)
        w, b = (self.weight.data, self.bias.data) if self.affine else (None, None)
        cuda.batch_norm_apply(y, xhat, x, mean, invstd, w, b)
        self._save(xhat, invstd, use_batch, None, None)
        return y

    def _backward_cuda(self, grad_output: Array, xhat: Array, invstd: Array, use_batch: bool) -> Array:
        cuda = backends.backend_for(grad_output=grad_output, xhat=xhat)
        c, dtype = self.num_features, xhat.dtype
        dx, sum_g, sum_gx = cuda.empty(xhat.shape, dtype), cuda.empty((c,), dtype), cuda.empty((c,), dtype)
        cuda.batch_norm_backward(
            dx, sum_g, sum_gx, grad_output, xhat, invstd, self.weight.data if self.affine else None, use_batch
        )
        if self.affine:
            self.weight.accumulate(sum_gx)
            self.bias.accumulate(sum_g)
        return dx

    def backward(self, grad_output: Array) -> Array:
        xhat, invstd, use_batch, axes, bcast = self._saved()
        shapes.check_layer_grad(type(self).__name__, grad_output, xhat.shape)
        if backends.device_of(xhat) == "cuda":
            return self._backward_cuda(grad_output, xhat, invstd, use_batch)
        if self.affine:
            self.weight.accumulate((grad_output * xhat).sum(axis=axes))
            self.bias.accumulate(grad_output.sum(axis=axes))
            grad_output = grad_output * self.weight.data.reshape(bcast)
        if not use_batch:  # running statistics are constants
            return grad_output * invstd.reshape(bcast)
        mean_g = grad_output.mean(axis=axes, keepdims=True)
        mean_gx = (grad_output * xhat).mean(axis=axes, keepdims=True)
        return (grad_output - mean_g - xhat * mean_gx) * invstd.reshape(bcast)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


_BN_DOC = """Batch normalisation over {what}, as ``torch.nn.{name}``: normalise each channel by
    the batch mean and (biased) variance in training, updating ``running_mean``/``running_var``
    with ``momentum`` (the variance unbiased; ``momentum=None`` is a cumulative average);
    normalise by the running statistics in evaluation. ``affine`` adds ``weight``/``bias``.

    Shapes:
        x: {layout}, float32 or float64
        returns: the shape and dtype of x
"""


def _batch_norm(name: str, ndims: tuple[int, ...], layout: str, what: str):
    doc = _BN_DOC.format(what=what, name=name, layout=layout)
    return type(
        name, (_BatchNorm,), {"_ndims": ndims, "_layout": layout, "__doc__": doc, "__module__": __name__}
    )


BatchNorm1d = _batch_norm("BatchNorm1d", (2, 3), "(N, C) or (N, C, L)", "features or 1-D maps")
BatchNorm2d = _batch_norm("BatchNorm2d", (4,), "(N, C, H, W)", "2-D feature maps")
BatchNorm3d = _batch_norm("BatchNorm3d", (5,), "(N, C, D, H, W)", "3-D feature maps")


def _window_sum(a: Array, before: int, after: int) -> Array:
    """``out[:, c] = sum(a[:, c - before : c + after + 1])`` along axis 1, zeros outside."""
    c = a.shape[1]
    csum = np.cumsum(a, axis=1)
    zeros = np.zeros_like(a[:, :1])
    csum = np.concatenate([zeros, csum], axis=1)  # csum[:, i] = sum(a[:, :i])
    hi = np.minimum(np.arange(c) + after + 1, c)
    lo = np.maximum(np.arange(c) - before, 0)
    return csum[:, hi] - csum[:, lo]


class LocalResponseNorm(Module):
    """AlexNet's local response normalisation across channels, as
    ``torch.nn.LocalResponseNorm``: ``y_c = x_c / (k + alpha / size * S_c) ** beta`` with
    ``S_c`` the sum of ``x**2`` over channels ``c - size//2 .. c + (size-1)//2``.

    Shapes:
        x: (N, C, *spatial), float32 or float64
        returns: the shape and dtype of x
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size = shapes.check_int("size", size, 1)
        self.alpha = shapes.check_real("alpha", alpha)
        self.beta = shapes.check_real("beta", beta)
        self.k = shapes.check_real("k", k)

    def forward(self, x: Array) -> Array:
        shapes.check_array("x", x, tuple(range(2, 8)), "(N, C, *spatial)")
        shapes.check_host("LocalResponseNorm", x=x)
        s = self.size
        base = self.k + (self.alpha / s) * _window_sum(x * x, s // 2, (s - 1) // 2)
        y = x * base**-self.beta
        self._save(x, base, y)
        return y

    def backward(self, grad_output: Array) -> Array:
        x, base, y = self._saved()
        shapes.check_layer_grad("LocalResponseNorm", grad_output, x.shape)
        s = self.size
        # y_c depends on x_j for j in c's window, so x_j collects from the mirrored window.
        r = grad_output * y / base
        spread = _window_sum(r, (s - 1) // 2, s // 2)
        return grad_output * base**-self.beta - (2 * self.alpha * self.beta / s) * x * spread

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
