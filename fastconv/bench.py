"""``python -m fastconv bench``: time the layer suite, and PyTorch on it, in one process.

    python -m fastconv bench                                  # every layer and pass, float32
    python -m fastconv bench --layers resnet_3x3_64,vgg_maxpool --passes forward --repeat 20
    python -m fastconv bench --threads 1 --json results.json  # JSON written atomically
    python -m fastconv bench --suite off                      # the layers outside the suite

Each (layer, pass) becomes a :class:`Case`: random inputs, the fastconv call and, when PyTorch
is importable, the same pass in PyTorch on the same data. Before anything is timed the case
is checked (:meth:`Case.check`), so a wrong kernel never reports a time; then each side is
warmed up (compilation stays out of the timings) and timed, the median of ``--repeat`` calls.
PyTorch runs with the same number of threads, and the two are timed in alternating turns, so
the ratio is measured, not remembered, and a burst of load on a shared machine slows both;
each turn first runs its side for ``SETTLE`` seconds, so that neither is timed while the
other's thread pool still spins. The asv suites in ``benchmarks/`` are built on the same
cases.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import numpy as np

PASSES = ("forward", "backward_input", "backward_weight")
_OP_PASSES = {
    "conv": PASSES,
    "conv_transpose": PASSES,
    "max_pool": PASSES[:2],
    "avg_pool": PASSES[:2],
}
_RTOL = {"float32": 1e-5, "float64": 1e-12}  # times the same op on |inputs| (DESIGN.md 4)

DEVICES = ("cpu", "cuda")


def device_fns(device: str) -> tuple[Callable, Callable, Callable]:
    """``(to_device, to_host, synchronize)`` for ``device``; CUDA is imported only here."""
    if device == "cpu":
        return (lambda a: a), np.asarray, (lambda: None)
    from numba import cuda

    from .backends.cuda import device as gpu

    gpu.require()
    return gpu.to_device, gpu.to_host, cuda.synchronize


SUITES = {"main": "layer_suite.json", "off": "off_suite.json"}
"""The layer files: ``main``, the project's copy of the reference suite; ``off``, layers
outside it (channel tails, non-square and strided kernels, groups, long 1-D signals), so that
speed is not tuned to the suite's exact shapes. Layer names are unique across both."""


def load_layers(suite: str = "main") -> list[dict]:
    """The layers of ``suite`` (``SUITES``), as dicts in the suite's format."""
    text = resources.files("fastconv").joinpath(SUITES[suite]).read_text()
    return json.loads(text)["layers"]


def layer_names(*ops: str) -> list[str]:
    """Names of the suite's layers whose op is one of ``ops`` (all layers if none given)."""
    return [layer["name"] for layer in load_layers() if not ops or layer["op"] in ops]


def passes_of(layer: dict) -> tuple[str, ...]:
    """The passes a layer has; pooling has no weight, so no ``backward_weight``."""
    return _OP_PASSES[layer["op"]]


def import_torch():
    """PyTorch, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def set_threads(n: int) -> None:
    """Use ``n`` threads in Numba and, when installed, in PyTorch."""
    import numba

    numba.set_num_threads(n)
    torch = import_torch()
    if torch is not None:
        torch.set_num_threads(n)


SETTLE = 0.02
"""Seconds each function runs, untimed, before its timed call in a round. Numba's and
PyTorch's OpenMP thread pools are separate, and GNU OpenMP's threads spin for a while after
each parallel region: called right after the other library, a pass shared the 2 cores with
its spinning threads (on the 2-core Xeon: resnet_3x3_64 forward 6.21 ms against 5.50 alone,
mobilenet_dw 1.25 against 0.81; PyTorch's NCHW 5.68 against 5.43, while its channels-last
call, timed after its own NCHW one, lost 1.5%). After 20 ms of its own calls each side runs
at its speed alone (5.69, 0.82; PyTorch 5.54), the steady state of a loop that uses one
library."""


def median_time(fn: Callable[[], object], repeat: int, warmup: int = 2, settle: float = SETTLE) -> float:
    """Median wall time of ``fn()`` in seconds, over ``repeat`` calls after ``warmup`` calls."""
    return median_times([fn], repeat, warmup, settle)[0]


def median_times(
    fns: list[Callable[[], object]], repeat: int, warmup: int = 2, settle: float = SETTLE
) -> list[float]:
    """Median wall time of each of ``fns`` in seconds, over ``repeat`` rounds after ``warmup``
    rounds; each round gives every function a turn, so a burst of load on a shared machine
    slows all of them alike and their ratio stays fair. A turn calls the function for
    ``settle`` seconds (at least once where ``settle`` > 0), untimed, then once timed: no other
    library's threads are still spinning on the cores (``SETTLE``)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, spent in zip(fns, times, strict=True):
            turn = time.perf_counter()
            while settle > 0 and time.perf_counter() - turn < settle:
                fn()
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def _per_axis(value, d: int) -> list[int]:
    """A layer's int or per-axis list as a list of ``d`` ints."""
    return list(value) if isinstance(value, list) else [value] * d


