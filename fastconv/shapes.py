"""Output sizes, geometry objects and every validation of fastconv, in pure Python.

Nothing here touches array data: functions take shapes, dtypes and arguments, and either
return plain values or raise a ``ValueError``/``TypeError`` that names the argument, the
value and the rule. ``functional`` calls these before any kernel runs, so a Numba typing
error can never reach a user.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

# ---------------------------------------------------------------------------------------------
# arrays and plain arguments
# ---------------------------------------------------------------------------------------------


def is_array(a) -> bool:
    """True for a NumPy array or a CUDA array (anything a backend accepts)."""
    if isinstance(a, np.ndarray):
        return True
    from .backends import device_of

    return device_of(a) == "cuda"


def check_array(name: str, a, ndims: tuple[int, ...] | int, what: str = "") -> np.dtype:
    """Check that ``a`` is a float32/float64 array with one of ``ndims`` dimensions.

    Returns its dtype. ``what`` describes the expected layout for the message, e.g.
    ``"(N, C, H, W) or unbatched (C, H, W)"``.
    """
    if not is_array(a):
        raise TypeError(
            f"{name} must be a NumPy array (or a CUDA array), got {type(a).__name__}; "
            f"wrap it with np.asarray({name}, dtype=np.float32)"
        )
    dtype = np.dtype(a.dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} has dtype {dtype}, but fastconv computes in float32 or float64; "
            f"cast it first, e.g. {name}.astype(np.float32)"
        )
    ndims = (ndims,) if isinstance(ndims, int) else ndims
    if a.ndim not in ndims:
        allowed = " or ".join(str(n) for n in ndims)
        layout = f" {what}" if what else ""
        raise ValueError(
            f"{name} must have {allowed} dimensions{layout}, got {a.ndim} (shape {tuple(a.shape)})"
        )
    return dtype


def check_same_dtype(**arrays) -> np.dtype:
    """All given arrays (None skipped) share one dtype; return it."""
    named = [(k, np.dtype(v.dtype)) for k, v in arrays.items() if v is not None]
    first_name, first = named[0]
    for name, dtype in named[1:]:
        if dtype != first:
            raise TypeError(
                f"{name} has dtype {dtype} but {first_name} has dtype {first}; "
                f"fastconv does not mix precisions: cast one, e.g. {name}.astype({first_name}.dtype)"
            )
    return first


def check_int(name: str, value, minimum: int | None = None) -> int:
    """A plain integer (NumPy integers accepted; bool and float refused)."""
    if type(value) is not int:  # a plain int skips the (slow) ABC checks; bool's type is bool
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
        value = int(value)
    if minimum is not None and value < minimum:
        rule = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {rule}, got {value}")
    return value


def int_tuple(name: str, value, d: int, minimum: int | None = None) -> tuple[int, ...]:
    """An int or a length-``d`` tuple/list of ints, returned as a ``d``-tuple."""
    if isinstance(value, tuple | list):
        if len(value) != d:
            raise ValueError(
                f"{name} must be an int or a tuple of {d} ints, got {tuple(value)!r} of length {len(value)}"
            )
        return tuple(check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(value))
    if isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be an int or a tuple of {d} ints, got an array")
    return (check_int(name, value, minimum),) * d


def check_shape(name: str, shape, length: tuple[int, ...] | int) -> tuple[int, ...]:
    """A shape argument: a tuple of non-negative ints of one of the allowed lengths."""
    lengths = (length,) if isinstance(length, int) else length
    if not isinstance(shape, tuple | list):
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}")
    shape = tuple(check_int(f"{name}[{i}]", s, 0) for i, s in enumerate(shape))
    if len(shape) not in lengths:
        allowed = " or ".join(str(n) for n in lengths)
        raise ValueError(f"{name} must have {allowed} entries, got {shape} of length {len(shape)}")
    return shape


# ---------------------------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvGeometry:
    """Everything a convolution kernel needs besides the arrays, for ``d`` spatial axes.

    ``pad_lo``/``pad_hi`` are the zeros (or ``padding_mode``) added before/after each axis;
    ``out_size`` is the output's spatial shape. ``lift3`` turns the geometry of a 1-D or 2-D
    convolution into the equivalent 3-D one (leading unit axes), which is all kernels see.
    """

    stride: tuple[int, ...]
    pad_lo: tuple[int, ...]
    pad_hi: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    out_size: tuple[int, ...]
    padding_mode: str = "zeros"

    def lift3(self) -> ConvGeometry:
        k = 3 - len(self.stride)
        return ConvGeometry(
            (1,) * k + self.stride,
            (0,) * k + self.pad_lo,
            (0,) * k + self.pad_hi,
            (1,) * k + self.dilation,
            self.groups,
            (1,) * k + self.in_size,
            (1,) * k + self.kernel,
            (1,) * k + self.out_size,
            self.padding_mode,
        )


def conv_output_size(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dil: int) -> int:
    """``floor((size + pad_lo + pad_hi - dil*(kernel-1) - 1) / stride) + 1``; the notes'
    ``(N - F + 2P)/S + 1`` with dilation."""
    return (size + pad_lo + pad_hi - dil * (kernel - 1) - 1) // stride + 1


def conv_padding(padding, d: int, kernel, stride, dilation) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Resolve ``padding`` (int, tuple, ``"valid"``, ``"same"``) to (pad_lo, pad_hi)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * d, (0,) * d
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions, got stride={stride}; "
                    "use an explicit padding"
                )
            total = [dil * (k - 1) for k, dil in zip(kernel, dilation, strict=True)]
            lo = tuple(t // 2 for t in total)  # PyTorch: the odd extra zero goes on the right
            return lo, tuple(t - lo_ for t, lo_ in zip(total, lo, strict=True))
        raise ValueError(f"padding must be an int, a tuple of {d} ints, 'valid' or 'same', got {padding!r}")
    pad = int_tuple("padding", padding, d, 0)
    return pad, pad


def check_padding_mode(padding_mode) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    return padding_mode


def _check_mode_fits(padding_mode: str, in_size, pad_lo, pad_hi) -> None:
    for axis, (n, lo, hi) in enumerate(zip(in_size, pad_lo, pad_hi, strict=True)):
        if padding_mode == "reflect" and max(lo, hi) >= n:
            raise ValueError(
                f"padding_mode='reflect' needs padding < input size on every axis, "
                f"got padding ({lo}, {hi}) for size {n} on spatial axis {axis}"
            )
        if padding_mode == "circular" and max(lo, hi) > n:
            raise ValueError(
                f"padding_mode='circular' needs padding <= input size on every axis, "
                f"got padding ({lo}, {hi}) for size {n} on spatial axis {axis}"
            )


def conv_geometry(
    d: int,
    x_shape,
    w_shape,
    stride,
    padding,
    dilation,
    groups,
    padding_mode="zeros",
) -> ConvGeometry:
    """Validate a convolution's shapes and arguments; return its geometry.

    Shapes: x_shape (N, C_in, *in_size), w_shape (C_out, C_in/groups, *kernel). Cached
    where every argument is plain (``plain_key``; the per-call cost of a small layer):
    NumPy ints, floats and other types are checked afresh, and a bool never meets a cached
    int (the cache is typed), so validation is the same either way.
    """
    key = plain_key(d, tuple(x_shape), tuple(w_shape), stride, padding, dilation, groups, padding_mode)
    if key is not None:
        return _cached_conv_geometry(*key)
    return _conv_geometry(d, x_shape, w_shape, stride, padding, dilation, groups, padding_mode)


def plain_key(*args) -> tuple | None:
    """``args`` as the key of a cache of validated results (``functools.lru_cache(typed=True)``),
    lists as tuples; or None where one is not plain. Plain: None, a bool, int or str, or a
    tuple or list of ints: values validated by their value alone, so that arguments with
    equal keys validate alike (inside a tuple ``1.0 == 1`` and ``True == 1``, so only ints)."""
    lists = False
    for a in args:  # plain loops: this runs on every call of every small layer
        t = type(a)
        if t is tuple or t is list:
            for e in a:
                if type(e) is not int:
                    return None
            lists = lists or t is list
        elif not (a is None or t is int or t is str or t is bool):
            return None
    return tuple(tuple(a) if type(a) is list else a for a in args) if lists else args


@functools.lru_cache(maxsize=512, typed=True)
def _cached_conv_geometry(*args) -> ConvGeometry:
    return _conv_geometry(*args)


def _conv_geometry(d, x_shape, w_shape, stride, padding, dilation, groups, padding_mode) -> ConvGeometry:
    stride = int_tuple("stride", stride, d, 1)
    dilation = int_tuple("dilation", dilation, d, 1)
    groups = check_int("groups", groups, 1)
    padding_mode = check_padding_mode(padding_mode)
    c_in, in_size = x_shape[1], tuple(x_shape[2:])
    c_out, c_per_group, kernel = w_shape[0], w_shape[1], tuple(w_shape[2:])
    if c_out < 1 or c_per_group < 1 or min(kernel) < 1:
        raise ValueError(f"weight must have positive sizes, got shape {tuple(w_shape)}")
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide in_channels={c_in}")
    if c_out % groups:
        raise ValueError(f"groups={groups} must divide out_channels={c_out} (weight.shape[0])")
    if c_per_group * groups != c_in:
        raise ValueError(
            f"weight of shape {tuple(w_shape)} expects {c_per_group * groups} input channels "
            f"(weight.shape[1]={c_per_group} x groups={groups}), but the input has "
            f"{c_in} channels (shape {tuple(x_shape)})"
        )
    pad_lo, pad_hi = conv_padding(padding, d, kernel, stride, dilation)
    if padding_mode != "zeros":
        _check_mode_fits(padding_mode, in_size, pad_lo, pad_hi)
    out_size = []
    for n, k, s, lo, hi, dil in zip(in_size, kernel, stride, pad_lo, pad_hi, dilation, strict=True):
        span = dil * (k - 1) + 1
        if span > n + lo + hi:
            raise ValueError(
                f"kernel of size {kernel} with dilation {dilation} spans {span} cells, more than "
                f"the padded input size {tuple(a + b + c for a, b, c in zip(in_size, pad_lo, pad_hi, strict=True))} "
                f"(input spatial size {in_size}, padding {pad_lo}/{pad_hi})"
            )
        out_size.append(conv_output_size(n, k, s, lo, hi, dil))
    return ConvGeometry(
        stride, pad_lo, pad_hi, dilation, groups, in_size, kernel, tuple(out_size), padding_mode
    )


def conv_input_layout(d: int) -> str:
    names = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[d]
    return f"{names}, or unbatched without N"


def check_bias(bias, c_out: int) -> None:
    if bias is None:
        return
    check_array("bias", bias, 1, "(C_out,)")
    if tuple(bias.shape) != (c_out,):
        raise ValueError(
            f"bias must have shape ({c_out},) to match out_channels={c_out}, got {tuple(bias.shape)}"
        )


def check_grad_output(grad_output, expected: tuple[int, ...]) -> None:
    if tuple(grad_output.shape) != tuple(expected):
        raise ValueError(
            f"grad_output has shape {tuple(grad_output.shape)}, but the convolution's output "
            f"has shape {tuple(expected)}"
        )


def math_prod(shape) -> int:
    return math.prod(int(s) for s in shape)


# ---------------------------------------------------------------------------------------------
# layers (fastconv.nn)
# ---------------------------------------------------------------------------------------------


def check_conv_layer(
    layer: str,
    d: int,
    in_channels,
    out_channels,
    kernel_size,
    stride,
    padding,
    dilation,
    groups,
    padding_mode,
) -> tuple[int, ...]:
    """Validate a (transposed) convolution layer's constructor arguments; return its kernel."""
    c_in = check_int("in_channels", in_channels, 1)
    c_out = check_int("out_channels", out_channels, 1)
    groups = check_int("groups", groups, 1)
    kernel = int_tuple("kernel_size", kernel_size, d, 1)
    stride = int_tuple("stride", stride, d, 1)
    dilation = int_tuple("dilation", dilation, d, 1)
    conv_padding(padding, d, kernel, stride, dilation)
    check_padding_mode(padding_mode)
    for name, c in (("in_channels", c_in), ("out_channels", c_out)):
        if c % groups:
            raise ValueError(f"{layer}: groups={groups} must divide {name}={c}")
    return kernel


