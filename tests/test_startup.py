"""Start-up: the first call leaves Numba's SciPy BLAS check for later (``startup.py``), and
jitted code that needs BLAS still gets it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import json, sys
import numpy as np
import fastconv as fc
y = fc.conv2d(np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32))
linalg_after_conv = "scipy.linalg" in sys.modules
from numba import njit
from numba.np import arraymath

@njit
def convolve(a, b):  # floats: the one use of arraymath's BLAS flag
    return np.convolve(a, b)

a, b = np.arange(5.0), np.array([1.0, -2.0, 0.5])
convolve_ok = bool(np.allclose(convolve(a, b), np.convolve(a, b)))
linalg_after_convolve = "scipy.linalg" in sys.modules
try:
    import scipy.linalg.cython_blas
    have_blas = True
except ImportError:
    have_blas = False
dot_ok = None
if have_blas:
    @njit
    def dot(a, b):
        return np.dot(a, b)

    dot_ok = bool(dot(a, b[[0, 1, 2, 0, 1]]) == a @ b[[0, 1, 2, 0, 1]])
print(json.dumps({"y": y.tolist(), "linalg_after_conv": linalg_after_conv,
                  "linalg_after_convolve": linalg_after_convolve, "convolve_ok": convolve_ok,
                  "flag": bool(arraymath._HAVE_BLAS), "have_blas": have_blas, "dot_ok": dot_ok}))
"""


@pytest.fixture(scope="module")
def fresh_process():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_first_call_does_not_import_scipy_linalg(fresh_process):
    pytest.importorskip("scipy.linalg")  # without SciPy nothing could import it anyway
    assert fresh_process["y"] == [[[[9.0, 9.0], [9.0, 9.0]]]]
    assert fresh_process["linalg_after_conv"] is False


def test_jitted_code_still_finds_blas(fresh_process):
    # the deferred check runs when np.convolve compiles, and says what Numba's own would
    assert fresh_process["convolve_ok"] is True
    assert fresh_process["flag"] is fresh_process["have_blas"]
    assert fresh_process["linalg_after_convolve"] is fresh_process["have_blas"]
    if fresh_process["have_blas"]:
        assert fresh_process["dot_ok"] is True
