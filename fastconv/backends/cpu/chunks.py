"""Chunks of consecutive jobs, for parallel kernels whose jobs run in a serial function.

Numba's passes over a parallel loop (copy propagation, deep copies of its IR, dead-code
removal) take time that grows quickly with the loop's body. A kernel whose parallel loop
body is a single call, a serial function running one chunk of consecutive jobs, compiles
in far less time where that body is large (the (2, 14) forward: 7.3 -> 4.5 s) and runs as
fast: a call per chunk, not per job, so the argument passing and reference counting of the
call do not add up on many small jobs (one call per job ran LeNet's 6 -> 16 forward 1.02-1.17x
as long). Small kernels gain nothing: the layout conversions and crops compiled in the same
time or longer (LLVM then optimises the serial function on its own and again inlined).
Each job writes only its own outputs, so any chunking gives the same bits. The count comes
from Python (``most``): a cached kernel cannot ask Numba for the thread count. The serial
function must be a global of the kernel's module, not a closure variable: Numba keys a
closure's cache entry on its pickled cell contents, which for a dispatcher differ from
process to process (max pooling's closure kernels, split this way, recompiled in every
process: 1.9 s on the first call, ``tests/test_compile_cache.py``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

PER_THREAD = 8
"""Chunks per thread: enough for the threads to share out unequal chunks."""


def most() -> int:
    """The most chunks a parallel loop splits its jobs into, for the threads Numba runs now."""
    return PER_THREAD * numba.get_num_threads()


@njit(inline="always")
def bounds(k, jobs, chunks):
    """Jobs first <= job < last of chunk k of ``chunks`` (of ``jobs`` in all)."""
    c = np.int64(k)  # prange's index is unsigned inside the parallel body
    return c * jobs // chunks, (c + 1) * jobs // chunks


@njit(inline="always")
def jobs_before(job, grid_d, grid_h, d, h):
    """The jobs of a part that come before job ``job`` of a grid of (blocks, od < grid_d,
    oh < grid_h) jobs, both in that order, the part having only od < d <= grid_d and
    oh < h <= grid_h: the grid's chunk [first, last) holds the part's jobs
    [jobs_before(first), jobs_before(last))."""
    oh = job % grid_h
    t = job // grid_h
    od = t % grid_d
    t //= grid_d  # the blocks index
    if od < d:
        return (t * d + od) * h + min(oh, h)
    return (t + 1) * d * h