def _geometry(layer: dict) -> dict:
    """The layer's keyword arguments, the same for fastconv and torch.nn.functional (a
    per-axis list as a tuple)."""

    def arg(key: str):
        return tuple(layer[key]) if isinstance(layer[key], list) else layer[key]

    if layer["op"] in ("conv", "conv_transpose"):
        return {key: arg(key) for key in ("stride", "padding", "dilation", "groups")}
    return {"kernel_size": tuple(layer["kernel"]), "stride": arg("stride"), "padding": arg("padding")}


def _fastconv_fns(layer: dict) -> dict[str, Callable]:
    """Each pass of the layer as ``f(x, w, dy, idx)`` on fastconv arrays."""
    import fastconv as fc

    op, d, geo = layer["op"], len(layer["spatial"]), _geometry(layer)
    if op in ("conv", "conv_transpose"):
        fwd, bwd_in, bwd_w = (
            getattr(fc, f"{op}{d}d{suffix}") for suffix in ("", "_backward_input", "_backward_weight")
        )
        return {
            "forward": lambda x, w, dy, idx: fwd(x, w, **geo),
            "backward_input": lambda x, w, dy, idx: bwd_in(dy, w, x.shape, **geo),
            "backward_weight": lambda x, w, dy, idx: bwd_w(dy, x, w.shape, **geo),
        }
    fwd, bwd = getattr(fc, f"{op}{d}d"), getattr(fc, f"{op}{d}d_backward")
    if op == "max_pool":
        return {
            "forward": lambda x, w, dy, idx: fwd(x, **geo),
            "backward_input": lambda x, w, dy, idx: bwd(dy, idx, x.shape),
        }
    return {
        "forward": lambda x, w, dy, idx: fwd(x, **geo),
        "backward_input": lambda x, w, dy, idx: bwd(dy, x.shape, **geo),
    }


def _torch_fns(torch, layer: dict) -> dict[str, Callable]:
    """Each pass of the layer as ``f(x, w, dy, idx)`` on PyTorch tensors."""
    op, d, geo = layer["op"], len(layer["spatial"]), _geometry(layer)
    F, aten = torch.nn.functional, torch.ops.aten
    if op in ("conv", "conv_transpose"):
        transposed = op == "conv_transpose"
        fwd = getattr(F, f"{op}{d}d")
        lists = [_per_axis(layer[key], d) for key in ("stride", "padding", "dilation")]

        def backward(dy, x, w, mask):
            return aten.convolution_backward(dy, x, w, None, *lists, transposed, [0] * d, geo["groups"], mask)

        return {
            "forward": lambda x, w, dy, idx: fwd(x, w, **geo),
            "backward_input": lambda x, w, dy, idx: backward(dy, x, w, [True, False, False])[0],
            "backward_weight": lambda x, w, dy, idx: backward(dy, x, w, [False, True, False])[1],
        }
    k, s, p = list(geo["kernel_size"]), _per_axis(layer["stride"], d), _per_axis(layer["padding"], d)
    fwd = getattr(F, f"{op}{d}d")
    if op == "max_pool":
        bwd = getattr(aten, f"max_pool{d}d_with_indices_backward")
        return {
            "forward": lambda x, w, dy, idx: fwd(x, k, s, p),
            "backward_input": lambda x, w, dy, idx: bwd(dy, x, k, s, p, [1] * d, False, idx),
        }
    bwd = getattr(aten, f"avg_pool{d}d_backward")
    return {
        "forward": lambda x, w, dy, idx: fwd(x, k, s, p),
        "backward_input": lambda x, w, dy, idx: bwd(dy, x, k, s, p, False, True, None),
    }


