"""Type and lower every CUDA kernel fastconv launches for a real GPU, without a GPU.

The simulator runs kernels as Python and checks no types, so a kernel can pass every
simulated test and still fail to compile for a GPU, or quietly compute in float64. This
script drives the functional API through the CUDA backend with NumPy arrays standing in
for device arrays (allocation and copies redirected to NumPy, launches recorded instead of
run), then types and lowers each recorded kernel with the argument types it was launched
with, for compute capability 9.0 (numba's front end and LLVM only: no driver, no NVVM).
It fails if a kernel does not compile, or if a float32 kernel or one of its device
functions holds a float64 value.

Run it as a script in a process where numba.cuda targets real hardware
(``NUMBA_ENABLE_CUDASIM`` unset): ``python tests/cuda_typecheck.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from types import SimpleNamespace

import numba.cuda.dispatcher as dispatcher
import numpy as np
from numba import cuda, typeof
from numba.cuda.compiler import compile_cuda

import fastconv as fc
import fastconv.backends.cuda as cuda_backend
import fastconv.functional
from fastconv import config
from fastconv.backends.cuda import conv, device, elementwise, gemm, norm, optim, padding, pool

CC = (9, 0)
launched: dict = {}


def _record(kernel, grid, block, *args):
    launched.setdefault((kernel, tuple(typeof(a) for a in args)), None)


def _fake_gpu() -> None:
    cuda.device_array = lambda shape, dtype=np.float64, **_: np.zeros(shape, dtype)
    cuda.to_device = lambda a, **_: np.array(a)
    device.require = lambda: None
    # device functions ask the current device for its compute capability when typed
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=CC)
    for mod in (device, gemm, conv, elementwise, padding, pool):
        if hasattr(mod, "launch"):
            mod.launch = _record
    for info in pkgutil.iter_modules(fastconv.functional.__path__):
        mod = importlib.import_module(f"fastconv.functional.{info.name}")
        if hasattr(mod, "backend_for"):
            mod.backend_for = lambda **_: cuda_backend


def _drive(dtype, everything: bool = True) -> None:
    rng = np.random.default_rng(0)

    def r(*shape):
        return rng.standard_normal(shape).astype(dtype)

    x, w, b = r(2, 4, 6, 7), r(6, 2, 3, 3), r(6)
    if not everything:  # the same code in another dtype: a sample is enough
        fc.conv2d_backward_input(fc.conv2d(x, w, b, padding=1, groups=2), w, x.shape, padding=1, groups=2)
        fc.avg_pool2d(x, 2)
        return
    for mode in ("zeros", "reflect"):
        kw = dict(padding=1, groups=2, padding_mode=mode)
        y = fc.conv2d(x, w, b, **kw)
        fc.conv2d(x, w, None, **kw)
        fc.conv2d_backward_input(y, w, x.shape, **kw)
        fc.conv2d_backward_weight(y, x, w.shape, **kw)
    fc.conv2d_backward_bias(y)
    config.CUDA_THREADS = 4  # a small tile: backward weight splits K
    fc.conv3d_backward_weight(r(2, 3, 4, 5, 6), r(2, 2, 4, 5, 6), (3, 2, 1, 1, 1))
    config.CUDA_THREADS = 128
    fc.conv_transpose2d(x, r(4, 3, 2, 2), r(3), stride=2)
    y, i = fc.max_pool2d(x, 2, return_indices=True)
    fc.max_pool2d_backward(y, i, x.shape)
    fc.max_unpool2d_backward(fc.max_unpool2d(y, i, 2), i)
    fc.avg_pool2d_backward(fc.avg_pool2d(x, 3, 2, 1), x.shape, 3, 2, 1)
    fc.adaptive_avg_pool2d(x, (3, 4))
    fc.lp_pool2d_backward(fc.lp_pool2d(x, 2.0, 2), x, 2.0, 2)
    for op in (elementwise.relu_forward, elementwise.add_):
        op(x, x)
    elementwise.relu_backward(x, x, x)
    elementwise.add_bias(y, r(4))
    elementwise.fill(x, 0)
    for name in ("relu", "sigmoid", "tanh"):
        getattr(elementwise, f"{name}_forward")(x, x)
        getattr(elementwise, f"{name}_backward")(x, x, x)
    elementwise.mul(x, x, x)
    c = r(4)
    norm.batch_norm_stats(c, c, x)
    norm.batch_norm_update_running(c, c, np.zeros((), np.int64), c, c, 0.1, 5)
    norm.batch_norm_invstd(c, c, 1e-5)
    for w in (c, None):
        norm.batch_norm_apply(x, x, x, c, c, w, w)
        norm.batch_norm_backward(x, c, c, x, x, c, w, True)
    elementwise.leaky_relu_forward(x, x, 0.01)
    elementwise.leaky_relu_backward(x, x, x, 0.01)
    optim.sgd_step(x, x, x, 0.1, 1e-4, 0.9, 0.1, True, False)
    optim.adam_step(x, x, x, x, x, 0.1, 0.9, 0.999, 1e-8, 1e-2, True, 3)


def _float64_values(cres) -> set:
    return {(v, str(t)) for v, t in cres.type_annotation.typemap.items() if "float64" in str(t)}


def main() -> int:
    _fake_gpu()
    _drive(np.float32)
    _drive(np.float64, everything=False)
    failures = []
    for kernel, argtypes in launched:
        name = f"{kernel.py_func.__name__}{argtypes}"
        try:
            cres = compile_cuda(kernel.py_func, None, argtypes, cc=CC)
        except Exception as err:  # report every kernel, then fail
            failures.append(f"{name}: does not compile: {err}")
            continue
        if "float64" not in str(argtypes) and _float64_values(cres):
            failures.append(f"{name}: float64 values {sorted(_float64_values(cres))}")
    for mod in (device, conv, elementwise, padding, pool):
        for fn_name, fn in vars(mod).items():
            for sig, cres in getattr(fn, "overloads", {}).items():
                if "float64" not in str(sig) and hasattr(cres, "type_annotation") and _float64_values(cres):
                    failures.append(f"device {fn_name}{sig}: float64 values {sorted(_float64_values(cres))}")
    print(f"{len(launched)} kernel specialisations typed and lowered for compute capability {CC}")
    print("\n".join(failures))
    return 1 if failures or len(launched) < 20 else 0


if __name__ == "__main__":
    sys.exit(main())
