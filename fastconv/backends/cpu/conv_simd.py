"""SIMD convolution for float32: picks the kernels of each pass and builds the passes.

- Depthwise (groups = C_in = C_out): ``conv_depthwise``, on NCDHW directly.
- Grouped: every group in one call, the groups of an image run as images of their own
  (x, out reshaped to (N*groups, C/groups, ...), a free view); the flat and blocked kernels
  pick each image's group weights (n % groups) and the weight gradient sums each group's
  images. Grouped 1x1 kernels run group by group, each as one row of pixels. Groups of 8
  outputs (the forward, the weight gradient) or 8 inputs (the input gradient), an even
  number of them, run two per image (``_paired``): one group's 8 channels would fill half of
  a 16-lane block, the pair's channels interleaved fill it (``blocked.to_blocked_pairs``).
  Alternating calls against one group per image, on 8-channel groups at strides 1 and 2:
  forward 0.82-0.87x the time, input gradient 0.84-0.91x, weight gradient 0.45-0.73x.
- 1x1 kernels without padding: a matrix product over the pixels the stride selects, run as
  one long row of pixels.
- Few output channels (LeNet; the input gradient of an RGB layer): ``conv_flat``, vectors
  over pixels in NCDHW.
- Otherwise the channel-blocked microkernels of ``conv_dense``, on a blocked copy of the
  input with padding folded into the conversion. Fewer than 16 input channels are stored
  narrow (one block of just those lanes). Kernel taps or stride phases may be folded into
  channels (``_fold_plan``, a cost model): the forward rarely gains from it; the weight
  gradient, whose register tile reuses its loads less over few lanes and many width taps,
  folds the width phases of strided RGB stems.

Backward-input is the forward kernel on grad_output with the kernel flipped (the adjoint),
by stride phases, each a stride-1 convolution with a subset of taps (on the blocked kernels
every phase in one launch, ``conv_dense.run_blocked_phases``). All orders
are fixed: results are bitwise identical for any thread count.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import numpy as np

from ... import config
from ...shapes import ConvGeometry
from . import blocked, conv_dense, conv_depthwise, conv_flat, layout, simd
from .simd import LANES


def supports(geom: ConvGeometry, dtype) -> bool:
    """Every float32 convolution: dense, depthwise, or grouped (one dense one per group)."""
    return np.dtype(dtype) == np.float32


def _is_depthwise(geom: ConvGeometry, in_channels: int, out_channels: int) -> bool:
    return geom.groups > 1 and geom.groups == in_channels == out_channels


def _is_grouped(geom: ConvGeometry, in_channels: int, out_channels: int) -> bool:
    """Grouped but not depthwise: ``groups`` dense convolutions, run as one (groups as images)."""
    return geom.groups > 1 and not geom.groups == in_channels == out_channels


def _groups(geom: ConvGeometry, in_channels: int, out_channels: int):
    """(input channels, output channels) of each group, as ranges."""
    cpg, opg = in_channels // geom.groups, out_channels // geom.groups
    for g in range(geom.groups):
        yield range(g * cpg, (g + 1) * cpg), range(g * opg, (g + 1) * opg)


def _span(r: range) -> slice:
    return slice(r.start, r.stop)


def _flat(op: str, geom: ConvGeometry, out_channels: int, in_channels: int) -> bool:
    """Whether the pixel-vectorised kernels of ``conv_flat`` run pass ``op`` of a dense
    convolution (``config.CONV_ALGORITHM`` may force them on or off)."""
    if config.CONV_ALGORITHM == "blocked":
        return False
    return conv_flat.applies(
        op, geom, out_channels, in_channels, any_channels=config.CONV_ALGORITHM == "flat"
    )


def _blocked(op: str, geom: ConvGeometry, out_channels: int, in_channels: int) -> bool:
    """Whether pass ``op`` of a dense ``geom`` runs on the channel-blocked kernels, which read
    and write a group's channels in place (the other paths get copies of them)."""
    return not _pointwise(geom) and not _flat(op, geom, out_channels, in_channels)


