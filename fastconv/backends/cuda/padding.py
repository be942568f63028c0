"""Padding modes on the GPU, without a padded copy.

``source`` maps an unpadded coordinate (possibly outside ``[0, n)``) to the input cell it
reads under a ``padding_mode``, or -1 for a zero; the GEMM loaders call it per element,
so every mode costs one gather. ``fold`` is the adjoint for the input gradient: each input
cell sums the padded-gradient cells that read it (at most three ranges per axis), so
no two threads write one cell and no atomics are needed.
"""

from __future__ import annotations

from numba import cuda, int64

from .device import grid_stride, launch_1d

MODES = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3}


@cuda.jit(device=True)
def source(i, n, mode):
    # input index (0 <= . < n) read at coordinate i of a padded axis, or -1 for zero padding
    if i >= 0 and i < n:
        return i
    if mode == 0:
        return -1
    if mode == 1:  # reflect: padding < n, one bounce
        return -i if i < 0 else 2 * (n - 1) - i
    if mode == 2:  # replicate
        return 0 if i < 0 else n - 1
    return i + n if i < 0 else i - n  # circular: padding <= n


@cuda.jit(device=True)
def readers(i, n, lo, extent, mode, part):
    # range [a, b) of padded cells (of extent) that read input cell i: part 0 left pad, 1 centre, 2 right pad
    a = int64(0)
    b = int64(0)
    if part == 1:
        a = i + lo
        b = a + 1
    elif mode == 1:  # reflect
        if part == 0 and i >= 1:
            a = lo - i
            b = a + 1
        elif part == 2 and i <= n - 2:
            a = lo + 2 * (n - 1) - i
            b = a + 1
    elif mode == 2:  # replicate: the edge cells take every padded cell beyond them
        if part == 0 and i == 0:
            b = lo
        elif part == 2 and i == n - 1:
            a = lo + n
            b = extent
    elif mode == 3:  # circular
        a = i + lo + (n if part == 2 else -n)
        b = a + 1
    return max(a, 0), min(b, extent)


@cuda.jit
def _fold_kernel(dx, dxp, lo_d, lo_h, lo_w, mode, zero):
    # dx (N, C, D, H, W) <- sum of the cells of dxp (N, C, Ed, Eh, Ew) that read each cell
    N, C, D, H, W = dx.shape
    Ed, Eh, Ew = dxp.shape[2], dxp.shape[3], dxp.shape[4]
    total = N * C * D * H * W
    j, step = grid_stride()
    while j < total:
        t = j
        iw = t % W
        t //= W
        ih = t % H
        t //= H
        i_d = t % D
        t //= D
        c = t % C
        n = t // C
        acc = zero
        for part_d in range(3):
            a_d, b_d = readers(i_d, D, lo_d, Ed, mode, part_d)
            for pd in range(a_d, b_d):
                for part_h in range(3):
                    a_h, b_h = readers(ih, H, lo_h, Eh, mode, part_h)
                    for ph in range(a_h, b_h):
                        for part_w in range(3):
                            a_w, b_w = readers(iw, W, lo_w, Ew, mode, part_w)
                            for pw in range(a_w, b_w):
                                acc += dxp[n, c, pd, ph, pw]
        dx[n, c, i_d, ih, iw] = acc
        j += step


def fold(dx, dxp, pad_lo, mode: str) -> None:
    """dx (N, C, D, H, W) <- adjoint of padding applied to dxp (N, C, Ed, Eh, Ew)."""
    launch_1d(_fold_kernel, dx.size, dx, dxp, *pad_lo, MODES[mode], dx.dtype.type(0))
