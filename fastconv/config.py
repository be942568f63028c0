"""Tunables, read once from the environment when fastconv is imported.

``FASTCONV_CACHE_DIR`` (or ``NUMBA_CACHE_DIR``)  where compiled kernels are cached; default
    ``$XDG_CACHE_HOME/fastconv/numba`` (``~/.cache/fastconv/numba``).
``FASTCONV_CONV_ALGORITHM``  ``auto`` (default), ``direct``, ``blocked`` or ``flat``: which CPU
    convolution kernels run.
``FASTCONV_CUDA_THREADS``  threads per block of the CUDA kernels (tests shrink it).
"""

from __future__ import annotations

import os
import sys

FASTMATH = {"contract", "reassoc", "nsz", "arcp"}
"""LLVM fast-math flags of every CPU kernel: FMA contraction and reassociation (vectorised
reductions), but no ``nnan``/``ninf``, so NaN and inf propagate as IEEE says."""


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastconv", "numba")


CACHE_DIR = os.environ.get("FASTCONV_CACHE_DIR") or os.environ.get("NUMBA_CACHE_DIR") or _default_cache_dir()

CONV_ALGORITHM = os.environ.get("FASTCONV_CONV_ALGORITHM", "auto")
"""``auto`` picks the fastest applicable CPU convolution kernel per shape; ``direct`` forces
the plain loops; ``blocked`` keeps float32 on the channel-blocked SIMD kernels; ``flat`` runs
every stride-1 dense float32 pass on the pixel-vectorised kernels (tests force each)."""

CUDA_THREADS = int(os.environ.get("FASTCONV_CUDA_THREADS", "128"))


def install_cache_dir() -> None:
    """Point Numba's on-disk cache at ``CACHE_DIR`` (created if missing).

    Numba reads ``NUMBA_CACHE_DIR`` when it is imported; if it already was, its live config
    is updated instead. Called once from ``fastconv/__init__.py`` before any kernel module.
    """
    os.makedirs(CACHE_DIR, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = CACHE_DIR
    if "numba" in sys.modules:
        from numba.core import config as numba_config

        numba_config.CACHE_DIR = CACHE_DIR