def _pointwise(geom: ConvGeometry) -> bool:
    """A 1x1x1 dense kernel without padding, not yet flattened: a matrix product over the
    pixels the strides select, which runs best as one long row of pixels (no register block
    straddles the end of a short row, and the input is subsampled once, not read in strides)."""
    return (
        geom.kernel == (1, 1, 1)
        and geom.groups == 1
        and geom.pad_lo == geom.pad_hi == (0, 0, 0)
        and not (geom.stride == (1, 1, 1) and geom.out_size[:2] == (1, 1))
    )


def _reads_all(geom: ConvGeometry) -> bool:
    """Whether a pointwise ``geom`` reads every input cell (stride 1)."""
    return tuple(geom.out_size) == tuple(geom.in_size)


def _pixels(a: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """The cells of a (N, C, D, H, W) that a pointwise ``geom`` reads, as (N, C, 1, 1, P)."""
    cells = layout.contiguous(a) if _reads_all(geom) else layout.subsample(a, geom.stride, geom.out_size)
    return cells.reshape(*a.shape[:2], 1, 1, -1)


def _as_row(a: np.ndarray) -> np.ndarray:
    """(N, C, D, H, W) -> (N, C, 1, 1, D*H*W)."""
    return layout.contiguous(a).reshape(*a.shape[:2], 1, 1, -1)


def _row_geometry(geom: ConvGeometry) -> ConvGeometry:
    pixels = (1, 1, math.prod(geom.out_size))
    return dataclasses.replace(geom, stride=(1, 1, 1), dilation=(1, 1, 1), in_size=pixels, out_size=pixels)


def _ungrouped(geom: ConvGeometry) -> ConvGeometry:
    return dataclasses.replace(geom, groups=1)


def _extents(out_size, kernel, stride, dilation, offsets=(0, 0, 0)):
    return tuple(
        off + (o - 1) * s + (k - 1) * dil + 1
        for off, o, s, k, dil in zip(offsets, out_size, stride, kernel, dilation, strict=True)
    )


@dataclasses.dataclass(frozen=True, eq=False)
class _AxisFold:
    """How one spatial axis (height or width) of the input enters the blocked layout.

    Each of ``offsets`` becomes a group of channels: blocked cell ``j`` under offset ``a``
    reads padded cell ``j*step + offsets[a]``. The convolution that remains has
    ``taps.shape[1]`` kernel positions with ``stride`` and ``dilation``; ``taps[a, q]`` is the
    original tap that position ``q`` applies under offset ``a`` (-1: none, a zero weight).
    Folds hash and compare by identity (they hold an array); the cached fold plans hand out
    the same objects for the same shape, which keys the caches built on them."""

    step: int
    offsets: tuple[int, ...]
    taps: np.ndarray  # (len(offsets), kernel) int
    stride: int
    dilation: int

    def size(self, out: int) -> int:
        """Blocked cells along the axis for ``out`` outputs."""
        return (out - 1) * self.stride + (self.taps.shape[1] - 1) * self.dilation + 1

    def extent(self, out: int) -> int:
        """Padded input cells along the axis that the blocked cells read."""
        return (self.size(out) - 1) * self.step + max(self.offsets) + 1


def _axis_folds(k: int, s: int, d: int):
    """The ways one axis may enter the blocked layout: as it is; with its taps folded into
    channels (a partial im2col: k times the data, kernel 1); or, if strided, with its stride
    phases folded into channels (space-to-depth: the same data, kernel ceil(k/s), stride 1)."""
    yield _AxisFold(1, (0,), np.arange(k)[None], s, d)
    if k > 1:
        yield _AxisFold(s, tuple(t * d for t in range(k)), np.arange(k)[:, None], 1, 1)
    if k > 1 and s > 1 and d == 1:
        t = np.arange(s)[:, None] + s * np.arange(-(-k // s))[None]
        yield _AxisFold(s, tuple(range(s)), np.where(t < k, t, -1), 1, 1)


_LANE_FMAS = {"avx512": 95, "avx2": 55}
"""G lane-FMAs per second of the blocked microkernel on 2 cores, per ``simd.ISA`` (Zen 5 and
Zen 3 machines)."""


def _fold_plan(
    geom: ConvGeometry, batch: int, channels: int, out_channels: int, out_width: int, forward: bool = False
):
    """(height fold, width fold) of a dense convolution. Few input channels fill few of the
    16 lanes; folding taps or stride phases into channels fills them (RGB, 7x7, stride 2:
    3 of 16 lanes, or 48 of 48 with the phases of both axes and the width taps folded).
    Chosen from the shape alone by a cost model of this machine: the microkernel does about
    ``_LANE_FMAS`` G lane-FMAs per second (every position of the folded kernel, every lane
    of the channel blocks: fewer than 16 channels make one narrow block of just those, and
    the ``forward`` reads just the real channels of its last block too) and the layout
    conversion writes about 1 G floats per second. Cached per shape and instruction set
    (callers only read the folds)."""
    return _cached_fold_plan(geom, batch, channels, out_channels, out_width, forward, simd.ISA)


@functools.lru_cache(maxsize=256)
def _cached_fold_plan(geom, batch, channels, out_channels, out_width, forward, isa):
    (od, oh, _), (kd, sd, dd) = geom.out_size, (geom.kernel[0], geom.stride[0], geom.dilation[0])
    depth = (od - 1) * sd + (kd - 1) * dd + 1
    out_blocks = blocked.blocks(out_channels)
    outputs = batch * od * oh * out_width * out_blocks * LANES
    rate = _LANE_FMAS[isa]

    def cost(folds):
        fh, fw = folds
        folded = channels * len(fh.offsets) * len(fw.offsets)
        stored = folded if folded < LANES else blocked.blocks(folded) * LANES
        lanes = folded if forward else stored
        fmas = outputs * lanes * kd * fh.taps.shape[1] * fw.taps.shape[1]
        if not forward:  # the weight gradient's register tile depends on the folded shape
            fmas /= conv_dense.weight_speed(out_blocks, fw.taps.shape[1], min(stored, LANES))
        return fmas / rate + batch * stored * depth * fh.size(oh) * fw.size(out_width)

    axes = zip(geom.kernel[1:], geom.stride[1:], geom.dilation[1:], strict=True)
    return min(itertools.product(*(_axis_folds(*a) for a in axes)), key=cost)


def _folded_input(x, geom: ConvGeometry, folds, out_width: int):
    """The blocked input of ``geom`` under ``folds`` (height, width), gathered in one pass
    from x (N, C, D, H, W): blocked channel (c*nh + a)*nw + b is input channel c under
    height offset a and width offset b, fewer than 16 of them in one narrow block of just
    that many lanes; and the geometry of the equivalent convolution."""
    maps, tables, steps, size, plain, unit = _folded_plan(geom, folds, out_width, range(x.shape[1]))
    xb = blocked.to_blocked_folded(layout.contiguous(x), maps, *tables, steps, size, narrow=True, plain=plain)
    return xb, unit


@functools.lru_cache(maxsize=256)
def _folded_plan(geom: ConvGeometry, folds, out_width: int, channels: range):
    """(maps, (source channel, height offset, width offset) per blocked channel, steps,
    blocked size, nothing folded, unfolded geometry) of ``_folded_input``: shapes only,
    cached (folds come from the cached fold plans; they hash by identity)."""
    (fh, fw), c = folds, len(channels)
    (od, oh, _), (kd, sd, dd) = geom.out_size, (geom.kernel[0], geom.stride[0], geom.dilation[0])
    nh, nw = len(fh.offsets), len(fw.offsets)
    src_c = np.repeat(np.arange(channels.start, channels.stop), nh * nw)
    off_h = np.tile(np.repeat(np.array(fh.offsets), nw), c)
    off_w = np.tile(np.array(fw.offsets), c * nh)
    size = ((od - 1) * sd + (kd - 1) * dd + 1, fh.size(oh), fw.size(out_width))
    maps = layout.index_maps(
        geom.in_size, geom.pad_lo, (size[0], fh.extent(oh), fw.extent(out_width)), geom.padding_mode
    )
    unit = ConvGeometry(
        stride=(sd, fh.stride, fw.stride),
        pad_lo=(0, 0, 0),
        pad_hi=(0, 0, 0),
        dilation=(dd, fh.dilation, fw.dilation),
        groups=1,
        in_size=size,
        kernel=(kd, fh.taps.shape[1], fw.taps.shape[1]),
        out_size=geom.out_size,
    )
    plain = nh * nw == 1 and not (fh.offsets[0] or fw.offsets[0])
    return maps, (src_c, off_h, off_w), (fh.step, fw.step), size, plain, unit


def _folded(folds) -> bool:
    return any(len(f.offsets) > 1 for f in folds)


@functools.lru_cache(maxsize=256)
def _fold_index(shape, folds) -> np.ndarray:
    """For each weight of the folded convolution (O, C*nh*nw, KD, KHq, KWq), the flat index of
    the weight of w (O, C, KD, KH, KW) that it is, or w.size for a zero weight. Shapes only,
    cached (callers only read; folds hash by identity)."""
    (fh, fw), (o, c, kd, kh, kw), size = folds, shape, math.prod(shape)
    th = np.where(fh.taps < 0, kh, fh.taps)  # (nh, KHq); tap kh: a zero cell
    tw = np.where(fw.taps < 0, kw, fw.taps)  # (nw, KWq)
    index = np.full((o, c, kd, kh + 1, kw + 1), size, np.int64)
    index[:, :, :, :-1, :-1] = np.arange(size).reshape(shape)
    folded = index[:, :, :, th[:, None, :, None], tw[None, :, None, :]]  # (O, C, KD, nh, nw, KHq, KWq)
    return np.ascontiguousarray(folded.transpose(0, 1, 3, 4, 2, 5, 6)).reshape(o, -1, kd, *folded.shape[5:])


@functools.lru_cache(maxsize=256)
def _unfold_index(shape, folds) -> np.ndarray:
    """For each weight of w (O, C, KD, KH, KW), flat, the flat index of the folded weight that
    applies it: each original tap is exactly one folded weight. Cached."""
    index = _fold_index(shape, folds).reshape(-1)
    real = np.flatnonzero(index < math.prod(shape))
    inverse = np.empty(math.prod(shape), np.int64)
    inverse[index[real]] = real
    if real.size != inverse.size or np.unique(index[real]).size != real.size:
        raise RuntimeError(f"internal error: a fold of {shape} does not apply each tap once")
    return inverse


def _fold_weight(w, folds):
    """w (O, C, KD, KH, KW) -> the weight of the folded convolution (O, C*nh*nw, KD, KHq, KWq):
    one gather (``_fold_index``) from w and a zero."""
    if not _folded(folds):
        return w
    return np.append(w.reshape(-1), np.float32(0)).take(_fold_index(w.shape, folds))


def _unfold_weight(dw, dw_folded, folds) -> None:
    """dw (O, C, KD, KH, KW) <- the gradient with respect to ``_fold_weight(w, folds)``: each
    original tap's is one folded weight's (``_unfold_index``); the zero weights' are dropped."""
    if not _folded(folds):
        dw[...] = dw_folded
        return
    dw[...] = dw_folded.reshape(-1).take(_unfold_index(dw.shape, folds)).reshape(dw.shape)


def conv_forward(out, x, w, bias, geom: ConvGeometry) -> None:
    """out (N, O, OD, OH, OW) <- conv(x (N, C, D, H, W), w (O, C/g, KD, KH, KW)) + bias."""
    if _is_depthwise(geom, x.shape[1], out.shape[1]):
        conv_depthwise.forward(out, x, w, bias, geom)
        return
    if _is_grouped(geom, x.shape[1], out.shape[1]):
        group, g = _ungrouped(geom), geom.groups
        if not _pointwise(group):  # every group in one call: the groups of an image as images
            dense = out if out.flags.c_contiguous else np.empty(out.shape, np.float32)
            if _paired(geom, x.shape[1], out.shape[1], out.shape[1]):
                _forward_pairs(dense, x, w, bias, group, g)
            elif _flat("forward", group, out.shape[1] // g, x.shape[1] // g):
                conv_flat.forward(dense, x, w, bias, group, groups=g)
            else:
                _forward_blocked(dense, x, w, bias, group, groups=g)
            if dense is not out:
                out[...] = dense
            return
        for cs, os in _groups(geom, x.shape[1], out.shape[1]):  # pointwise: a row of pixels each
            part = np.empty((out.shape[0], len(os), *out.shape[2:]), np.float32)
            conv_forward(
                part, x[:, _span(cs)], w[_span(os)], None if bias is None else bias[_span(os)], group
            )
            out[:, _span(os)] = part
        return
    if _pointwise(geom):
        shape = (*out.shape[:2], 1, 1, math.prod(out.shape[2:]))
        rows = out.reshape(shape) if out.flags.c_contiguous else np.empty(shape, np.float32)
        conv_forward(rows, _pixels(x, geom), w, bias, _row_geometry(geom))
        if not out.flags.c_contiguous:
            out[...] = rows.reshape(out.shape)
        return
    if _flat("forward", geom, out.shape[1], x.shape[1]):
        conv_flat.forward(out, x, w, bias, geom)
        return
    _forward_blocked(out, x, w, bias, geom)


def _paired(geom: ConvGeometry, in_channels: int, out_channels: int, made: int) -> bool:
    """Whether a grouped pass runs two groups per 16-lane block (``_forward_pairs``, and the
    input gradient's ``pairs``): an even number of groups, each making 8 of the ``made``
    channels of the result (the forward's outputs, the input gradient's inputs). One group's
    8 would fill half a block, the other lanes computing zeros; a pair fills it."""
    return (
        config.CONV_ALGORITHM in ("auto", "blocked")
        and _is_grouped(geom, in_channels, out_channels)
        and geom.groups % 2 == 0
        and made == 8 * geom.groups
    )


def _paired_input(x, geom: ConvGeometry, groups: int, out_width: int) -> np.ndarray:
    """x (N, C, ...) of a grouped pass in the blocked layout of pairs of groups (two groups
    per image, ``blocked.to_blocked_pairs``), padded by ``geom`` (one group's) as far as rows of
    ``out_width`` outputs read: the forward's and the weight gradient's input."""
    out_size = (*geom.out_size[:2], out_width)
    extent = _extents(out_size, geom.kernel, geom.stride, geom.dilation)
    maps = layout.index_maps(geom.in_size, geom.pad_lo, extent, geom.padding_mode)
    x2 = layout.group_images(layout.contiguous(x), groups // 2)
    return blocked.to_blocked_pairs(x2, maps, x.shape[1] // groups)


def _forward_pairs(out, x, w, bias, geom: ConvGeometry, groups: int) -> None:
    """out (N, 8*groups, ...) <- the grouped conv of x with w (8*groups, C/groups, ...) + bias,
    two groups per image of the blocked kernels (``geom`` one group's, out C-contiguous)."""
    xb = _paired_input(x, geom, groups, conv_dense.plan_width(LANES, out.shape[4]))
    out2 = layout.group_images(out, groups // 2)
    conv_dense.run_blocked(out2, xb, w, bias, geom.stride, geom.dilation, groups=groups // 2, pairs=True)


def _forward_blocked(out, x, w, bias, geom: ConvGeometry, groups: int = 1) -> None:
    """out <- conv(x, w (O', C', ...)) + bias on the blocked kernels; with ``groups``
    (``geom`` one group's, out C-contiguous) every group in one call: the groups of an image
    are images of their own (x, out reshaped to (N*groups, C/groups, ...))."""
    if groups > 1:
        x, out = layout.group_images(layout.contiguous(x), groups), layout.group_images(out, groups)
    owp = conv_dense.plan_width(out.shape[1], out.shape[4])
    folds = _fold_plan(geom, x.shape[0], w.shape[1], out.shape[1], owp, forward=True)
    xb, geom = _folded_input(x, geom, folds, owp)
    w = _fold_weight(w, folds)
    conv_dense.run_blocked(out, xb, w, bias, geom.stride, geom.dilation, groups=groups)


def _phase_taps(r: int, stride: int, dil: int, lo: int, k: int):
    """The taps of one axis that reach input cells ``r, r + stride, ...``.

    Input cell ``i = r + stride*j`` is read by output ``o`` at tap ``t`` iff
    ``o*stride + t*dil = i + lo``. Solutions form a progression ``t = t0 + m*step_t`` with
    ``o = j + q0 - m*step_o``, so each phase is a stride-1 convolution of grad_output with
    dilation ``step_o``. Returns (t0, step_t, n_taps, step_o, q0), or None if no tap does.
    """
    g = math.gcd(stride, dil)
    step_t, step_o = stride // g, dil // g
    t0 = next((t for t in range(min(step_t, k)) if (r + lo - t * dil) % stride == 0), None)
    if t0 is None:
        return None
    return t0, step_t, len(range(t0, k, step_t)), step_o, (r + lo - t0 * dil) // stride


@functools.lru_cache(maxsize=256)
def _adjoint_phases(in_size, stride, dilation, pad_lo, kernel):
    """The stride phases of the adjoint, from shapes alone (cached): (dead, phases, taps, lo).
    dead: the cells (start, step) of the phases no tap reaches; per phase that has cells,
    ``(cells, kernel, start, dilation)`` of its stride-1 convolution and its taps (one range
    per axis, reversed: the kernel flipped); lo: dy's zero padding below, enough for every
    phase (a phase reads from ``start = lo - its own padding``)."""
    dead, live = [], []
    for phase in itertools.product(*(range(s) for s in stride)):
        cells = (phase, stride)
        taps = [_phase_taps(*a) for a in zip(phase, stride, dilation, pad_lo, kernel, strict=True)]
        if None in taps:
            dead.append(cells)
        elif all(r < n for r, n in zip(phase, in_size, strict=True)):
            live.append((cells, taps, tuple((m - 1) * so - q0 for _, _, m, so, q0 in taps)))
    lo = tuple(max(0, *axis) for axis in zip(*(pad for _, _, pad in live), strict=True)) if live else None
    phases, flipped = [], []
    for cells, taps, pad in live:
        flipped.append(tuple(range(t0 + (m - 1) * st, t0 - 1, -st) for t0, st, m, _, _ in taps))
        start = tuple(a - p for a, p in zip(lo, pad, strict=True))
        phases.append((cells, tuple(t[2] for t in taps), start, tuple(t[3] for t in taps)))
    return tuple(dead), tuple(phases), tuple(flipped), lo


def _backward_input_zeros(
    dx, dy, w, stride, dilation, pad_lo, flat: bool, groups: int = 1, pairs: bool = False
) -> None:
    """dx (N, C, D, H, W) <- the adjoint of a zero-padded conv, by stride phases, each a
    stride-1 convolution of dy padded by ``lo`` (enough for every phase) with the phase's taps
    of the adjoint weight, flipped: on the pixel-vectorised kernels if ``flat`` (dy flattened
    once), else the channel-blocked ones (dy converted once, every phase in one launch). With
    ``groups`` (w (O, C/groups, ...), dx C-contiguous) every group in one call: the groups of
    an image are images of their own; with ``pairs`` (C = 8 per group, an even number of
    groups) two groups per image, their channels in pairs (``blocked.to_blocked_pairs``)."""
    dead, phases, flipped, lo = _adjoint_phases(dx.shape[2:], stride, dilation, pad_lo, w.shape[2:])
    for cells in dead:  # no tap reaches these cells
        blocked.phase_view(dx, cells)[...] = 0
    if not phases:
        return
    if flat:
        weights = [blocked.adjoint_taps(w, taps, groups) for taps in flipped]  # (C, O/groups, ...)
        conv_flat.backward_phases(dx, dy, weights, phases, lo, groups)
        return
    images = groups // 2 if pairs else groups  # each image one group, or two
    if groups > 1:
        dx, dy = layout.group_images(dx, images), layout.group_images(layout.contiguous(dy), images)
    owp = conv_dense.plan_width(LANES if pairs else w.shape[1], -(-dx.shape[4] // stride[2]))
    maps = _adjoint_maps(dx.shape[2:], dy.shape[2:], phases, lo, owp)
    if pairs:
        dyb = blocked.to_blocked_pairs(layout.contiguous(dy), maps, w.shape[0] // groups)
    else:
        dyb = blocked.to_blocked(layout.contiguous(dy), maps)
    unit_dilation = phases[0][3]  # every phase's: an axis's does not depend on the phase
    reads = tuple((cells, start) for cells, _, start, _ in phases)
    conv_dense.run_blocked_phases(dx, dyb, w, flipped, reads, unit_dilation, groups=images, pairs=pairs)


@functools.lru_cache(maxsize=256)
def _adjoint_maps(in_size, out_size, phases, lo, owp):
    """Index maps of dy (OD, OH, OW) for the blocked adjoint: zero-padded by ``lo`` below and
    as far as the phases read, each ``owp`` (the padded output width) wide. Cached."""
    ext = []
    for cells, kernel, first, dil in phases:
        size = blocked.phase_size(in_size, cells)
        ext.append(_extents((*size[:2], owp), kernel, (1, 1, 1), dil, first))
    return layout.index_maps(out_size, lo, tuple(map(max, zip(*ext, strict=True))), "zeros")


def conv_backward_input(dx, dy, w, geom: ConvGeometry) -> None:
    """dx (N, C, D, H, W) <- d loss / d x: per stride phase, a stride-1 SIMD convolution of
    dy (N, O, OD, OH, OW) with the phase's taps of the adjoint weight, flipped.
    Other padding modes: the gradient of the padded input, folded back onto x."""
    if _is_depthwise(geom, dx.shape[1], dy.shape[1]):
        conv_depthwise.backward_input(dx, dy, w, geom)
        return
    if _is_grouped(geom, dx.shape[1], dy.shape[1]):
        group, g = _ungrouped(geom), geom.groups
        if geom.padding_mode == "zeros" and not _pointwise(group):  # every group in one call
            dense = dx if dx.flags.c_contiguous else np.empty(dx.shape, np.float32)
            pairs = _paired(geom, dx.shape[1], dy.shape[1], dx.shape[1])
            flat = not pairs and _flat("backward_input", group, dx.shape[1] // g, dy.shape[1] // g)
            _backward_input_zeros(
                dense, dy, w, geom.stride, geom.dilation, geom.pad_lo, flat, groups=g, pairs=pairs
            )
            if dense is not dx:
                dx[...] = dense
            return
        for cs, os in _groups(geom, dx.shape[1], dy.shape[1]):
            part = np.empty((dx.shape[0], len(cs), *dx.shape[2:]), np.float32)
            conv_backward_input(part, dy[:, _span(os)], w[_span(os)], group)
            dx[:, _span(cs)] = part
        return
    if _pointwise(geom):
        shape = (*dx.shape[:2], 1, 1, math.prod(dy.shape[2:]))
        direct = _reads_all(geom) and dx.flags.c_contiguous
        rows = dx.reshape(shape) if direct else np.empty(shape, np.float32)
        conv_backward_input(rows, _as_row(dy), w, _row_geometry(geom))
        if not direct:  # the cells no stride reaches are zero
            layout.upsample(dx, rows.reshape(*dx.shape[:2], *dy.shape[2:]), geom.stride)
        return
    flat = _flat("backward_input", geom, dx.shape[1], dy.shape[1])
    if geom.padding_mode == "zeros":
        _backward_input_zeros(dx, dy, w, geom.stride, geom.dilation, geom.pad_lo, flat)
        return
    dxp = np.empty(dx.shape[:2] + layout.extents(geom), np.float32)
    _backward_input_zeros(dxp, dy, w, geom.stride, geom.dilation, (0, 0, 0), flat)
    layout.fold_padded_grad(dx, dxp, geom)


@functools.lru_cache(maxsize=256)
def _identity_maps(size) -> tuple[np.ndarray, ...]:
    """Index maps that read every cell of ``size`` once, in order; cached (callers only read)."""
    return tuple(np.arange(n, dtype=np.int64) for n in size)


def conv_backward_weight(dw, dy, x, geom: ConvGeometry) -> None:
    """dw (O, C/g, KD, KH, KW) <- sum over n and outputs of dy (N, O, OD, OH, OW) x x_padded."""
    if _is_depthwise(geom, x.shape[1], dy.shape[1]):
        conv_depthwise.backward_weight(dw, dy, x, geom)
        return
    if _is_grouped(geom, x.shape[1], dy.shape[1]):
        group, g = _ungrouped(geom), geom.groups
        if _paired(geom, x.shape[1], dy.shape[1], dy.shape[1]) and not _pointwise(group):
            _backward_weight_pairs(dw, dy, x, group, g)
            return
        if _blocked("backward_weight", group, dy.shape[1] // g, x.shape[1] // g):
            _backward_weight_blocked(dw, dy, x, group, groups=g)  # every group in one call
            return
        for cs, os in _groups(geom, x.shape[1], dy.shape[1]):
            conv_backward_weight(dw[_span(os)], dy[:, _span(os)], x[:, _span(cs)], group)
        return
    if _pointwise(geom):
        row = _row_geometry(geom)
        conv_backward_weight(dw, _as_row(dy), _pixels(x, geom), row)
        return
    if _flat("backward_weight", geom, dy.shape[1], x.shape[1]):
        conv_flat.backward_weight(dw, dy, x, geom)
        return
    _backward_weight_blocked(dw, dy, x, geom)


def _backward_weight_pairs(dw, dy, x, geom: ConvGeometry, groups: int) -> None:
    """dw (8*groups, C/groups, ...) <- the weight gradient of a grouped conv with 8 outputs per
    group, two groups per image (``_paired``; ``geom`` one group's), nothing folded."""
    dy2 = layout.group_images(layout.contiguous(dy), groups // 2)
    dyb = blocked.to_blocked_pairs(dy2, _identity_maps(dy.shape[2:]), 8, slot="grad")
    xb = _paired_input(x, geom, groups, dy.shape[4])
    conv_dense.backward_weight_blocked(dw, dyb, xb, geom.stride, geom.dilation, groups // 2, pairs=True)


def _backward_weight_blocked(dw, dy, x, geom: ConvGeometry, groups: int = 1) -> None:
    """dw (O', C', ...) <- the weight gradient on the blocked kernels; with ``groups``
    (``geom`` one group's) every group in one call: the groups of an image are images of
    their own (x, dy reshaped to (N*groups, C/groups, ...)), each summed into its own rows
    of dw."""
    x, dy = layout.contiguous(x), layout.contiguous(dy)
    if groups > 1:
        x, dy = layout.group_images(x, groups), layout.group_images(dy, groups)
    dyb = blocked.to_blocked(dy, _identity_maps(dy.shape[2:]), slot="grad")
    folds = _fold_plan(geom, x.shape[0], dw.shape[1], dy.shape[1], dy.shape[4])
    xb, unit = _folded_input(x, geom, folds, dy.shape[4])
    folded_channels = dw.shape[1] * len(folds[0].offsets) * len(folds[1].offsets)
    dw_folded = np.empty((dw.shape[0], folded_channels, *unit.kernel), np.float32)
    conv_dense.backward_weight_blocked(dw_folded, dyb, xb, unit.stride, unit.dilation, groups)
    _unfold_weight(dw, dw_folded, folds)
