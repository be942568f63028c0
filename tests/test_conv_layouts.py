"""Any array layout in, the same bits out; inputs never mutated; empty batches; bitwise
determinism across repeated runs and thread counts."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastconv as fc
from tests.conftest import assert_same_bits_for_thread_counts, rand

KW = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)


def _all_passes(x, w, b, dy):
    return (
        fc.conv2d(x, w, b, **KW),
        fc.conv2d_backward_input(dy, w, x.shape, **KW),
        fc.conv2d_backward_weight(dy, x, w.shape, **KW),
        fc.conv2d_backward_bias(dy),
    )


def _data(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, (3, 4, 9, 10), dtype), rand(rng, (6, 2, 3, 2), dtype), rand(rng, (6,), dtype)
    dy = rand(rng, fc.conv2d(x, w, b, **KW).shape, dtype)
    return x, w, b, dy


def _variants(a):
    """The same values as views with other memory layouts, and read-only."""
    fortran = np.asfortranarray(a)
    strided = np.repeat(a, 2, axis=-1)[..., ::2]
    flipped = np.flip(np.flip(a, -1).copy(), -1)  # negative strides
    readonly = a.copy()
    readonly.flags.writeable = False
    return {"fortran": fortran, "strided": strided, "negative": flipped, "readonly": readonly}


@pytest.mark.parametrize("kind", ["fortran", "strided", "negative", "readonly"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_layout_gives_the_same_bits_and_is_not_mutated(kind, dtype):
    x, w, b, dy = _data(dtype)
    want = _all_passes(x, w, b, dy)
    views = [_variants(a)[kind] for a in (x, w, b, dy)]
    before = [v.copy() for v in views]
    got = _all_passes(*views)
    for g, e in zip(got, want, strict=True):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, e)
    for v, orig in zip(views, before, strict=True):
        np.testing.assert_array_equal(v, orig)


def test_inputs_are_not_mutated_with_padding_modes():
    x, w, b, dy = _data(np.float64)
    copies = [a.copy() for a in (x, w, b)]
    for mode in ("zeros", "reflect", "replicate", "circular"):
        fc.conv2d(x, w, b, padding=1, groups=2, padding_mode=mode)
    for a, c in zip((x, w, b), copies, strict=True):
        np.testing.assert_array_equal(a, c)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs a machine with 2 or more cores")
def test_a_weight_tile_chosen_per_thread_count_keeps_the_bits():
    """The weight-gradient tile follows the thread count (a 16 -> 32 3x3x3 has 3 jobs at
    NB = 2, two rounds for 2 threads, and 6 at NB = 1); the order of every sum, so the bits,
    must not."""
    from fastconv.backends.cpu import conv_dense

    saved, tiles = numba.get_num_threads(), []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            tiles.append(conv_dense._weight_tile(2, 3, 16, jobs=3))
    finally:
        numba.set_num_threads(saved)
    assert tiles[0] != tiles[1]
    rng = np.random.default_rng(12)
    x, w = rand(rng, (2, 16, 5, 6, 7), np.float32), rand(rng, (32, 16, 3, 3, 3), np.float32)
    dy = rand(rng, (2, 32, 5, 6, 7), np.float32)
    assert_same_bits_for_thread_counts(3, x, w, None, dy, dict(padding=1))


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_batch(d, dtype):
    x = np.zeros((0, 4, *(5,) * d), dtype)
    w = np.ones((6, 2, *(3,) * d), dtype)
    y = getattr(fc, f"conv{d}d")(x, w, np.ones(6, dtype), padding=1, groups=2)
    assert y.shape == (0, 6, *(5,) * d) and y.dtype == dtype
    dx = getattr(fc, f"conv{d}d_backward_input")(y, w, x.shape, padding=1, groups=2)
    assert dx.shape == x.shape and dx.dtype == dtype
    dw = getattr(fc, f"conv{d}d_backward_weight")(y, x, w.shape, padding=1, groups=2)
    assert dw.shape == w.shape and dw.dtype == dtype and not np.any(dw) and not np.signbit(dw).any()
    db = getattr(fc, f"conv{d}d_backward_bias")(y)
    assert db.shape == (6,) and db.dtype == dtype and not np.any(db)


def test_repeated_runs_are_bitwise_identical():
    x, w, b, dy = _data(np.float32, seed=3)
    first = _all_passes(x, w, b, dy)
    for _ in range(3):
        for g, e in zip(_all_passes(x, w, b, dy), first, strict=True):
            np.testing.assert_array_equal(g, e)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs a machine with 2 or more cores")
@pytest.mark.parametrize(
    "c_in, c_out, stride",
    [(8, 12, 1), (20, 40, 1), (3, 24, 2)],
    ids=["pixel-vectorised", "channel-blocked", "strided-folded"],
)
def test_thread_counts_give_identical_bits(c_in, c_out, stride):
    rng = np.random.default_rng(11)
    x, w = rand(rng, (20, c_in, 15, 13), np.float32), rand(rng, (c_out, c_in, 3, 3), np.float32)
    kw = dict(padding=1, stride=stride)
    dy = rand(rng, fc.conv2d(x, w, **kw).shape, np.float32)
    assert_same_bits_for_thread_counts(2, x, w, None, dy, kw)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_unbatched_input_matches_batch_of_one(d):
    rng = np.random.default_rng(d)
    x, w = rand(rng, (3, *(6,) * d), np.float64), rand(rng, (4, 3, *(2,) * d), np.float64)
    conv = getattr(fc, f"conv{d}d")
    y = conv(x, w, padding=1)
    np.testing.assert_array_equal(y, conv(x[None], w, padding=1)[0])
    dy = rand(rng, y.shape, np.float64)
    dx = getattr(fc, f"conv{d}d_backward_input")(dy, w, x.shape, padding=1)
    np.testing.assert_array_equal(
        dx, getattr(fc, f"conv{d}d_backward_input")(dy[None], w, (1, *x.shape), padding=1)[0]
    )
    dw = getattr(fc, f"conv{d}d_backward_weight")(dy, x, w.shape, padding=1)
    np.testing.assert_array_equal(
        dw, getattr(fc, f"conv{d}d_backward_weight")(dy[None], x[None], w.shape, padding=1)
    )
    np.testing.assert_array_equal(
        getattr(fc, f"conv{d}d_backward_bias")(dy), dy.sum(axis=tuple(range(1, d + 1)))
    )


@pytest.mark.parametrize("stride", [(1, 2, 2), (2, 3, 1), (1, 1, 1)])
def test_subsample_and_upsample_are_strided_slicing_and_its_adjoint(stride):
    """``layout.subsample`` reads exactly the cells a strided 1x1 kernel reads (tails that no
    stride reaches skipped), also from a non-contiguous view; ``upsample`` writes every cell
    of its output: those cells back, zeros elsewhere."""
    from fastconv.backends.cpu import layout

    rng = np.random.default_rng(11)
    base = rand(rng, (2, 6, 5, 9, 8), np.float32)
    a = base[:, ::2]  # a channel-strided view
    out_size = tuple((n - 1) // s + 1 for n, s in zip(a.shape[2:], stride, strict=True))
    cells = (slice(None), slice(None), *(slice(0, o * s, s) for o, s in zip(out_size, stride, strict=True)))
    sub = layout.subsample(a, stride, out_size)
    assert sub.flags.c_contiguous
    np.testing.assert_array_equal(sub, a[cells])
    up = np.full(a.shape, np.nan, np.float32)
    layout.upsample(up, sub, stride)
    want = np.zeros(a.shape, np.float32)
    want[cells] = sub
    np.testing.assert_array_equal(up, want)
