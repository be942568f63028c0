"""Padding folded into a layout copy, and its adjoint.

A padded input is a gather through one index map per spatial axis: entry ``i`` of the map
says which input cell padded cell ``i`` reads (``-1`` reads zero). Every ``padding_mode``
is just a different map, so one kernel pads, crops the tail a stride never reaches, and
(transposed) folds a padded gradient back onto the input.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
from numba import njit, prange

from ...config import FASTMATH
from ...shapes import ConvGeometry
from .simd import LANES, to_line, vload, vload_first, vstore_first, vstream

_NP_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@functools.lru_cache(maxsize=1024)
def pad_map(n: int, lo: int, extent: int, mode: str) -> np.ndarray:
    """Index map of one axis: padded cell ``i`` (``0 <= i < extent``) reads input cell
    ``map[i]`` of ``range(n)``, or zero where ``map[i] == -1``. Cached per geometry (a
    layer's maps are the same on every call): callers only read it."""
    pos = np.arange(extent, dtype=np.int64) - lo
    if mode == "zeros":
        return np.where((pos >= 0) & (pos < n), pos, -1)
    hi = max(extent - lo - n, 0)
    full = np.pad(np.arange(n, dtype=np.int64), (lo, hi), mode=_NP_MODES[mode])
    return np.ascontiguousarray(full[:extent])


def index_maps(in_size, lo, extent, mode: str) -> tuple[np.ndarray, ...]:
    """``pad_map`` of each axis: input sizes, cells padded below, padded extents."""
    return tuple(pad_map(n, a, e, mode) for n, a, e in zip(in_size, lo, extent, strict=True))


def extents(geom: ConvGeometry) -> tuple[int, int, int]:
    """Padded size each axis needs: the last cell the last window touches, plus one."""
    return tuple(
        (o - 1) * s + (k - 1) * dil + 1
        for o, s, k, dil in zip(geom.out_size, geom.stride, geom.kernel, geom.dilation, strict=True)
    )


def pad_maps(geom: ConvGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The three index maps of a lifted (3-D) geometry, or None when the input can be read
    as it is (no padding on the low side; the kernel never reads past the extent)."""
    ext = extents(geom)
    if all(lo == 0 for lo in geom.pad_lo) and all(e <= n for e, n in zip(ext, geom.in_size, strict=True)):
        return None
    return index_maps(geom.in_size, geom.pad_lo, ext, geom.padding_mode)


def contiguous(a: np.ndarray) -> np.ndarray:
    """C-contiguous and writeable (the one array type the kernels are compiled for)."""
    if a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, order="C", copy=True)


def group_images(a: np.ndarray, groups: int) -> np.ndarray:
    """a (N, groups*C, D, H, W), C-contiguous -> the view (N*groups, C, D, H, W): the groups
    of an image as images of their own (image n*groups + g is group g of image n), which is
    how grouped convolutions run in one kernel call. A view, never a copy, so an output
    written through it is written in place."""
    if not a.flags.c_contiguous:
        raise ValueError(f"group_images needs a C-contiguous array, got strides {a.strides}")
    return a.reshape(a.shape[0] * groups, a.shape[1] // groups, *a.shape[2:])


def padded_input(x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """x (N, C, D, H, W) -> the padded input the valid-convolution kernels read."""
    maps = pad_maps(geom)
    x = contiguous(x)
    if maps is None:
        return x
    out = np.empty(x.shape[:2] + tuple(len(m) for m in maps), dtype=x.dtype)
    _gather_kernel(out, x, *maps)
    return out


def fold_padded_grad(dx: np.ndarray, dxp: np.ndarray, geom: ConvGeometry) -> None:
    """Adjoint of ``padded_input``: dx (N, C, D, H, W) = sum of dxp cells that read each cell."""
    maps = pad_maps(geom)
    if maps is None:  # dxp is the leading corner of dx; the cells a stride never reads get 0
        dx[...] = 0
        dx[:, :, : dxp.shape[2], : dxp.shape[3], : dxp.shape[4]] = dxp
        return
    _scatter_kernel(dx, dxp, *maps)


@njit(cache=True, error_model="numpy")
def run_of(map_w):
    # (a, b): the longest range of an index map reading consecutive input cells,
    # map_w[a + k] = map_w[a] + k for a <= a + k < b (a run a kernel can copy as a block)
    best_a, best_b, a = 0, 0, 0
    for k in range(map_w.shape[0] + 1):
        if k == map_w.shape[0] or map_w[k] < 0 or (k > a and map_w[k] != map_w[k - 1] + 1):
            if k - a > best_b - best_a:
                best_a, best_b = a, k
            a = k + 1 if k < map_w.shape[0] and map_w[k] < 0 else k
    return best_a, best_b


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _gather_kernel(out, x, map_d, map_h, map_w):
    # out (N, C, Dp, Hp, Wp) <- x (N, C, D, H, W) through the index maps
    N, C, Dp, Hp, Wp = out.shape
    for job in prange(N * C * Dp):
        i = job % Dp
        nc = job // Dp
        n, c = nc // C, nc % C
        for j in range(Hp):
            for k in range(Wp):
                src_d, src_h, src_w = map_d[i], map_h[j], map_w[k]
                if src_d < 0 or src_h < 0 or src_w < 0:
                    out[n, c, i, j, k] = 0
                else:
                    out[n, c, i, j, k] = x[n, c, src_d, src_h, src_w]


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _scatter_kernel(dx, dxp, map_d, map_h, map_w):
    # dx (N, C, D, H, W) <- sum over dxp (N, C, Dp, Hp, Wp) cells mapped onto each cell
    N, C = dx.shape[0], dx.shape[1]
    Dp, Hp, Wp = dxp.shape[2], dxp.shape[3], dxp.shape[4]
    for nc in prange(N * C):  # one thread owns a whole (n, c) volume: no races
        n, c = nc // C, nc % C
        dx[n, c] = 0
        for i in range(Dp):
            for j in range(Hp):
                for k in range(Wp):
                    src_d, src_h, src_w = map_d[i], map_h[j], map_w[k]
                    if src_d >= 0 and src_h >= 0 and src_w >= 0:
                        dx[n, c, src_d, src_h, src_w] += dxp[n, c, i, j, k]


def subsample(a: np.ndarray, stride, out_size) -> np.ndarray:
    """a (N, C, D, H, W) at cells (od*sd, oh*sh, ow*sw) for (od, oh, ow) < out_size, as a new
    C-contiguous (N, C, *out_size) array: a strided 1x1 convolution's input, gathered in one
    parallel pass through index maps (resnet_1x1_s2's input: 0.07 ms, against 0.12 ms
    for numpy's strided copy; the zero-filled placement back, ``upsample``, 0.08 against
    0.16 ms)."""
    out = np.empty((*a.shape[:2], *out_size), a.dtype)
    _gather_kernel(out, a, *_stride_maps(tuple(stride), tuple(out_size)))
    return out


@functools.lru_cache(maxsize=256)
def _stride_maps(stride, out_size) -> tuple[np.ndarray, ...]:
    """Index maps reading cells 0, s, 2s, ... (``out_size`` of them) per axis; cached per
    geometry (callers only read)."""
    return tuple(np.arange(o, dtype=np.int64) * s for o, s in zip(out_size, stride, strict=True))


def upsample(out: np.ndarray, a: np.ndarray, stride) -> None:
    """out (N, C, D, H, W) <- a (N, C, OD, OH, OW) at cells (od*sd, oh*sh, ow*sw), zero
    elsewhere: the adjoint of ``subsample``, each cell of out written once (stored, not
    added as ``_scatter_kernel`` does, so a -0.0 stays -0.0)."""
    _upsample_kernel(out, a, *stride)


@njit(parallel=True, cache=True, error_model="numpy")
def _upsample_kernel(out, a, sd, sh, sw):
    # out (N, C, D, H, W) <- a (N, C, OD, OH, OW) at cells (od*sd, oh*sh, ow*sw), zero elsewhere
    N, C = out.shape[0], out.shape[1]
    OD, OH, OW = a.shape[2], a.shape[3], a.shape[4]
    for nc in prange(N * C):  # one (n, c) plane per job: zeroed whole, then the cells placed
        n, c = nc // C, nc % C
        plane = out[n, c]
        plane[...] = 0
        for od in range(OD):
            for oh in range(OH):
                src, dst = a[n, c, od, oh], plane[od * sd, oh * sh]
                for ow in range(OW):
                    dst[ow * sw] = src[ow]


def cpu_vendor(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's vendor as Linux names it (``GenuineIntel``, ``AuthenticAMD``); "" where
    there is no /proc/cpuinfo to read."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id":
                    return value.strip()
    except OSError:
        pass
    return ""


VENDOR = cpu_vendor()
"""This machine's CPU vendor, read once: the tuning tables that differ by vendor read it."""


def llc_bytes(caches: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """The size of the CPU's last-level cache in bytes, as Linux's sysfs lists cpu0's caches
    (``index*/level`` and ``size``, such as ``491520K``); 0 where they cannot be read."""
    best = (0, 0)
    try:
        entries = os.listdir(caches)
    except OSError:
        return 0
    for entry in entries:
        try:
            with open(os.path.join(caches, entry, "level")) as f:
                level = int(f.read())
            with open(os.path.join(caches, entry, "size")) as f:
                size = f.read().strip()
        except (OSError, ValueError):
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:].upper(), 1)
        digits = size[:-1] if scale > 1 else size
        if digits.isdigit():
            best = max(best, (level, int(digits) * scale))
    return best[1]


# Streamed stores (non-temporal, past the caches) pay only for outputs that the last-level cache
# could not hold anyway, and only on Intel. On an earlier 2-core Intel Xeon host (its L3 not
# recorded) they paid from 8 MiB up (alternating calls 0.80-1.00x, median 0.91x, on resnet_maxpool's
# backward, 25.7 MB). On a 2-core Xeon with a 480 MiB L3 plain stores won at every size of the
# suite: alternating public calls, plain/streamed, resnet_maxpool's backward 0.785 (0.906 against
# 1.154 ms), vgg_maxpool's 0.698, mobilenet's depthwise forward 0.806 and input gradient 0.811 (its
# weight gradient writes nothing large: 0.999). On the 2-core AMD EPYC host (32 MiB L3) plain stores
# won or tied at every size tried, 12.8 MB to 205 MB; vgg_maxpool's backward took 0.31 ms plainly
# stored and 0.59 ms streamed, a 51 MB one 7.5 and 8.5 ms, a depthwise 3x3 forward of 51 MB 9.5 and
# 10.6, resnet_maxpool's backward 1.46 and 1.56 ms, 2.07 and 2.04.
STREAM_BYTES = max(8 << 20, llc_bytes()) if VENDOR == "GenuineIntel" else math.inf


def streams(out: np.ndarray) -> bool:
    """Whether a kernel writes ``out`` in non-temporal stores (``stream_copy``): on CPUs where
    that pays (``STREAM_BYTES``), for outputs far larger than the caches, so that no later
    reader would find them there anyway."""
    return out.nbytes >= STREAM_BYTES


@njit(cache=True, boundscheck=False)
def stream_copy(dst, d0, src, count):
    # dst[d0 : d0 + count] <- src[:count]: plain stores up to the first 64-byte line of dst and
    # after the last whole one, non-temporal stores between (``simd.vstream``: other threads
    # see them only after a ``simd.fence``, which the caller makes once it has streamed all it
    # writes; a fence per call of a 1792-byte copy made mobilenet's forward 1.1x slower)
    head = min(to_line(dst, d0), count)
    if head:
        vstore_first(dst, d0, vload_first(src, 0, head), head)
    body = head + (count - head) // LANES * LANES
    for t in range(head, body, LANES):
        vstream(dst, d0 + t, vload(src, t))
    for t in range(body, count, LANES):
        vstore_first(dst, d0 + t, vload_first(src, t, count - t), count - t)
