"""Numba's start-up made cheaper: its SciPy BLAS check deferred to when jitted code needs it.

The first kernel a process runs or loads from the cache makes Numba import
``numba.np.arraymath``, whose import checks that SciPy's BLAS is there
(``import scipy.linalg.cython_blas``), for ``np.dot`` and its kin in jitted code. That
imports all of ``scipy.linalg``: about 0.17-0.26 s of a fresh process's first call on the
2-core AMD EPYC host, where a cached fastconv kernel loads in about 6 ms. No fastconv kernel
calls BLAS.

``defer_blas_check`` imports ``numba.np.arraymath`` with that check skipped and leaves in its
place a flag that runs the same check the first time it is read. Its one reader is
``_get_inner_prod`` (behind ``np.convolve``/``np.correlate`` of floats), at compile time;
``np.dot`` and the rest of ``numba.np.linalg`` check for themselves when they compile, as
they always do. Jitted code behaves as before; only the moment SciPy is imported moves.
Where Numba is laid out otherwise, or ``numba.np.arraymath`` was imported already, nothing
is done.
"""

from __future__ import annotations

import sys


class _LazyCheck:
    """Truthy when ``check()`` is; ``check`` runs once, when the flag is first read."""

    def __init__(self, check):
        self._check, self._result = check, None

    def __bool__(self) -> bool:
        if self._result is None:
            self._result = bool(self._check())
        return self._result


def defer_blas_check() -> bool:
    """Import ``numba.np.arraymath`` without its BLAS check (see the module docstring);
    True when deferred, False when left to Numba."""
    if "numba.np.arraymath" in sys.modules:
        return False
    from numba.np import linalg

    real = getattr(linalg, "ensure_blas", None)
    if real is None:
        return False
    linalg.ensure_blas = lambda: None  # arraymath's import-time check passes, importing nothing
    try:
        from numba.np import arraymath
    finally:
        linalg.ensure_blas = real

    def blas_importable() -> bool:  # arraymath's own check (``_check_blas``)
        try:
            real()
        except ImportError:
            return False
        return True

    arraymath.ensure_blas = real  # the name arraymath bound during the import above
    arraymath._HAVE_BLAS = _LazyCheck(blas_importable)
    return True