def check_probability(name: str, p) -> float:
    """A float in [0, 1]."""
    if isinstance(p, bool | np.bool_) or not isinstance(p, numbers.Real):
        raise TypeError(f"{name} must be a float in [0, 1], got {p!r} of type {type(p).__name__}")
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {p}")
    return float(p)


def check_features(layer: str, x, axis: int, expected: int) -> None:
    """``x.shape[axis] == expected``, the feature/channel count a layer was built for."""
    if tuple(x.shape)[axis] != expected:
        raise ValueError(
            f"{layer} expects {expected} features on axis {axis} of x, got x of shape {tuple(x.shape)}"
        )


def check_layer_grad(layer: str, grad_output, expected: tuple[int, ...]) -> None:
    """``grad_output`` of a layer's backward has the shape its forward returned."""
    check_array("grad_output", grad_output, len(expected))
    if tuple(grad_output.shape) != tuple(expected):
        raise ValueError(
            f"{layer}.backward: grad_output has shape {tuple(grad_output.shape)}, but forward "
            f"returned shape {tuple(expected)}"
        )


# ---------------------------------------------------------------------------------------------
# --- transposed convolution ---
# ---------------------------------------------------------------------------------------------


def conv_transpose_geometry(
    d: int, x_shape, w_shape, stride, padding, output_padding, groups, dilation
) -> ConvGeometry:
    """Validate a transposed convolution; return the geometry of the convolution it is the
    adjoint of: that convolution maps the transposed output back onto x with the same weight,
    so its ``in_size`` is the transposed output size and its ``out_size`` is x's spatial size.

    Shapes: x_shape (N, C_in, *in_size), w_shape (C_in, C_out/groups, *kernel).
    """
    stride = int_tuple("stride", stride, d, 1)
    padding = int_tuple("padding", padding, d, 0)
    output_padding = int_tuple("output_padding", output_padding, d, 0)
    dilation = int_tuple("dilation", dilation, d, 1)
    groups = check_int("groups", groups, 1)
    c_in, in_size, kernel = x_shape[1], tuple(x_shape[2:]), tuple(w_shape[2:])
    if w_shape[0] < 1 or w_shape[1] < 1 or min(kernel) < 1:
        raise ValueError(f"weight must have positive sizes, got shape {tuple(w_shape)}")
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide in_channels={c_in}")
    if w_shape[0] != c_in:
        raise ValueError(
            f"weight of shape {tuple(w_shape)} expects {w_shape[0]} input channels "
            f"(weight.shape[0]), but the input has {c_in} channels (shape {tuple(x_shape)})"
        )
    if min(in_size) < 1:
        raise ValueError(f"x must have non-empty spatial axes, got shape {tuple(x_shape)}")
    for op, s, dil in zip(output_padding, stride, dilation, strict=True):
        if op >= max(s, dil):
            raise ValueError(
                f"output_padding must be smaller than either stride or dilation on every axis, "
                f"got output_padding={output_padding}, stride={stride}, dilation={dilation}"
            )
    out_size = tuple(
        (n - 1) * s - 2 * p + dil * (k - 1) + op + 1
        for n, s, p, dil, k, op in zip(
            in_size, stride, padding, dilation, kernel, output_padding, strict=True
        )
    )
    if min(out_size) < 1:
        raise ValueError(
            f"transposed convolution output size {out_size} is empty or negative: "
            f"(size - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1 with "
            f"input size {in_size}, stride={stride}, padding={padding}, kernel={kernel}, "
            f"dilation={dilation}, output_padding={output_padding}"
        )
    return ConvGeometry(stride, padding, padding, dilation, groups, out_size, kernel, in_size)


