"""The GPU itself: availability, allocation, host/device copies and kernel launches.

Every kernel launch goes through ``launch``, which counts launches (tests assert that a
CUDA kernel really ran, so simulated arrays cannot silently take the CPU path) and skips
empty grids (CUDA refuses a zero-sized launch). Threads per block come from
``config.CUDA_THREADS``, read at each launch so tests can shrink it.
"""

from __future__ import annotations

import functools
from collections import deque

import numpy as np
from numba import cuda, int64

from ... import config
from .. import device_of

NO_GPU = (
    "CUDA requested but no GPU is available (numba.cuda.is_available() is False); "
    "install fastconv[cuda] and an NVIDIA driver, or use device='cpu'"
)

launches = 0
"""Number of kernels launched so far (tests read it)."""
recent: deque = deque(maxlen=32)
"""(kernel name, grid, threads per block) of the latest launches (tests read it)."""


@functools.cache
def is_available() -> bool:
    """True when numba-cuda sees a GPU (or runs under ``NUMBA_ENABLE_CUDASIM=1``); asked once."""
    return bool(cuda.is_available())


def require() -> None:
    if not is_available():
        raise RuntimeError(NO_GPU)


def threads() -> int:
    """Threads per block of the 1-D kernels: ``config.CUDA_THREADS`` (at least 1)."""
    return max(1, int(config.CUDA_THREADS))


def blocks_for(n: int, per_block: int) -> int:
    return (int(n) + per_block - 1) // per_block


@cuda.jit(device=True)
def grid_stride():
    # (first index, step) of this thread's grid-stride loop, int64 so sizes past 2**31 work
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    return start, int64(cuda.gridDim.x) * cuda.blockDim.x


def launch(kernel, grid, block, *args) -> None:
    """``kernel[grid, block](*args)``, counted; nothing runs for an empty grid."""
    global launches
    grid = tuple(int(g) for g in grid) if isinstance(grid, tuple) else (int(grid),)
    if min(grid) <= 0:
        return
    launches += 1
    recent.append((kernel.py_func.__name__, grid, block))
    kernel[grid, block](*args)


_MAX_BLOCKS = 1 << 20  # enough to fill any GPU; larger arrays loop (grid stride)


def launch_1d(kernel, n: int, *args) -> None:
    """One thread per element of ``range(n)`` (kernels loop with ``grid_stride``)."""
    t = threads()
    launch(kernel, min(blocks_for(n, t), _MAX_BLOCKS), t, *args)


def synchronize() -> None:
    """Wait for every launched kernel to finish (for timing)."""
    cuda.synchronize()


def empty(shape, dtype):
    require()
    return cuda.device_array(tuple(int(s) for s in shape), dtype=np.dtype(dtype))


def zeros(shape, dtype):
    from .elementwise import fill

    out = empty(shape, dtype)
    fill(out, 0)
    return out


def to_device(a):
    """A NumPy array (or anything ``np.asarray`` takes) copied to the GPU; CUDA arrays are
    returned as they are."""
    require()
    if device_of(a) == "cuda":
        return a
    return cuda.to_device(np.asarray(a, order="C"))  # ascontiguousarray would make 0-d 1-d


def to_host(a) -> np.ndarray:
    """A CUDA array copied to a NumPy array; NumPy arrays are returned as they are."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    return cuda.as_cuda_array(a).copy_to_host()
