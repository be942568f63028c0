"""Every CUDA kernel compiles for a real GPU and computes float32 in float32.

The simulator checks no types (DESIGN.md 4), so ``cuda_typecheck.py`` types and lowers each
kernel fastconv launches, with the argument types it is launched with, for compute
capability 9.0; no GPU or CUDA toolkit needed. It runs in a subprocess because it needs
``numba.cuda`` for real hardware while the other CUDA tests may have selected the simulator.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason="needs numba-cuda")
def test_every_kernel_types_for_a_gpu_without_float64():
    script = Path(__file__).with_name("cuda_typecheck.py")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join([str(script.parents[1]), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-W", "error", str(script)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "kernel specialisations typed and lowered" in run.stdout
