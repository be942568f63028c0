"""Start-up costs, each in a fresh interpreter (asv ``timeraw_``): ``import fastconv``, and
the first ``conv2d`` call with a cold compile cache (an empty cache folder: every kernel it
needs is compiled) and with a warm one (filled by an earlier process: kernels are loaded)."""

import os
import shutil
import subprocess
import sys
import tempfile

_ARRAYS = """
import numpy as np
import fastconv as fc
x = np.ones((2, 16, 12, 12), np.float32)
w = np.ones((16, 16, 3, 3), np.float32)
"""
_FIRST_CALL = "assert float(fc.conv2d(x, w, padding=1)[0, 0, 5, 5]) == 144.0"


class Import:
    def timeraw_import(self):
        return "import fastconv"


class FirstCall:
    params = [["cold", "warm"]]
    param_names = ["cache"]
    timeout = 300

    def setup(self, cache):
        self.folder = tempfile.mkdtemp(prefix="fastconv-bench-cache-")
        if cache == "warm":  # an earlier process compiles into the cache (and checks the result)
            env = {**os.environ, "FASTCONV_CACHE_DIR": self.folder}
            subprocess.run([sys.executable, "-c", _ARRAYS + _FIRST_CALL], env=env, check=True)

    def teardown(self, cache):
        shutil.rmtree(self.folder, ignore_errors=True)

    def timeraw_first_conv2d(self, cache):
        folder = f"tempfile.mkdtemp(dir={self.folder!r})" if cache == "cold" else repr(self.folder)
        setup = f"import os, tempfile\nos.environ['FASTCONV_CACHE_DIR'] = {folder}\n" + _ARRAYS
        return _FIRST_CALL, setup
