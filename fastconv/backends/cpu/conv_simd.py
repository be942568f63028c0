"""SIMD convolution for float32: the channel-blocked path shared by the dense
(``conv_dense``) and depthwise (``conv_depthwise``) kernels.

Each engine provides ``plan_width``, ``run_blocked`` (a valid convolution of a blocked
input), ``adjoint_weight`` and ``backward_weight_blocked``; this module converts layouts
(padding folded into the conversion) and builds the other passes from them:
backward-input is the forward kernel on grad_output with the kernel flipped (the adjoint),
one stride phase at a time, each a stride-1 convolution with a subset of taps. All orders
are fixed: results are bitwise identical for any thread count.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from ...shapes import ConvGeometry
from . import blocked, conv_dense, conv_depthwise, layout
from .simd import LANES


def supports(geom: ConvGeometry, dtype) -> bool:
    """Every float32 convolution: dense, depthwise, or grouped (one dense one per group)."""
    return np.dtype(dtype) == np.float32


def _engine(geom: ConvGeometry):
    return conv_dense if geom.groups == 1 else conv_depthwise


def _is_grouped(geom: ConvGeometry, in_channels: int, out_channels: int) -> bool:
    """Grouped but not depthwise: run as ``groups`` dense convolutions."""
    return geom.groups > 1 and not geom.groups == in_channels == out_channels


def _group_slices(geom: ConvGeometry, in_channels: int, out_channels: int):
    cpg, opg = in_channels // geom.groups, out_channels // geom.groups
    for g in range(geom.groups):
        yield slice(g * cpg, (g + 1) * cpg), slice(g * opg, (g + 1) * opg)


def _ungrouped(geom: ConvGeometry) -> ConvGeometry:
    return dataclasses.replace(geom, groups=1)


def _maps(in_size, pad_lo, extents, mode):
    return tuple(layout.pad_map(n, lo, e, mode) for n, lo, e in zip(in_size, pad_lo, extents, strict=True))


def _extents(out_size, kernel, stride, dilation, offsets=(0, 0, 0)):
    return tuple(
        off + (o - 1) * s + (k - 1) * dil + 1
        for off, o, s, k, dil in zip(offsets, out_size, stride, kernel, dilation, strict=True)
    )


def _lane_use(channels: int) -> float:
    return channels / (blocked.blocks(channels) * LANES)


def _folded_axes(geom: ConvGeometry, channels: int) -> int:
    """How many trailing spatial axes (0; 1 = width; 2 = height and width) to fold into the
    channel axis. Few input channels fill few of the 16 lanes; folding the kernel's taps
    into channels fills them (RGB with 7x7 taps: 3/16 lanes -> 21/32 -> 147/160)."""
    kh, kw = geom.kernel[1:]
    if kw == 1 or _lane_use(channels * kw) <= 1.5 * _lane_use(channels):
        return 0
    if (
        kh > 1
        and _lane_use(channels * kw) < 0.8
        and _lane_use(channels * kh * kw) > 1.2 * _lane_use(channels * kw)
    ):
        return 2
    return 1


def _folded_input(x, geom: ConvGeometry, k: int, out_width: int):
    """The blocked input of ``geom`` with the taps of its last ``k`` spatial axes folded into
    the channels (blocked channel c*taps + t reads input channel c at tap t), gathered in one
    pass from x (N, C, D, H, W); and the geometry of the equivalent convolution, whose
    kernel is 1 on those axes."""
    c = x.shape[1]
    (od, oh, _), (sd, sh, sw), (dd, dh, dw) = geom.out_size, geom.stride, geom.dilation
    kd, kh, kw = geom.kernel
    taps_h = kh if k == 2 else 1
    src_c = np.repeat(np.arange(c), taps_h * kw)
    off_h = np.tile(np.repeat(np.arange(taps_h) * dh, kw), c)
    off_w = np.tile(np.arange(kw) * dw, taps_h * c)
    ext = _extents((od, oh, out_width), geom.kernel, geom.stride, geom.dilation)
    maps = _maps(x.shape[2:], geom.pad_lo, ext, geom.padding_mode)
    size = (ext[0], oh if k == 2 else ext[1], out_width)
    steps = (sh if k == 2 else 1, sw)
    xb = blocked.to_blocked_folded(layout.contiguous(x), maps, src_c, off_h, off_w, steps, size)
    unit = ConvGeometry(
        stride=(sd, 1 if k == 2 else sh, 1),
        pad_lo=(0, 0, 0),
        pad_hi=(0, 0, 0),
        dilation=(dd, 1 if k == 2 else dh, 1),
        groups=1,
        in_size=size,
        kernel=(kd, 1 if k == 2 else kh, 1),
        out_size=geom.out_size,
    )
    return xb, unit


def _folded_weight_shape(shape, k: int) -> tuple[int, ...]:
    """(O, C, KD, KH, KW) -> (O, C * taps, KD, [KH,] 1[, 1]), matching ``_folded_input``."""
    return (shape[0], shape[1] * math.prod(shape[5 - k :]), *shape[2 : 5 - k], *(1,) * k)


def _fold_weight(w, k: int):
    """w (O, C, KD, KH, KW) -> the weight of the folded convolution (``_folded_weight_shape``)."""
    moved = np.moveaxis(w, tuple(range(5 - k, 5)), tuple(range(2, 2 + k)))
    return np.ascontiguousarray(moved).reshape(_folded_weight_shape(w.shape, k))


def _unfold_weight(dw, dw_folded, k: int) -> None:
    """dw (O, C, KD, KH, KW) <- the gradient with respect to ``_fold_weight(w, k)``."""
    moved_shape = (*dw.shape[:2], *dw.shape[5 - k :], *dw.shape[2 : 5 - k])
    dw[...] = np.moveaxis(dw_folded.reshape(moved_shape), tuple(range(2, 2 + k)), tuple(range(5 - k, 5)))


def conv_forward(out, x, w, bias, geom: ConvGeometry) -> None:
    """out (N, O, OD, OH, OW) <- conv(x (N, C, D, H, W), w (O, C/g, KD, KH, KW)) + bias."""
    if _is_grouped(geom, x.shape[1], out.shape[1]):
        for cs, os in _group_slices(geom, x.shape[1], out.shape[1]):
            part = np.empty((out.shape[0], os.stop - os.start, *out.shape[2:]), np.float32)
            conv_forward(part, x[:, cs], w[os], None if bias is None else bias[os], _ungrouped(geom))
            out[:, os] = part
        return
    engine = _engine(geom)
    owp = engine.plan_width(out.shape[1], out.shape[4])
    k = _folded_axes(geom, x.shape[1]) if engine is conv_dense else 0
    if k:
        xb, geom = _folded_input(x, geom, k, owp)
        w = _fold_weight(w, k)
    else:
        ext = _extents((*geom.out_size[:2], owp), geom.kernel, geom.stride, geom.dilation)
        xb = blocked.to_blocked(layout.contiguous(x), _maps(x.shape[2:], geom.pad_lo, ext, geom.padding_mode))
    engine.run_blocked(out, xb, w, bias, geom.stride, geom.dilation, (0, 0, 0))


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


def _backward_input_zeros(engine, dx, dy, w, stride, dilation, pad_lo) -> None:
    """dx (N, C, D, H, W) <- the adjoint of a zero-padded conv, one stride phase at a time;
    dy is converted to the blocked layout once, padded enough for every phase."""
    w_t = engine.adjoint_weight(w)
    owp = engine.plan_width(dx.shape[1], -(-dx.shape[4] // stride[2]))
    live = []
    for phase in itertools.product(*(range(s) for s in stride)):
        index = (slice(None), slice(None), *(slice(r, None, s) for r, s in zip(phase, stride, strict=True)))
        taps = [_phase_taps(*a) for a in zip(phase, stride, dilation, pad_lo, w.shape[2:], strict=True)]
        if None in taps:
            dx[index] = 0  # no tap reaches these cells
        elif dx[index].size:
            live.append((index, taps, tuple((m - 1) * so - q0 for _, _, m, so, q0 in taps)))
    if not live:
        return
    lo = tuple(max(0, *axis) for axis in zip(*(pad for _, _, pad in live), strict=True))
    ext = [
        _extents(
            (*dx[index].shape[2:4], owp),
            [t[2] for t in taps],
            (1, 1, 1),
            [t[3] for t in taps],
            tuple(a - p for a, p in zip(lo, pad, strict=True)),
        )
        for index, taps, pad in live
    ]
    dyb = blocked.to_blocked(
        layout.contiguous(dy), _maps(dy.shape[2:], lo, tuple(map(max, zip(*ext, strict=True))), "zeros")
    )
    for index, taps, pad in live:
        sub = tuple(slice(t0, t0 + (m - 1) * st + 1, st) for t0, st, m, _, _ in taps)
        w_phase = np.ascontiguousarray(np.flip(w_t[(slice(None), slice(None), *sub)], axis=(2, 3, 4)))
        offsets = tuple(a - p for a, p in zip(lo, pad, strict=True))
        phase = tuple(sl.start for sl in index[2:]), tuple(sl.step for sl in index[2:])
        engine.run_blocked(dx, dyb, w_phase, None, (1, 1, 1), tuple(t[3] for t in taps), offsets, phase)


def conv_backward_input(dx, dy, w, geom: ConvGeometry) -> None:
    """dx (N, C, D, H, W) <- d loss / d x: per stride phase, a stride-1 SIMD convolution of
    dy (N, O, OD, OH, OW) with the phase's taps of the adjoint weight, flipped.
    Other padding modes: the gradient of the padded input, folded back onto x."""
    if _is_grouped(geom, dx.shape[1], dy.shape[1]):
        for cs, os in _group_slices(geom, dx.shape[1], dy.shape[1]):
            part = np.empty((dx.shape[0], cs.stop - cs.start, *dx.shape[2:]), np.float32)
            conv_backward_input(part, dy[:, os], w[os], _ungrouped(geom))
            dx[:, cs] = part
        return
    engine = _engine(geom)
    if geom.padding_mode == "zeros":
        _backward_input_zeros(engine, dx, dy, w, geom.stride, geom.dilation, geom.pad_lo)
        return
    dxp = np.empty(dx.shape[:2] + layout.extents(geom), np.float32)
    _backward_input_zeros(engine, dxp, dy, w, geom.stride, geom.dilation, (0, 0, 0))
    layout.fold_padded_grad(dx, dxp, geom)


def conv_backward_weight(dw, dy, x, geom: ConvGeometry) -> None:
    """dw (O, C/g, KD, KH, KW) <- sum over n and outputs of dy (N, O, OD, OH, OW) x x_padded."""
    if _is_grouped(geom, x.shape[1], dy.shape[1]):
        for cs, os in _group_slices(geom, x.shape[1], dy.shape[1]):
            conv_backward_weight(dw[os], dy[:, os], x[:, cs], _ungrouped(geom))
        return
    engine = _engine(geom)
    identity = tuple(np.arange(n, dtype=np.int64) for n in dy.shape[2:])
    dyb = blocked.to_blocked(layout.contiguous(dy), identity, slot="grad")
    k = _folded_axes(geom, x.shape[1]) if engine is conv_dense else 0
    if k:
        xb, unit = _folded_input(x, geom, k, dy.shape[4])
        dw_folded = np.empty(_folded_weight_shape(dw.shape, k), np.float32)
        engine.backward_weight_blocked(dw_folded, dyb, xb, unit.stride, unit.dilation)
        _unfold_weight(dw, dw_folded, k)
        return
    ext = layout.extents(geom)
    xb = blocked.to_blocked(layout.contiguous(x), _maps(x.shape[2:], geom.pad_lo, ext, geom.padding_mode))
    engine.backward_weight_blocked(dw, dyb, xb, geom.stride, geom.dilation)
