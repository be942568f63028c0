"""The suite's layers on a CUDA GPU, float32; skipped (setup raises NotImplementedError)
without one. Each timed call ends with ``numba.cuda.synchronize()`` (``Case.run``), so the
time covers the kernels, not only their launch."""

from . import _common
from ._common import PASSES, layer_names


def _require_gpu():
    from numba import config

    try:
        from fastconv.backends import cuda_available
    except ImportError as e:
        raise NotImplementedError(f"this version has no CUDA backend: {e}") from e
    if config.ENABLE_CUDASIM or not cuda_available():
        raise NotImplementedError("no CUDA GPU (the simulator is not benchmarked)")


class CudaConv:
    params = [layer_names("conv", "conv_transpose"), PASSES]
    param_names = ["layer", "pass"]

    def setup(self, layer, pass_):
        _require_gpu()
        self.case = _common.prepare(layer, pass_, "float32", device="cuda")

    def time_pass(self, layer, pass_):
        self.case.run()


class CudaPool:
    params = [layer_names("max_pool", "avg_pool"), PASSES[:2]]
    param_names = ["layer", "pass"]

    def setup(self, layer, pass_):
        _require_gpu()
        self.case = _common.prepare(layer, pass_, "float32", device="cuda")

    def time_pass(self, layer, pass_):
        self.case.run()
