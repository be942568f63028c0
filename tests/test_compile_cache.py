"""Kernels compile once: a second process loads them from the on-disk cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json, numpy as np, fastconv as fc
from fastconv.backends.cpu import blocked, conv, conv_dense, conv_flat, pool, simd
x = np.ones((1, 2, 6, 6), np.float64); w = np.ones((3, 2, 3, 3), np.float64)
y64 = fc.conv2d(x, w, padding=1)  # direct kernels
y32 = fc.conv2d(x.astype(np.float32), w.astype(np.float32), padding=1)  # generated, pixel-vectorised
w32 = np.ones((20, 2, 3, 3), np.float32)
assert np.array_equal(fc.conv2d(x.astype(np.float32), w32, padding=1)[:, :3], y32)  # generated, blocked
flat = conv_flat._forward_kernel(*conv_flat._out_block(3, conv_flat._FORWARD_V))  # this ISA's block
dense = conv_dense._forward_kernel(*conv_dense._plan(20, 6, simd.ISA)[:2])
fc.max_pool2d(x.astype(np.float32), 3, 2, 1), fc.max_pool2d(x, 3, 2, 1, return_indices=True)  # closures
kernels = [conv._conv_forward_kernel, flat, dense, blocked._to_blocked_kernel, *pool._max_pool_kernels.values()]
print(json.dumps({"hits": [sum(k.stats.cache_hits.values()) for k in kernels],
                  "misses": [sum(k.stats.cache_misses.values()) for k in kernels],
                  "sum": [float(y64.sum()), float(y32.sum())], "cache_dir": fc.config.CACHE_DIR}))
"""


def _run(env):
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_kernels_from_the_cache(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["FASTCONV_CACHE_DIR"] = str(tmp_path / "cache")
    first = _run(env)
    assert first["cache_dir"] == str(tmp_path / "cache")
    assert min(first["misses"]) >= 1 and max(first["hits"]) == 0
    assert any(f.endswith(".nbi") for _, _, files in os.walk(tmp_path / "cache") for f in files)
    second = _run(env)
    assert min(second["hits"]) >= 1 and max(second["misses"]) == 0
    # each of 6 cells of an axis is covered by 3 windows, the two edge cells by 2: 16 per axis
    assert second["sum"] == first["sum"] == [3 * 2 * 16**2] * 2


EDITED_HELPER = """
import json, numpy as np
from fastconv.backends.cpu import blocked, kernel_cache
blocked.weight_to_blocked(np.ones((20, 3, 1, 3, 3), np.float32))  # (O, C, KD, KH, KW)
kernel = blocked._weight_to_blocked_kernel
print(json.dumps({"hits": sum(kernel.stats.cache_hits.values()), "misses": sum(kernel.stats.cache_misses.values()),
                  "locator": type(kernel._cache._impl.locator).__name__, "stamp": kernel_cache.sources_hash()}))
"""


def test_a_change_to_another_kernel_file_recompiles(tmp_path):
    """Numba stamps a cached function with its own file; a kernel of ``blocked`` inlines the
    intrinsics of ``simd``, so an edit of ``simd.py`` alone must still recompile it, not load
    stale code (``kernel_cache``). Run on a copy of the package."""
    import shutil

    import fastconv

    shutil.copytree(os.path.dirname(fastconv.__file__), tmp_path / "pkg" / "fastconv")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["FASTCONV_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = str(tmp_path / "pkg")

    def run():
        out = subprocess.run(
            [sys.executable, "-c", EDITED_HELPER],
            env=env,
            cwd=tmp_path,  # not a folder holding another fastconv (``-c`` puts the cwd first on sys.path)
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert first["locator"] == "PackageLocator"
    assert (first["misses"], first["hits"]) == (1, 0) and (second["misses"], second["hits"]) == (0, 1)
    with open(tmp_path / "pkg" / "fastconv" / "backends" / "cpu" / "simd.py", "a") as f:
        f.write("\n# an edit\n")
    third = run()
    assert third["stamp"] != second["stamp"]
    assert (third["misses"], third["hits"]) == (1, 0)
