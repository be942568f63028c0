"""Register-blocked SIMD convolution for float32, in the channel-blocked layout.

Forward: each job owns one output row of NB x 16 output channels; the microkernel keeps a
block of RW pixels x NB channel vectors (12-24 accumulators) in registers and, for every
input channel, broadcasts one input value per pixel and does NB x RW fused multiply-adds
against NB weight vectors (an outer product). Backward-input is the same kernel
on grad_output with the kernel flipped and its channel axes swapped; a strided
convolution splits into stride phases, each a stride-1 convolution with a subset of taps. Backward-weight keeps
the 16 input-channel rows of one dW tap (16 vectors of 16 output channels) in registers and
reduces over batch and output pixels; jobs split over (out block, in block, kd, kh), so no
reduction crosses threads. All orders are fixed: results are bitwise identical for any
thread count.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ...shapes import ConvGeometry
from . import blocked, codegen, layout
from .simd import LANES

# (vectors of output channels, pixels) per register block, by how many 16-channel blocks
# the output has: NB >= 2 where possible (NB = 1 halves FMA throughput: one weight vector
# per broadcast); NB * RW accumulators + NB weights + 1 broadcast fit in 32 zmm registers.
_BLOCKS = {4: 6, 2: 12, 1: 16}


def _forward_source(nb: int, rw: int) -> str:
    acc = [[f"a{j}_{i}" for i in range(rw)] for j in range(nb)]
    ind = " " * 12
    init = "\n".join(
        f"{ind}{acc[j][i]} = vload(bias, (ob0 + {j}) * 16)" for j in range(nb) for i in range(rw)
    )
    wbase = "\n".join(
        f"{ind}                wk{j} = (((((ob0 + {j}) * Cb + cb) * KD + kd) * KH + kh) * KW + kw) * 256"
        for j in range(nb)
    )
    inner = [f"{ind}                    w{j} = vload(wf, wk{j} + c * 16)" for j in range(nb)]
    for i in range(rw):
        inner.append(f"{ind}                    x = vbcast(xf, xk + c + {i} * xs)")
        inner += [f"{ind}                    {acc[j][i]} = vfma(x, w{j}, {acc[j][i]})" for j in range(nb)]
    store = []
    for j in range(nb):
        store.append(f"{ind}o = ((((n * Ob + ob0 + {j}) * OD + od) * OH + oh) * OWp + ow0) * 16")
        store += [f"{ind}vstore(of, o + {i * 16}, {acc[j][i]})" for i in range(rw)]
    return f"""

@njit(**_JIT)
def kernel(out, xb, wb, bias, sd, sh, sw, dd, dh, dw, off_d, off_h, off_w):
    # out (N, Ob, OD, OH, OWp, 16) = valid conv of xb (N, Cb, Dp, Hp, Wp, 16) from cell (off_d, off_h, off_w) with wb (Ob, Cb, KD, KH, KW, 16, 16) + bias
    # register block: {rw} output pixels x {nb} vectors of 16 output channels
    N, Ob, OD, OH, OWp = out.shape[0], out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    Cb, Dp, Hp, Wp = xb.shape[1], xb.shape[2], xb.shape[3], xb.shape[4]
    KD, KH, KW = wb.shape[2], wb.shape[3], wb.shape[4]
    xf, wf, of = xb.reshape(-1), wb.reshape(-1), out.reshape(-1)
    xs = sw * 16
    n_groups = Ob // {nb}
    for job in prange(N * n_groups * OD * OH):
        oh = job % OH
        t = job // OH
        od = t % OD
        t //= OD
        ob0 = (t % n_groups) * {nb}
        n = t // n_groups
        for ow0 in range(0, OWp, {rw}):
{init}
            for cb in range(Cb):
                for kd in range(KD):
                    for kh in range(KH):
                        xrow = (((n * Cb + cb) * Dp + off_d + od * sd + kd * dd) * Hp + off_h + oh * sh + kh * dh) * Wp + off_w
                        for kw in range(KW):
                            xk = (xrow + ow0 * sw + kw * dw) * 16
{wbase}
                            for c in range(16):
{chr(10).join(inner)}
{chr(10).join(store)}
"""


def _backward_weight_source() -> str:
    acc = [f"a{c}" for c in range(LANES)]
    ind = " " * 28
    fmas = "\n".join(f"{ind}{a} = vfma(vbcast(xf, xk + {c}), g, {a})" for c, a in enumerate(acc))
    zero = "\n".join(f"            {a} = vzero()" for a in acc)
    store = "\n".join(f"            vstore(dwf, base + {c * 16}, {a})" for c, a in enumerate(acc))
    return f"""