@dataclass
class Case:
    """One pass of one layer, ready to time.

    ``run()`` calls fastconv (synchronised on a GPU), ``torch_run()`` PyTorch on the same
    data (None without PyTorch); ``check()`` raises AssertionError when fastconv is wrong.
    ``torch_channels_last_run()``: for the forward of a 2-D convolution, PyTorch on the same
    data in its channels-last memory format (converted once, outside the timing), its
    fastest CPU layout; None elsewhere.
    """

    layer: dict
    pass_: str
    dtype: str
    run: Callable[[], object]
    torch_run: Callable[[], object] | None
    check: Callable[[], None]
    flops: int
    nbytes: int
    torch_channels_last_run: Callable[[], object] | None = None


def layer_by_name(name: str) -> dict:
    """The layer called ``name`` in any suite (``SUITES``)."""
    for suite in SUITES:
        for layer in load_layers(suite):
            if layer["name"] == name:
                return layer
    known = ", ".join(layer["name"] for suite in SUITES for layer in load_layers(suite))
    raise ValueError(f"unknown layer {name!r}; the suites have {known}")


def make_case(
    layer: dict | str,
    pass_: str,
    dtype: str = "float32",
    device: str = "cpu",
    use_torch: bool = True,
) -> Case:
    """Build (not yet check or time) ``pass_`` of a suite layer, given by name or as a dict."""
    import fastconv as fc

    layer = layer_by_name(layer) if isinstance(layer, str) else layer
    if pass_ not in passes_of(layer):
        raise ValueError(f"{layer['name']} ({layer['op']}) has passes {passes_of(layer)}, not {pass_!r}")
    to_device, to_host, synchronize = device_fns(device)
    rng = np.random.default_rng(0)
    op, d = layer["op"], len(layer["spatial"])
    x = rng.standard_normal((layer["N"], layer["C_in"], *layer["spatial"])).astype(dtype)
    w = None
    if op in ("conv", "conv_transpose"):
        c_in, c_out, groups = layer["C_in"], layer["C_out"], layer["groups"]
        w_shape = (c_out, c_in // groups) if op == "conv" else (c_in, c_out // groups)
        w = rng.standard_normal((*w_shape, *layer["kernel"])).astype(dtype)
    x_dev, w_dev = to_device(x), w if w is None else to_device(w)
    fns = _fastconv_fns(layer)
    y = to_host(fns["forward"](x_dev, w_dev, None, None))
    dy = rng.standard_normal(y.shape).astype(dtype)
    idx = None
    if op == "max_pool":
        idx = getattr(fc, f"max_pool{d}d")(x_dev, **_geometry(layer), return_indices=True)[1]
    arrays = (x_dev, w_dev, to_device(dy), idx)
    fn = fns[pass_]

    def run():
        out = fn(*arrays)
        synchronize()
        return out

    torch = import_torch() if use_torch else None
    torch_run = torch_channels_last_run = None
    if torch is None:

        def check():
            _check_adjoints(layer, dtype, fns, (x.shape, w if w is None else w.shape, dy.shape), device)

    else:
        torch_fn = _torch_fns(torch, layer)[pass_]
        tx, tw, tdy = (a if a is None else torch.from_numpy(a) for a in (x, w, dy))
        t_idx = None
        if op == "max_pool":  # PyTorch's own indices: the check then covers fastconv's too
            t_idx = getattr(torch.nn.functional, f"max_pool{d}d")(
                tx, **_geometry(layer), return_indices=True
            )[1]

        if device == "cpu":  # PyTorch runs on the CPU: on a GPU it checks, but is not timed

            def torch_run():
                return torch_fn(tx, tw, tdy, t_idx)

            if op == "conv" and pass_ == "forward" and d == 2:
                tx_cl, tw_cl = (a.contiguous(memory_format=torch.channels_last) for a in (tx, tw))

                def torch_channels_last_run():
                    return torch_fn(tx_cl, tw_cl, None, None)

        def check():
            got = to_host(run())
            t64 = [a if a is None else torch.from_numpy(a.astype(np.float64)) for a in (x, w, dy)]
            ref = torch_fn(*t64, t_idx).numpy()
            bound = torch_fn(*[a if a is None else a.abs() for a in t64], t_idx).numpy()
            _assert_close(f"{layer['name']} {pass_} {dtype}", got, ref, _RTOL[dtype] * bound)

    sizes = {"forward": (x, w, y), "backward_input": (dy, w, x), "backward_weight": (dy, x, w)}
    nbytes = sum(a.nbytes for a in sizes[pass_] if a is not None)
    flops = _flops(layer, x, y)
    return Case(layer, pass_, dtype, run, torch_run, check, flops, nbytes, torch_channels_last_run)


def _flops(layer: dict, x: np.ndarray, y: np.ndarray) -> int:
    """Arithmetic of one pass: 2 per multiply-add for convolutions (all three passes do the
    same number), one per window element for pooling."""
    window = int(np.prod(layer["kernel"]))
    if layer["op"] == "conv":
        return 2 * y.size * layer["C_in"] // layer["groups"] * window
    if layer["op"] == "conv_transpose":
        return 2 * x.size * layer["C_out"] // layer["groups"] * window
    return y.size * window


def _assert_close(what: str, got: np.ndarray, ref: np.ndarray, bound: np.ndarray) -> None:
    if got.shape != ref.shape:
        raise AssertionError(f"{what}: shape {got.shape}, expected {ref.shape}")
    err = np.abs(got.astype(np.float64) - ref)
    bad = ~(err <= bound)  # NaN counts as bad
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(bad, np.nan_to_num(err, nan=np.inf), -1)), err.shape)
        raise AssertionError(
            f"{what}: {bad.sum()} of {bad.size} elements off; at {worst} got {got[worst]}, "
            f"expected {ref[worst]} (allowed error {bound[worst]:.3g})"
        )


