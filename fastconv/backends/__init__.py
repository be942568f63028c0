"""Backend registry: ``{"cpu": module, "cuda": module}``, chosen by where the arrays live.

Only this package knows about devices. A backend module exposes the same op names with
destination passing (``out`` first, inputs next, geometry last); ``functional`` allocates
through ``backend.empty``/``backend.zeros`` and never touches array data itself. The CUDA
backend is imported lazily, on the first CUDA array, so importing fastconv never needs (or
warns about) a GPU.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

_MODULES = {"cpu": "fastconv.backends.cpu", "cuda": "fastconv.backends.cuda"}


def _is_simulated_device_array(a) -> bool:
    # The CUDA simulator's device arrays carry no __cuda_array_interface__ (DESIGN.md 4).
    return type(a).__name__ == "FakeCUDAArray" and "simulator" in type(a).__module__


def device_of(a) -> str:
    """``"cuda"`` for CUDA arrays (``__cuda_array_interface__`` or simulated), else ``"cpu"``."""
    if isinstance(a, np.ndarray):
        return "cpu"
    if hasattr(a, "__cuda_array_interface__") or _is_simulated_device_array(a):
        return "cuda"
    return "cpu"


_loaded: dict[str, ModuleType] = {}


def get(device: str) -> ModuleType:
    """The backend module for ``device`` (``"cpu"`` or ``"cuda"``), imported on first use."""
    module = _loaded.get(device)
    if module is None:
        if device not in _MODULES:
            raise ValueError(f"device must be one of {tuple(_MODULES)}, got {device!r}")
        module = _loaded[device] = importlib.import_module(_MODULES[device])
    return module


def cuda_available() -> bool:
    """True when numba-cuda is installed and sees a GPU (or ``NUMBA_ENABLE_CUDASIM=1``).

    The first call imports ``numba.cuda``; importing fastconv never does.
    """
    try:
        backend = get("cuda")
    except ImportError:
        return False
    return backend.is_available()


def backend_for(**arrays) -> ModuleType:
    """The backend of the given arrays (None skipped); all must live on one device."""
    if all(a is None or type(a) is np.ndarray for a in arrays.values()):  # the common case, fast
        return get("cpu")
    devices = {name: device_of(a) for name, a in arrays.items() if a is not None}
    found = set(devices.values())
    if len(found) > 1:
        where = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise TypeError(f"arrays live on different devices ({where}); move them to one device first")
    return get(found.pop() if found else "cpu")
