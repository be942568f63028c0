"""Weight initialisation with PyTorch's formulas, seeded.

Every function takes ``rng``: None (fresh entropy), an int seed or a ``np.random.Generator``,
draws in float64 and writes into ``param.data`` in its dtype. PyTorch's default for
convolution and linear layers is ``kaiming_uniform_(w, a=sqrt(5))``, which works out to
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, with the bias drawn from the same bound.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backends, shapes
from .module import Parameter, move

_GAINS = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0)}


def generator(rng: int | np.random.Generator | None) -> np.random.Generator:
    """``rng`` as a Generator: an int seeds a new one, a Generator is used as it is."""
    if rng is None or isinstance(rng, np.random.Generator):
        return np.random.default_rng(rng)
    return np.random.default_rng(shapes.check_int("rng", rng, 0))


def fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's fans: ``shape[1] * receptive field`` and ``shape[0] * receptive field``.

    Shapes:
        shape: (out, in) for linear, (C_out, C_in/groups, *kernel) for convolution,
            (C_in, C_out/groups, *kernel) for transposed convolution
    """
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need at least 2 dimensions, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _gain(nonlinearity: str, a: float) -> float:
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    if nonlinearity not in _GAINS:
        raise ValueError(f"nonlinearity must be one of {(*_GAINS, 'leaky_relu')}, got {nonlinearity!r}")
    return _GAINS[nonlinearity]


def _fan(shape, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(shape)
    return fan_in if mode == "fan_in" else fan_out


def _write(param: Parameter, values: np.ndarray) -> Parameter:
    param.data = move(values.astype(param.dtype), backends.device_of(param.data))
    return param


def uniform_(param: Parameter, low: float = 0.0, high: float = 1.0, rng=None) -> Parameter:
    """Fill with ``U(low, high)``."""
    return _write(param, generator(rng).uniform(low, high, param.shape))


def normal_(param: Parameter, mean: float = 0.0, std: float = 1.0, rng=None) -> Parameter:
    """Fill with ``N(mean, std**2)``."""
    return _write(param, generator(rng).normal(mean, std, param.shape))


def constant_(param: Parameter, value: float) -> Parameter:
    """Fill with ``value``."""
    return _write(param, np.full(param.shape, value, dtype=np.float64))


def zeros_(param: Parameter) -> Parameter:
    return constant_(param, 0.0)


def ones_(param: Parameter) -> Parameter:
    return constant_(param, 1.0)


def kaiming_uniform_(
    param: Parameter, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", rng=None
) -> Parameter:
    """He initialisation, uniform: ``U(-b, b)`` with ``b = gain * sqrt(3 / fan)``."""
    bound = _gain(nonlinearity, a) * math.sqrt(3.0 / _fan(param.shape, mode))
    return uniform_(param, -bound, bound, rng)


def kaiming_normal_(
    param: Parameter, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", rng=None
) -> Parameter:
    """He initialisation, normal: ``N(0, (gain / sqrt(fan))**2)``."""
    return normal_(param, 0.0, _gain(nonlinearity, a) / math.sqrt(_fan(param.shape, mode)), rng)


def xavier_uniform_(param: Parameter, gain: float = 1.0, rng=None) -> Parameter:
    """Glorot initialisation: ``U(-b, b)`` with ``b = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = fan_in_and_fan_out(param.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(param, -bound, bound, rng)


def default_init(weight: Parameter, bias: Parameter | None, rng: np.random.Generator) -> None:
    """PyTorch's reset_parameters of Linear/Conv/ConvTranspose: weight then bias from ``rng``."""
    kaiming_uniform_(weight, a=math.sqrt(5.0), rng=rng)
    if bias is not None:
        fan_in, _ = fan_in_and_fan_out(weight.shape)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound, rng)