def _check_adjoints(layer: dict, dtype: str, fns: dict, shapes: tuple, device: str) -> None:
    """The check without PyTorch. On integer-valued inputs in [-4, 4] every convolution and
    max-pooling pass is exact in float32 (sums stay below 2**24), so the adjoint identities
    <forward(x, w), dy> = <x, backward_input(dy)> = <w, backward_weight(dy, x)> must hold
    exactly (average pooling: up to the rounding of its division); no pass may be all zero."""
    import fastconv as fc

    to_device, to_host, _ = device_fns(device)
    rng = np.random.default_rng(1)
    x, w, dy = (s if s is None else rng.integers(-4, 5, s).astype(dtype) for s in shapes)
    dev = [a if a is None else to_device(a) for a in (x, w, dy)]
    idx = None
    if layer["op"] == "max_pool":
        pool = getattr(fc, f"max_pool{len(layer['spatial'])}d")
        idx = pool(dev[0], **_geometry(layer), return_indices=True)[1]
    outs = {p: to_host(f(*dev, idx)).astype(np.float64) for p, f in fns.items()}
    for p, out in outs.items():
        if not np.isfinite(out).all() or not out.any():
            raise AssertionError(f"{layer['name']} {p} {dtype}: result not finite or all zero")
    pairs = {"forward": (outs["forward"], dy), "backward_input": (x, outs["backward_input"])}
    if w is not None:
        pairs["backward_weight"] = (w, outs["backward_weight"])
    values = {p: np.vdot(a, b.astype(np.float64)) for p, (a, b) in pairs.items()}
    tol = 0.0
    if layer["op"] == "avg_pool":
        tol = 1e-6 * np.vdot(np.abs(outs["forward"]), np.abs(dy))
    if max(values.values()) - min(values.values()) > tol:
        raise AssertionError(f"{layer['name']} {dtype}: adjoint identities fail: {values}")


