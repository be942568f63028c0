"""Numba's on-disk cache for the CPU kernels, stamped with all of their sources.

Numba stamps a cached function with a hash of its own source file only. A kernel inlines
helpers from other files (the intrinsics of ``simd``, ``chunks.bounds``,
``blocked.store_row``), so after a change to one of those alone it would load stale machine
code from the cache (a mutation of ``simd.py`` went unseen by the tests that way). Every
kernel of this package is therefore stamped with one hash of all the package's sources and
of ``config`` (whose fast-math flags every kernel compiles with): any change to them
compiles afresh, and unchanged sources (a reinstall of the same version) keep the cache.
The generated kernels' file names carry the same hash (``codegen``).

Importing this module installs the locator; the package imports it before any kernel
module, since Numba picks a function's cache locator when the function is decorated.
"""

from __future__ import annotations

import functools
import hashlib
import os

from numba.core import caching

from ... import config

FOLDER = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def sources_hash(folder: str = FOLDER) -> str:
    """sha256 of the ``.py`` files of ``folder`` (names and contents, sorted by name) and of
    ``config``; read once per process."""
    h = hashlib.sha256()
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".py"))
    for path in (*paths, config.__file__):
        with open(path, "rb") as f:
            h.update(os.path.basename(path).encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()


# public names from Numba 0.61 on, private before
_Base = getattr(caching, "UserProvidedCacheLocator", None) or caching._UserProvidedCacheLocator
_Impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl


class PackageLocator(_Base):
    """Numba's locator of ``NUMBA_CACHE_DIR`` for the functions defined in this package's
    files, stamped with ``sources_hash`` instead of their own file's."""

    def get_source_stamp(self):
        return sources_hash()

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.dirname(os.path.abspath(py_file)) != FOLDER:
            return None
        return super().from_function(py_func, py_file)


def install() -> None:
    """Put ``PackageLocator`` first among Numba's cache locators (once)."""
    classes = _Impl._locator_classes
    if PackageLocator not in classes:
        classes.insert(0, PackageLocator)


install()