# ---------------------------------------------------------------------------------------------
# --- pooling ---
# ---------------------------------------------------------------------------------------------


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}")
    return bool(value)


@dataclass(frozen=True)
class PoolGeometry:
    """Windows of a pooling op over ``d`` spatial axes: output cell ``o`` of an axis reads the
    input cells ``o*stride - pad + j*dilation`` (``j < kernel``) that lie inside the input; the
    padding is never read (max pooling's -inf cells never win, average pooling counts them
    in its divisor only)."""

    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]

    def lift3(self) -> PoolGeometry:
        k = 3 - len(self.in_size)
        return PoolGeometry(
            (1,) * k + self.in_size,
            (1,) * k + self.out_size,
            (1,) * k + self.kernel,
            (1,) * k + self.stride,
            (0,) * k + self.pad,
            (1,) * k + self.dilation,
        )

    def windows(self) -> list[tuple[list[int], ...]]:
        """Per axis ``(start, first, stop, padded_count)``: window ``o`` has taps
        ``start[o] + j*dilation`` (``j < kernel``), reads those in ``range(first[o], stop[o])``
        and spans ``padded_count[o]`` cells of the padded input, its right end clipped there
        (PyTorch's divisor with count_include_pad)."""
        axes = []
        for n, o_n, k, s, p, dil in zip(
            self.in_size,
            self.out_size,
            self.kernel,
            self.stride,
            self.pad,
            self.dilation,
            strict=True,
        ):
            starts = [o * s - p for o in range(o_n)]
            ends = [a + dil * (k - 1) + 1 for a in starts]
            first = [a + (-(a // dil)) * dil if a < 0 else a for a in starts]
            stop = [min(e, n) for e in ends]
            count = [min(e, n + p) - a for a, e in zip(starts, ends, strict=True)]
            axes.append((starts, first, stop, count))
        return axes


@dataclass(frozen=True)
class AdaptivePoolGeometry:
    """Windows of adaptive pooling: output cell ``o`` of an axis of size ``n`` reads input
    cells ``floor(o*n/out) .. ceil((o+1)*n/out) - 1``, as PyTorch."""

    in_size: tuple[int, ...]
    out_size: tuple[int, ...]

    @property
    def dilation(self) -> tuple[int, ...]:
        return (1,) * len(self.in_size)

    @property
    def kernel(self) -> tuple[int, ...]:
        """The largest window per axis."""
        return tuple(max(c) for *_, c in self.windows())

    def lift3(self) -> AdaptivePoolGeometry:
        k = 3 - len(self.in_size)
        return AdaptivePoolGeometry((1,) * k + self.in_size, (1,) * k + self.out_size)

    def windows(self) -> list[tuple[list[int], ...]]:
        """Per axis ``(start, first, stop, count)``, as ``PoolGeometry.windows`` (start = first)."""
        axes = []
        for n, o_n in zip(self.in_size, self.out_size, strict=True):
            first = [o * n // o_n for o in range(o_n)]
            stop = [-(-(o + 1) * n // o_n) for o in range(o_n)]
            axes.append((first, first, stop, [b - a for a, b in zip(first, stop, strict=True)]))
        return axes


def pool_output_size(size: int, kernel: int, stride: int, pad: int, dil: int, ceil_mode: bool) -> int:
    """PyTorch's rule: ``floor`` (or ``ceil``) of ``(size + 2*pad - dil*(kernel-1) - 1) / stride``
    plus one; in ceil_mode the last window must start inside the input or the left padding."""
    span = size + 2 * pad - dil * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _check_in_size(x_shape) -> tuple[int, ...]:
    in_size = tuple(x_shape[2:])
    if min(in_size) < 1:
        raise ValueError(f"x must have non-empty spatial axes, got shape {tuple(x_shape)}")
    return in_size


def pool_geometry(d: int, x_shape, kernel_size, stride, padding, dilation=1, ceil_mode=False) -> PoolGeometry:
    """Validate a (max, average or Lp) pooling's arguments; return its windows.

    Shapes: x_shape (N, C, *in_size); ``stride=None`` means ``kernel_size``.
    """
    kernel = int_tuple("kernel_size", kernel_size, d, 1)
    stride = kernel if stride is None else int_tuple("stride", stride, d, 1)
    pad = int_tuple("padding", padding, d, 0)
    dilation = int_tuple("dilation", dilation, d, 1)
    ceil_mode = check_bool("ceil_mode", ceil_mode)
    if any(2 * p > k for p, k in zip(pad, kernel, strict=True)):
        raise ValueError(f"padding={pad} must be at most half of kernel_size={kernel} on every axis")
    in_size = _check_in_size(x_shape)
    out_size = tuple(
        pool_output_size(n, k, s, p, dil, ceil_mode)
        for n, k, s, p, dil in zip(in_size, kernel, stride, pad, dilation, strict=True)
    )
    if min(out_size) < 1:
        raise ValueError(
            f"pooling output size {out_size} is empty: input spatial size {in_size} is too small "
            f"for kernel_size={kernel}, dilation={dilation}, padding={pad}, stride={stride}"
        )
    geom = PoolGeometry(in_size, out_size, kernel, stride, pad, dilation)
    for axis, (_, first, stop, _) in enumerate(geom.windows()):
        if any(a >= b for a, b in zip(first, stop, strict=True)):
            raise ValueError(
                f"with kernel_size={kernel}, dilation={dilation} and padding={pad}, a window on "
                f"spatial axis {axis} reads only padding (input size {in_size}); reduce the padding"
            )
    return geom


def adaptive_pool_geometry(d: int, x_shape, output_size) -> AdaptivePoolGeometry:
    """Validate an adaptive pooling; ``output_size`` is an int or a tuple whose ``None`` entries
    keep the input's size. Shapes: x_shape (N, C, *in_size)."""
    in_size = _check_in_size(x_shape)
    if isinstance(output_size, tuple | list) and len(output_size) == d:
        output_size = tuple(n if o is None else o for o, n in zip(output_size, in_size, strict=True))
    out_size = int_tuple("output_size", output_size, d, 1)
    return AdaptivePoolGeometry(in_size, out_size)


def check_divisor_override(divisor_override) -> int:
    """0 for None (divide by the window's count), else a nonzero int, as PyTorch."""
    if divisor_override is None:
        return 0
    value = check_int("divisor_override", divisor_override)
    if value == 0:
        raise ValueError("divisor_override must be nonzero (or None), got 0")
    return value


def check_norm_type(norm_type) -> float:
    """Lp pooling's p: a finite positive number."""
    if isinstance(norm_type, bool | np.bool_) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"norm_type must be a number, got {norm_type!r} of type {type(norm_type).__name__}")
    if not 0 < norm_type < math.inf:
        raise ValueError(
            f"norm_type must be positive and finite, got {norm_type}; for p = inf use max_pool on abs(x)"
        )
    return float(norm_type)


def check_pool_grad_output(grad_output, expected: tuple[int, ...], op: str) -> None:
    if tuple(grad_output.shape) != tuple(expected):
        raise ValueError(
            f"grad_output has shape {tuple(grad_output.shape)}, but the {op}'s output has "
            f"shape {tuple(expected)}"
        )


def check_indices(indices, shape: tuple[int, ...]) -> None:
    """Pooling indices: an int64 array of ``shape`` (None entries: any size). Their range is
    checked by the kernels that use them (``index_range_error``)."""
    if not is_array(indices):
        raise TypeError(f"indices must be a NumPy array (or a CUDA array), got {type(indices).__name__}")
    if np.dtype(indices.dtype) != np.int64:
        raise TypeError(
            f"indices must have dtype int64 (as returned with return_indices=True), got "
            f"{np.dtype(indices.dtype)}"
        )
    if indices.ndim != len(shape) or any(
        want is not None and want != got for want, got in zip(shape, indices.shape, strict=True)
    ):
        want = tuple("any" if s is None else s for s in shape)
        raise ValueError(f"indices must have shape {want}, got {tuple(indices.shape)}".replace("'", ""))


def index_range_error(indices: np.ndarray, plane_size: int, plane: str) -> ValueError:
    """The error for NumPy ``indices`` some of which lie outside [0, plane_size), the flat
    positions of a (n, c) plane (``plane`` names it), naming the first offender by kind: the
    lowest if negative, else the highest."""
    low = int(indices.min())
    bad = low if low < 0 else int(indices.max())
    return ValueError(f"indices must lie in [0, {plane_size}) (flat positions in {plane}), found {bad}")


def unpool_output_size(d: int, in_size, kernel, stride, pad, output_size) -> tuple[int, ...]:
    """``(in - 1)*stride - 2*pad + kernel`` per axis, or ``output_size`` (the last ``d``
    entries of a full shape allowed) when it lies strictly within ``stride`` of that, as
    PyTorch."""
    default = tuple((n - 1) * s - 2 * p + k for n, s, p, k in zip(in_size, stride, pad, kernel, strict=True))
    if output_size is None:
        size = default
    else:
        size = check_shape("output_size", output_size, (d, d + 2))[-d:]
        for n, s, want in zip(default, stride, size, strict=True):
            if not n - s < want < n + s:
                raise ValueError(
                    f"output_size={tuple(output_size)} must lie strictly between "
                    f"{tuple(a - b for a, b in zip(default, stride, strict=True))} and "
                    f"{tuple(a + b for a, b in zip(default, stride, strict=True))} per axis "
                    f"(the default is {default})"
                )
    if min(size) < 1:
        raise ValueError(
            f"max_unpool output size {size} is empty: (size - 1)*stride - 2*padding + kernel_size "
            f"with input size {tuple(in_size)}, kernel_size={kernel}, stride={stride}, padding={pad}"
        )
    return size


def check_float_dtype(dtype) -> np.dtype:
    """A layer's ``dtype`` argument: float32 or float64."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_host(layer: str, **arrays) -> None:
    """Layers that compute in NumPy take CPU arrays only (None skipped)."""
    from .backends import device_of

    for name, a in arrays.items():
        if a is not None and device_of(a) == "cuda":
            raise TypeError(
                f"{layer} computes in NumPy and takes CPU arrays only, got a CUDA array for "
                f"{name}; on CUDA arrays fastconv.nn runs every layer but Softmax, "
                "LocalResponseNorm and Concat: move this part with fastconv.nn.module.move(x, 'cpu')"
            )


def check_real(name: str, value, positive: bool = False) -> float:
    """A finite real number (``positive``: > 0), returned as a float."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} of type {type(value).__name__}")
    if not math.isfinite(value) or (positive and value <= 0):
        rule = "a positive finite number" if positive else "finite"
        raise ValueError(f"{name} must be {rule}, got {value}")
    return float(value)