def _atomic_write_json(path: str, data: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".bench-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _environment(threads: int, device: str, torch) -> dict:
    import numba

    import fastconv

    return {
        "fastconv": fastconv.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch": None if torch is None else torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "device": device,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    import numba

    parser = argparse.ArgumentParser(prog="python -m fastconv bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite",
        choices=list(SUITES),
        default="main",
        help="main: the layer suite; off: the layers outside it (default: main)",
    )
    parser.add_argument(
        "--layers",
        type=_csv,
        metavar="NAME,...",
        help="layers of either suite, by name (default: all of --suite)",
    )
    parser.add_argument(
        "--passes",
        type=_csv,
        default=list(PASSES),
        metavar="PASS,...",
        help="forward, backward_input, backward_weight (pooling: the first two)",
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeat", type=int, default=10, help="timed calls per pass (median)")
    parser.add_argument(
        "--threads",
        type=int,
        default=numba.get_num_threads(),
        help="threads for fastconv and PyTorch alike (default: all)",
    )
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args(argv)
    unknown = [p for p in args.passes if p not in PASSES]
    if unknown:
        parser.error(f"unknown pass {unknown[0]!r}; choose from {', '.join(PASSES)}")
    try:
        layers = [layer_by_name(name) for name in args.layers] if args.layers else load_layers(args.suite)
    except ValueError as e:
        parser.error(str(e))

    set_threads(args.threads)
    torch = None if args.no_torch else import_torch()
    env = _environment(args.threads, args.device, torch)
    print(" ".join(f"{k}={v}" for k, v in env.items() if k != "time"))
    print(f"{'layer':<16}{'pass':<17}{'ms':>9}{'GFLOP/s':>9}{'GB/s':>7}", end="")
    print(f"{'torch ms':>10}{'fc/torch':>9}{'fc/torch-NHWC':>14}" if torch is not None else "")
    rows, failed = [], 0
    for layer in layers:
        for pass_ in (p for p in args.passes if p in passes_of(layer)):
            case = make_case(layer, pass_, args.dtype, args.device, use_torch=torch is not None)
            row = {"layer": layer["name"], "op": layer["op"], "pass": pass_, "dtype": args.dtype}
            try:
                case.check()
            except AssertionError as e:
                failed += 1
                rows.append({**row, "error": str(e)})
                print(f"{layer['name']:<16}{pass_:<17} WRONG RESULT, not timed: {e}", flush=True)
                continue
            fns = [f for f in (case.run, case.torch_run, case.torch_channels_last_run) if f is not None]
            seconds, *torch_seconds = median_times(fns, args.repeat)
            row.update(
                ms=seconds * 1e3,
                gflops=case.flops / seconds / 1e9,
                gbytes_per_s=case.nbytes / seconds / 1e9,
            )
            line = "{layer:<16}{pass:<17}{ms:9.3f}{gflops:9.1f}{gbytes_per_s:7.1f}".format(**row)
            if torch_seconds:  # timed in the same rounds, call by call in turn
                row.update(torch_ms=torch_seconds[0] * 1e3, ratio_to_torch=seconds / torch_seconds[0])
                line += f"{row['torch_ms']:10.3f}{row['ratio_to_torch']:9.2f}"
            if len(torch_seconds) == 2:  # and in channels-last memory format
                row.update(
                    torch_channels_last_ms=torch_seconds[1] * 1e3,
                    ratio_to_torch_channels_last=seconds / torch_seconds[1],
                )
                line += f"{row['ratio_to_torch_channels_last']:14.2f}"
            rows.append(row)
            print(line, flush=True)
    if args.json:
        _atomic_write_json(args.json, {"environment": env, "repeat": args.repeat, "results": rows})
    if failed:
        print(f"{failed} pass(es) gave wrong results", file=sys.stderr)
    return 1 if failed else 0
