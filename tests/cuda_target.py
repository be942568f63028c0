"""Where the CUDA tests run: the real GPU when numba-cuda sees one, else the CUDA simulator.

Import this module in a CUDA test file and reach the CUDA backend through it
(``cuda_target.backend``, ``.device``, ``.gemm``), never directly, so that it runs before
anything imports ``numba.cuda``.
``NUMBA_ENABLE_CUDASIM`` is read when ``numba.cuda`` is first imported (through
``numba.core.config``, which caches the environment, hence ``reload_config``); fastconv
never imports ``numba.cuda`` on its own, so at collection time nothing has yet. A GPU is
probed in a subprocess, because importing ``numba.cuda`` here would fix the target for the
whole pytest process. Without a GPU the variable stays set for the rest of the run (numba
decides per ``cuda.jit`` call whether to simulate, so it cannot be unset again); the CPU
tests never import ``numba.cuda`` and are unaffected. An explicit ``NUMBA_ENABLE_CUDASIM``
in the environment is respected.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

import pytest

_PROBE = "from numba import cuda; raise SystemExit(0 if cuda.is_available() else 1)"


def _choose_target() -> None:
    if "numba.cuda" in sys.modules or "NUMBA_ENABLE_CUDASIM" in os.environ:
        return
    gpu = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True).returncode == 0
    if not gpu:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        from numba.core import config

        config.reload_config()


_choose_target()

from numba import cuda  # noqa: E402

if not cuda.is_available():
    pytest.skip(
        "numba.cuda was imported for a real GPU before the CUDA tests could select the "
        "simulator, and there is no GPU; run them alone with NUMBA_ENABLE_CUDASIM=1",
        allow_module_level=True,
    )

SIMULATED = bool(int(os.environ.get("NUMBA_ENABLE_CUDASIM", "0") or 0))

import fastconv.backends.cuda as backend  # noqa: E402, F401  (imported after the target is chosen)
from fastconv.backends.cuda import device, gemm  # noqa: E402, F401


@contextmanager
def expect_launch():
    """Fail unless the block launched at least one CUDA kernel (so a simulated array cannot
    quietly take the CPU path and compare the CPU with itself)."""
    before = device.launches
    yield
    assert device.launches > before, "no CUDA kernel was launched: the call ran on the CPU"


def to_device(a):
    return cuda.to_device(a)


def to_host(a):
    assert type(a).__module__.startswith("numba.cuda"), f"expected a CUDA array, got {type(a)}"
    return a.copy_to_host()
