"""Parallel kernels called from several Python threads, and from forked children.

Numba's threading layers differ (DESIGN.md section 3): GNU OpenMP (``omp``, the default
where TBB is absent) takes concurrent callers but kills a child made by ``fork()`` after the
parent ran a parallel kernel; ``workqueue`` survives forks but aborts the whole process when
two threads call parallel kernels at once. So every CPU backend op runs under one process
lock (each kernel already uses every core, so little is lost), and a forked child of a
parent that used GNU OpenMP gets a clear error instead of being killed.
"""

from __future__ import annotations

import functools
import os
import threading

_lock = threading.RLock()
_parallel_pid: int | None = None  # the process that started Numba's thread pool


def _pool_is_fork_unsafe() -> bool:
    import numba

    if numba.threading_layer() != "omp":
        return False
    from numba.np.ufunc import omppool

    return getattr(omppool, "openmp_vendor", "GNU") == "GNU"


def guarded(op):
    """Wrap a backend op: serialise callers; refuse to run in an unsafe forked child."""

    @functools.wraps(op)
    def run(*args, **kwargs):
        global _parallel_pid
        if _parallel_pid is not None and _parallel_pid != os.getpid() and _pool_is_fork_unsafe():
            raise RuntimeError(
                "fastconv's CPU kernels cannot run in a process made by fork() after its parent "
                "ran them: GNU OpenMP's thread pool does not survive fork. Start worker "
                "processes with multiprocessing.get_context('spawn') (or 'forkserver'), or run "
                "fastconv with NUMBA_THREADING_LAYER=tbb (pip install tbb)"
            )
        with _lock:
            result = op(*args, **kwargs)
            if _parallel_pid is None:
                _parallel_pid = os.getpid()
            return result

    return run