@njit(**_JIT)
def kernel(dwb, dyb, xb, sd, sh, sw, dd, dh, dw):
    # dwb (Ob, Cb, KD, KH, KW, 16 c, 16 o) = sum over n and outputs of dyb (N, Ob, OD, OH, OW, 16) x xb (N, Cb, Dp, Hp, Wp, 16)
    Ob, Cb, KD, KH, KW = dwb.shape[0], dwb.shape[1], dwb.shape[2], dwb.shape[3], dwb.shape[4]
    N, OD, OH, OW = dyb.shape[0], dyb.shape[2], dyb.shape[3], dyb.shape[4]
    Dp, Hp, Wp = xb.shape[2], xb.shape[3], xb.shape[4]
    dwf, dyf, xf = dwb.reshape(-1), dyb.reshape(-1), xb.reshape(-1)
    xs = sw * 16
    for job in prange(Ob * Cb * KD * KH):
        kh = job % KH
        t = job // KH
        kd = t % KD
        t //= KD
        cb = t % Cb
        ob = t // Cb
        for kw in range(KW):
{zero}
            for n in range(N):
                for od in range(OD):
                    for oh in range(OH):
                        dyrow = (((n * Ob + ob) * OD + od) * OH + oh) * OW * 16
                        xrow = ((((n * Cb + cb) * Dp + od * sd + kd * dd) * Hp + oh * sh + kh * dh) * Wp + kw * dw) * 16
                        for ow in range(OW):
                            g = vload(dyf, dyrow + ow * 16)
                            xk = xrow + ow * xs
{fmas}
            base = (((((ob * Cb + cb) * KD + kd) * KH + kh) * KW + kw)) * 256
{store}
"""


def _forward_kernel(nb: int):
    return codegen.load(f"conv_forward_nb{nb}_rw{_BLOCKS[nb]}", _forward_source(nb, _BLOCKS[nb])).kernel


def _backward_weight_kernel():
    return codegen.load("conv_backward_weight_c16", _backward_weight_source()).kernel


def supports(geom: ConvGeometry, dtype) -> bool:
    """The SIMD path covers float32, groups = 1 (grouped and depthwise stay direct)."""
    return np.dtype(dtype) == np.float32 and geom.groups == 1


def _vectors_per_block(out_blocks: int) -> tuple[int, int]:
    """(NB, padded number of output blocks)."""
    if out_blocks == 1:
        return 1, 1
    padded = out_blocks + out_blocks % 2
    return (4 if padded % 4 == 0 else 2), padded


def _maps(in_size, pad_lo, extents, mode):
    return tuple(layout.pad_map(n, lo, e, mode) for n, lo, e in zip(in_size, pad_lo, extents, strict=True))


def _plan(out_channels: int, out_width: int) -> tuple[int, int, int]:
    """(NB, padded output blocks, padded output width) of the forward register block."""
    nb, ob_padded = _vectors_per_block(blocked.blocks(out_channels))
    rw = _BLOCKS[nb]
    return nb, ob_padded, -(-out_width // rw) * rw


def _extents(out_size, kernel, stride, dilation, offsets=(0, 0, 0)):
    return tuple(
        off + (o - 1) * s + (k - 1) * dil + 1
        for off, o, s, k, dil in zip(offsets, out_size, stride, kernel, dilation, strict=True)
    )


def _conv_blocked(out, xb, w, bias, stride, dilation, offsets=(0, 0, 0)) -> None:
    """out (N, O, OD, OH, OW) = valid conv of the blocked input xb, read from ``offsets``,
    with w (O, C, KD, KH, KW) + bias (O,) or None."""
    nb, ob_padded, owp = _plan(out.shape[1], out.shape[4])
    wb = blocked.weight_to_blocked(w)
    if ob_padded != wb.shape[0]:
        wb = np.concatenate([wb, np.zeros((ob_padded - wb.shape[0], *wb.shape[1:]), np.float32)])
    ob = np.empty((out.shape[0], ob_padded, *out.shape[2:4], owp, LANES), np.float32)
    _forward_kernel(nb)(ob, xb, wb, blocked.bias_to_blocked(bias, ob_padded), *stride, *dilation, *offsets)
    blocked.from_blocked(out, ob)


def _lane_use(channels: int) -> float:
    return channels / (blocked.blocks(channels) * LANES)


def _folds_width(geom: ConvGeometry, channels: int) -> bool:
    """Few input channels fill few of the 16 lanes: fold the kernel's width taps into the
    channel axis when that fills them much better (e.g. RGB with 7 taps: 3/16 -> 21/32)."""
    kw = geom.kernel[2]
    return kw > 1 and _lane_use(channels * kw) > 1.5 * _lane_use(channels)


def _fold_width(x, geom: ConvGeometry):
    """x (N, C, D, H, W) -> x' (N, C*KW, Dp, Hp, OW) with x'[.., c*KW + kw, .., ow] =
    x_padded[.., c, .., ow*stride_w + kw*dil_w], and the geometry of the equivalent
    convolution with a (KD, KH, 1) kernel: a partial im2col along the width."""
    xp = layout.padded_input(x, geom)
    ow, kw, sw, dw = geom.out_size[2], geom.kernel[2], geom.stride[2], geom.dilation[2]
    cols = np.arange(kw)[:, None] * dw + np.arange(ow)[None, :] * sw  # (KW, OW)
    folded = xp[..., cols]  # (N, C, Dp, Hp, KW, OW)
    n, c, dp, hp = folded.shape[:4]
    folded = np.ascontiguousarray(np.moveaxis(folded, 4, 2)).reshape(n, c * kw, dp, hp, ow)
    unit = ConvGeometry(
        stride=(*geom.stride[:2], 1),
        pad_lo=(0, 0, 0),
        pad_hi=(0, 0, 0),
        dilation=(*geom.dilation[:2], 1),
        groups=1,
        in_size=folded.shape[2:],
        kernel=(*geom.kernel[:2], 1),
        out_size=geom.out_size,
    )
    return folded, unit


def _fold_weight(w):
    """w (O, C, KD, KH, KW) -> (O, C*KW, KD, KH, 1), matching ``_fold_width``."""
    o, c, kd, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(0, 1, 4, 2, 3)).reshape(o, c * kw, kd, kh, 1)


def conv_forward(out, x, w, bias, geom: ConvGeometry) -> None:
    """out (N, O, OD, OH, OW) <- conv(x (N, C, D, H, W), w (O, C, KD, KH, KW)) + bias."""
    if _folds_width(geom, x.shape[1]):
        x, geom = _fold_width(x, geom)
        w = _fold_weight(w)
    _, _, owp = _plan(out.shape[1], out.shape[4])
    ext = _extents((*geom.out_size[:2], owp), geom.kernel, geom.stride, geom.dilation)
    xb = blocked.to_blocked(layout.contiguous(x), _maps(x.shape[2:], geom.pad_lo, ext, geom.padding_mode))
    _conv_blocked(out, xb, w, bias, geom.stride, geom.dilation)


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


def _backward_input_zeros(dx, dy, w, stride, dilation, pad_lo) -> None:
    """dx (N, C, D, H, W) <- the adjoint of a zero-padded conv, one stride phase at a time;
    dy is converted to the blocked layout once, padded enough for every phase."""
    w_t = w.transpose(1, 0, 2, 3, 4)  # (C, O, KD, KH, KW): dx's channels are the outputs
    _, _, owp = _plan(dx.shape[1], -(-dx.shape[4] // stride[2]))
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
        out = np.empty(dx[index].shape, np.float32)
        offsets = tuple(a - p for a, p in zip(lo, pad, strict=True))
        _conv_blocked(out, dyb, w_phase, None, (1, 1, 1), tuple(t[3] for t in taps), offsets)
        dx[index] = out


def conv_backward_input(dx, dy, w, geom: ConvGeometry) -> None:
    """dx (N, C, D, H, W) <- d loss / d x: per stride phase, a stride-1 SIMD convolution of
    dy (N, O, OD, OH, OW) with the phase's taps of w flipped and its channel axes swapped.
    Other padding modes: the gradient of the padded input, folded back onto x."""
    if geom.padding_mode == "zeros":
        _backward_input_zeros(dx, dy, w, geom.stride, geom.dilation, geom.pad_lo)
        return
    dxp = np.empty(dx.shape[:2] + layout.extents(geom), np.float32)
    _backward_input_zeros(dxp, dy, w, geom.stride, geom.dilation, (0, 0, 0))
    layout.fold_padded_grad(dx, dxp, geom)


def conv_backward_weight(dw, dy, x, geom: ConvGeometry) -> None:
    """dw (O, C, KD, KH, KW) <- sum over n and outputs of dy (N, O, OD, OH, OW) x x_padded."""
    if _folds_width(geom, x.shape[1]):
        x_folded, unit = _fold_width(x, geom)
        o, c, kd, kh, kw = dw.shape
        dw_folded = np.empty((o, c * kw, kd, kh, 1), np.float32)
        conv_backward_weight(dw_folded, dy, x_folded, unit)
        dw[...] = dw_folded.reshape(o, c, kw, kd, kh).transpose(0, 1, 3, 4, 2)
        return
    identity = tuple(np.arange(n, dtype=np.int64) for n in dy.shape[2:])
    dyb = blocked.to_blocked(layout.contiguous(dy), identity)
    ext = layout.extents(geom)
    xb = blocked.to_blocked(layout.contiguous(x), _maps(x.shape[2:], geom.pad_lo, ext, geom.padding_mode))
    dwb = np.empty((dyb.shape[1], xb.shape[1], *dw.shape[2:], LANES, LANES), np.float32)
    _backward_weight_kernel()(dwb, dyb, xb, *geom.stride, *geom.dilation)
    blocked.weight_from_blocked(dw, dwb)
