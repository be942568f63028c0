"""Parallel kernels called from several Python threads, and from forked children.

Numba's threading layers differ (DESIGN.md section 3): GNU OpenMP (``omp``, the default
where TBB is absent) takes concurrent callers but kills a child made by ``fork()`` after the
parent ran a parallel kernel; ``workqueue`` survives forks but aborts the whole process when
two threads call parallel kernels at once. So every CPU backend op runs under one process
lock (each kernel already uses every core, so little is lost), a forked child gets a lock
of its own (the parent's may be held by another thread at the fork), and a forked child of a
parent that used GNU OpenMP gets a clear error instead of being killed.
"""

from __future__ import annotations

import functools
import os
import threading

_lock = threading.RLock()
_pool_started = False  # this process (or the parent it was forked from) ran a parallel kernel
_forked_after_start = False  # made by fork() after the pool started


def _after_fork_in_child() -> None:
    # A fork copies the pool's state but none of its threads, and the lock as it was, perhaps
    # held by a thread the child does not have: the child gets a fresh lock and, if the pool
    # had started, is marked (once, here, instead of comparing os.getpid() on every op).
    global _lock, _forked_after_start
    _lock = threading.RLock()
    _forked_after_start = _forked_after_start or _pool_started


os.register_at_fork(after_in_child=_after_fork_in_child)


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
        global _pool_started
        if _forked_after_start and _pool_is_fork_unsafe():
            raise RuntimeError(
                "fastconv's CPU kernels cannot run in a process made by fork() after its parent "
                "ran them: GNU OpenMP's thread pool does not survive fork. Start worker "
                "processes with multiprocessing.get_context('spawn') (or 'forkserver'), or run "
                "fastconv with NUMBA_THREADING_LAYER=tbb (pip install tbb)"
            )
        with _lock:
            result = op(*args, **kwargs)
            _pool_started = True
            return result

    return run
