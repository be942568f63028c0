"""What every layer-suite benchmark shares: a case that is compiled and checked in ``setup``.

The suite classes here start with ``_`` so asv does not collect them from this module; each
concern's module subclasses them with its ``params``. Every case comes from
``fastconv.bench.make_case``, the cases ``python -m fastconv bench`` times too. Nothing is
imported from fastconv when asv discovers the suites (parameters come from the repository's
``fastconv/layer_suite.json``), so an old commit shows its missing parts as skipped.
"""

import json
from pathlib import Path

_SUITE_FILE = Path(__file__).resolve().parent.parent / "fastconv" / "layer_suite.json"
SUITE = {layer["name"]: layer for layer in json.loads(_SUITE_FILE.read_text())["layers"]}
PASSES = ["forward", "backward_input", "backward_weight"]
DTYPES = ["float32", "float64"]


def layer_names(*ops):
    """The suite's layers whose op is one of ``ops``."""
    return [name for name, layer in SUITE.items() if layer["op"] in ops]


def prepare(layer, pass_, dtype, device="cpu", use_torch=True):
    """A checked, compiled case; NotImplementedError (asv: skipped) when the installed
    fastconv lacks the op or ``fastconv.bench`` (a commit older than either).

    ``check()`` compares with a float64 reference (PyTorch, or exact adjoint identities
    without it) and raises AssertionError, so a wrong kernel fails instead of being timed.
    """
    import fastconv

    spec = SUITE[layer]
    op = f"{spec['op']}{len(spec['spatial'])}d"
    if not hasattr(fastconv, op):
        raise NotImplementedError(f"fastconv.{op} does not exist in this version")
    try:
        from fastconv.bench import make_case
    except ImportError as e:
        raise NotImplementedError(f"this version has no fastconv.bench: {e}") from e
    case = make_case(spec, pass_, dtype, device, use_torch)
    case.check()
    case.run()  # warm: every kernel the timed call needs is compiled now
    return case


def reset_peak_memory():
    """Make the process's peak RSS (what ``peakmem_`` reports) start from here, so the
    compilation and the reference check in ``setup`` do not count. Linux only; elsewhere
    the peak includes ``setup``."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class _Time:
    """Wall time of one pass of one layer."""

    param_names = ["layer", "pass", "dtype"]

    def setup(self, layer, pass_, dtype):
        self.case = prepare(layer, pass_, dtype, use_torch=False)

    def time_pass(self, layer, pass_, dtype):
        self.case.run()


class _PeakMem:
    """Peak resident memory of the process during one pass: the interpreter, Numba and the
    operands, plus what the call adds (result, layout copies, padding, workspaces)."""

    param_names = ["layer", "pass", "dtype"]

    def setup(self, layer, pass_, dtype):
        self.case = prepare(layer, pass_, dtype, use_torch=False)
        reset_peak_memory()

    def peakmem_pass(self, layer, pass_, dtype):
        self.case.run()


class _Rate:
    """Throughput of one pass, median of 5 calls."""

    param_names = ["layer", "pass", "dtype"]

    def setup(self, layer, pass_, dtype):
        self.case = prepare(layer, pass_, dtype)

    def track_gflops(self, layer, pass_, dtype):
        from fastconv.bench import median_time

        return self.case.flops / median_time(self.case.run, repeat=5) / 1e9

    track_gflops.unit = "GFLOP/s"


class _VsTorch:
    """fastconv's time over PyTorch's for the same pass on the same arrays, same process,
    same threads (medians of 5 calls of each, in turn); below 1 means fastconv is faster."""

    param_names = ["layer", "pass", "dtype"]

    def setup(self, layer, pass_, dtype):
        self.case = prepare(layer, pass_, dtype)
        if self.case.torch_run is None:
            raise NotImplementedError("PyTorch is not installed")
        import numba

        from fastconv.bench import set_threads

        set_threads(numba.get_num_threads())  # PyTorch gets as many threads as Numba

    def track_ratio_to_torch(self, layer, pass_, dtype):
        from fastconv.bench import median_times

        ours, theirs = median_times([self.case.run, self.case.torch_run], repeat=5)
        return ours / theirs

    track_ratio_to_torch.unit = "fastconv/torch"
