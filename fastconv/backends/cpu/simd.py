"""A 16-lane float32 vector for Numba kernels: ``<16 x float>`` in LLVM, a zmm register on
AVX-512 (two ymm on AVX2 machines, where LLVM splits it; results are the same).

Kernels hold a register block of these as plain local variables; LLVM keeps them in
registers. Memory is addressed as (flat array, element index): no bounds or wraparound
checks, so callers index only what they allocated.

How many such values fit in registers depends on the instruction set Numba compiles for
(``ISA``): 32 zmm registers on AVX-512, but only 16 ymm on AVX2, where each vector takes
two. The kernel generators size their register blocks from ``ISA``, so that an AVX2
machine gets blocks that fit its registers instead of blocks that spill to the stack.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core import config as numba_config
from numba.extending import intrinsic, models, register_model

LANES = 16

U64 = np.uint64
"""Cast of an array subscript in a kernel: Numba wraps a signed index that may be negative,
and that code stops LLVM vectorising a copy loop (a plane copy 5-7x slower on the Zen 3
machine). Cast only the final index: uint64 mixed with int64 arithmetic gives float64."""


def _isa() -> str:
    """``"avx512"`` where Numba compiles for a CPU with AVX-512F, else ``"avx2"`` (AVX2 and
    anything older: the smaller register file). Numba's ``NUMBA_CPU_NAME`` and
    ``NUMBA_CPU_FEATURES`` override the host, as they do for its own code generation."""
    if numba_config.CPU_FEATURES is not None:
        return "avx512" if "+avx512f" in numba_config.CPU_FEATURES.split(",") else "avx2"
    if numba_config.CPU_NAME not in (None, "host"):
        return "avx2"  # a named (generic or older) target: assume the smaller register file
    return "avx512" if llvm.get_host_cpu_features().get("avx512f", False) else "avx2"


ISA = _isa()
"""The register file the generated kernels are sized for: ``"avx512"`` or ``"avx2"``."""

REGISTERS = {"avx512": 32, "avx2": 16}
"""Vector registers of each instruction set (zmm, ymm)."""
PER_VECTOR = {"avx512": 1, "avx2": 2}
"""Registers one 16-lane vector occupies."""


def fits(vectors: int) -> bool:
    """Whether ``vectors`` 16-lane values (accumulators and loaded operands) and one
    broadcast (one register on either instruction set) fit in the registers of ``ISA``."""
    return PER_VECTOR[ISA] * vectors + 1 <= REGISTERS[ISA]


_VEC = ir.VectorType(ir.FloatType(), LANES)
_SPLAT = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
_PAIRS = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0, 1] * (LANES // 2))
_EVEN_ODD = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [*range(0, LANES, 2), *range(1, LANES, 2)])


class F32x16Type(types.Type):
    def __init__(self):
        super().__init__(name="f32x16")


f32x16 = F32x16Type()


@register_model(F32x16Type)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _element_ptr(context, builder, arrty, arr, idx):
    return builder.gep(context.make_array(arrty)(context, builder, arr).data, [idx])


@intrinsic
def vload(typingctx, arr, idx):
    """arr[idx : idx + 16] as a vector."""

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], *args)
        return builder.load(builder.bitcast(ptr, _VEC.as_pointer()), align=4)

    return f32x16(arr, idx), codegen


@intrinsic
def vstore(typingctx, arr, idx, vec):
    """arr[idx : idx + 16] = vec."""

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(ptr, _VEC.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.void(arr, idx, vec), codegen


@intrinsic
def vstream(typingctx, arr, idx, vec):
    """arr[idx : idx + 16] = vec as a non-temporal store, which writes the line to memory
    without reading it first (a 12.8 MB parallel copy: 1.26-1.41 -> 0.79-0.98 ms) and leaves
    it out of the caches. The address of arr[idx] must be a multiple of 64 bytes; the
    stores are ordered for other threads only after a ``fence``."""

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        store = builder.store(args[2], builder.bitcast(ptr, _VEC.as_pointer()), align=64)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.void(arr, idx, vec), codegen


@intrinsic
def fence(typingctx):
    """A full memory fence (``mfence`` on x86): the ``vstream`` stores before it reach memory
    before any later load or store."""

    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def to_line(typingctx, arr, idx):
    """How many elements from arr[idx] to the next 64-byte boundary of memory (0 to 15, for
    4-byte elements), where ``vstream`` may start."""

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        i64 = ir.IntType(64)
        cells = builder.lshr(builder.ptrtoint(ptr, i64), ir.Constant(i64, 2))
        return builder.and_(builder.neg(cells), ir.Constant(i64, LANES - 1))

    return types.int64(arr, idx), codegen


@intrinsic
def vbcast(typingctx, arr, idx):
    """arr[idx] in all 16 lanes (one vbroadcastss from memory)."""

    def codegen(context, builder, sig, args):
        scalar = builder.load(_element_ptr(context, builder, sig.args[0], *args), align=4)
        one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined), _SPLAT)

    return f32x16(arr, idx), codegen


@intrinsic
def vbcast2(typingctx, arr, idx):
    """(arr[idx], arr[idx + 1]) in lanes (0, 1), (2, 3), ..., (14, 15): one 64-bit broadcast
    from memory (vbroadcastsd), the two channels of a pair of groups (``vdeinterleave``)."""

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], *args)
        pair = builder.load(builder.bitcast(ptr, ir.VectorType(ir.FloatType(), 2).as_pointer()), align=4)
        return builder.shuffle_vector(pair, ir.Constant(pair.type, ir.Undefined), _PAIRS)

    return f32x16(arr, idx), codegen


@intrinsic
def vdeinterleave(typingctx, a):
    """(a0, a2, ..., a14, a1, a3, ..., a15): the even lanes, then the odd ones."""

    def codegen(context, builder, sig, args):
        return builder.shuffle_vector(args[0], args[0], _EVEN_ODD)

    return f32x16(f32x16), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c, fused, lane by lane."""

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VEC, [_VEC] * 3), "llvm.fma.v16f32"
        )
        return builder.call(fn, args)

    return f32x16(f32x16, f32x16, f32x16), codegen


@intrinsic
def vzero(typingctx):
    """A vector of zeros."""

    def codegen(context, builder, sig, args):
        return ir.Constant(_VEC, [0.0] * LANES)

    return f32x16(), codegen


@intrinsic
def vadd(typingctx, a, b):
    """a + b, lane by lane."""

    def codegen(context, builder, sig, args):
        return builder.fadd(*args)

    return f32x16(f32x16, f32x16), codegen


@intrinsic
def vsum(typingctx, a):
    """The sum of the 16 lanes, added in lane order (a fixed order: deterministic)."""

    def codegen(context, builder, sig, args):
        total = builder.extract_element(args[0], ir.Constant(ir.IntType(32), 0))
        for lane in range(1, LANES):
            total = builder.fadd(total, builder.extract_element(args[0], ir.Constant(ir.IntType(32), lane)))
        return total

    return types.float32(f32x16), codegen


_I32 = ir.IntType(32)
_MASK = ir.VectorType(ir.IntType(1), LANES)
_IOTA = ir.Constant(ir.VectorType(_I32, LANES), list(range(LANES)))


def _interleave(half: int):
    @intrinsic
    def interleave(typingctx, a, b):
        def codegen(context, builder, sig, args):
            mask = [k for i in range(half * 8, half * 8 + 8) for k in (i, i + LANES)]
            return builder.shuffle_vector(args[0], args[1], ir.Constant(ir.VectorType(_I32, LANES), mask))

        return f32x16(f32x16, f32x16), codegen

    return interleave


vinterleave_lo = _interleave(0)
"""(a0, b0, a1, b1, ..., a7, b7) of vectors a, b: their first halves, lane by lane."""
vinterleave_hi = _interleave(1)
"""(a8, b8, ..., a15, b15): their second halves, lane by lane."""


def first_lanes(builder, n):
    """<16 x i1>: lane i is on iff i < n (an i64)."""
    vec = ir.VectorType(_I32, LANES)
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), builder.trunc(n, _I32), ir.Constant(_I32, 0))
    splat = builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), ir.Constant(vec, [0] * LANES))
    return builder.icmp_signed("<", _IOTA, splat)


@intrinsic
def vload_first(typingctx, arr, idx, n):
    """arr[idx : idx + n] in the first n lanes (0 < n <= 16), zeros after; reads nothing else.
    A whole vector (n = 16, the common case) is one plain load."""

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        n = context.cast(builder, args[2], sig.args[2], types.int64)
        with builder.if_else(builder.icmp_signed(">=", n, ir.Constant(n.type, LANES)), likely=True) as (
            whole,
            part,
        ):
            with whole:
                block_whole = builder.block
                plain = builder.load(builder.bitcast(ptr, _VEC.as_pointer()), align=4)
            with part:
                block_part = builder.block
                fnty = ir.FunctionType(_VEC, [ptr.type, _I32, _MASK, _VEC])
                fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.load.v16f32.p0")
                zero = ir.Constant(_VEC, [0.0] * LANES)
                masked = builder.call(fn, [ptr, ir.Constant(_I32, 4), first_lanes(builder, n), zero])
        result = builder.phi(_VEC)
        result.add_incoming(plain, block_whole)
        result.add_incoming(masked, block_part)
        return result

    return f32x16(arr, idx, n), codegen


@intrinsic
def vload_lanes(typingctx, arr, idx, bits):
    """arr[idx + i] in lane i where bit i of the int ``bits`` is set, zeros elsewhere: one
    masked load (native on AVX-512), which reads only the set lanes, so idx + i may lie
    outside arr wherever bit i is clear (a convolution's zero padding, read in place)."""

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        bits = context.cast(builder, args[2], sig.args[2], types.int64)
        mask = builder.bitcast(builder.trunc(bits, ir.IntType(LANES)), _MASK)
        fnty = ir.FunctionType(_VEC, [ptr.type, _I32, _MASK, _VEC])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.load.v16f32.p0")
        return builder.call(fn, [ptr, ir.Constant(_I32, 4), mask, ir.Constant(_VEC, [0.0] * LANES)])

    return f32x16(arr, idx, bits), codegen


def _store_prefix(builder, ptr, vec, n):
    """Store the first n (0 < n < 16) lanes of vec at ptr as plain stores of 8, 4, 2 and 1
    lanes, one per bit of n: a masked store is microcoded on AMD's AVX2 parts, about 11 ns
    against 0.8 for a whole vector on the Zen 3 machine, and up to 4 plain stores cost less."""
    i64 = ir.IntType(64)
    cur, off = vec, ir.Constant(i64, 0)
    for size in (8, 4, 2, 1):  # cur holds 2*size lanes, the next of them at ptr + off
        lo = builder.shuffle_vector(cur, cur, ir.Constant(ir.VectorType(_I32, size), list(range(size))))
        hi = builder.shuffle_vector(
            cur, cur, ir.Constant(ir.VectorType(_I32, size), list(range(size, 2 * size)))
        )
        bit = builder.icmp_unsigned("!=", builder.and_(n, ir.Constant(i64, size)), ir.Constant(i64, 0))
        with builder.if_then(bit):
            at = builder.gep(ptr, [off])
            if size == 1:
                builder.store(builder.extract_element(lo, ir.Constant(_I32, 0)), at, align=4)
            else:
                builder.store(
                    lo, builder.bitcast(at, ir.VectorType(ir.FloatType(), size).as_pointer()), align=4
                )
        cur = builder.select(bit, hi, lo)
        off = builder.add(off, builder.select(bit, ir.Constant(i64, size), ir.Constant(i64, 0)))


@intrinsic
def vstore_first(typingctx, arr, idx, vec, n):
    """arr[idx : idx + n] = the first n lanes of vec (0 < n <= 16); writes nothing else.
    A whole vector is one plain store; a part is one masked store on AVX-512, where it is a
    native instruction (mobilenet's strips, computing alone: 0.44 -> 0.40 ms), and a few
    plain stores on AVX2 (``_store_prefix``)."""

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        n = context.cast(builder, args[3], sig.args[3], types.int64)
        with builder.if_else(builder.icmp_signed(">=", n, ir.Constant(n.type, LANES)), likely=True) as (
            whole,
            part,
        ):
            with whole:
                builder.store(args[2], builder.bitcast(ptr, _VEC.as_pointer()), align=4)
            with part:
                if ISA == "avx512":
                    fnty = ir.FunctionType(ir.VoidType(), [_VEC, ptr.type, _I32, _MASK])
                    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.store.v16f32.p0")
                    builder.call(fn, [args[2], ptr, ir.Constant(_I32, 4), first_lanes(builder, n)])
                else:
                    _store_prefix(builder, ptr, args[2], n)
        return context.get_dummy_value()

    return types.void(arr, idx, vec, n), codegen


_V8 = ir.VectorType(ir.FloatType(), 8)


def _shuffle(builder, a, b, mask):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), mask))


def _transpose8(context, builder, sig, dst_arr, d0, dstep, src_arr, row_starts, spread=False) -> None:
    """Load 8 rows of 8 floats from src_arr at ``row_starts``; store their transpose, column j
    at d0 + j*dstep (8 loads, 24 shuffles, 8 stores: the classic AVX sequence of unpack,
    shufps and 128-bit permutes); with ``spread`` each column to every other cell
    (``_store_spread``)."""
    rows = []
    for idx in row_starts:
        ptr = _element_ptr(context, builder, sig.args[3], src_arr, idx)
        rows.append(builder.load(builder.bitcast(ptr, _V8.as_pointer()), align=4))
    lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
    t = []
    for i in range(0, 8, 2):  # interleave pairs of rows
        t += [_shuffle(builder, rows[i], rows[i + 1], lo), _shuffle(builder, rows[i], rows[i + 1], hi)]
    a, b = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    u = []
    for p, q in ((0, 2), (1, 3), (4, 6), (5, 7)):  # pairs of pairs
        u += [_shuffle(builder, t[p], t[q], a), _shuffle(builder, t[p], t[q], b)]
    low, high = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
    cols = [None] * 8
    for j in range(4):  # 128-bit halves
        cols[j] = _shuffle(builder, u[j], u[j + 4], low)
        cols[j + 4] = _shuffle(builder, u[j], u[j + 4], high)
    for j, col in enumerate(cols):
        idx = builder.add(d0, builder.mul(dstep, ir.Constant(dstep.type, j)))
        ptr = _element_ptr(context, builder, sig.args[0], dst_arr, idx)
        if spread:
            _store_spread(builder, ptr, col)
        else:
            builder.store(col, builder.bitcast(ptr, _V8.as_pointer()), align=4)


_SPREAD = ir.Constant(_MASK, [i % 2 == 0 for i in range(LANES)])


def _store_spread(builder, ptr, col) -> None:
    """ptr[2*i] = col[i] for i < 8, the cells between untouched: on AVX-512 one masked store of
    the even lanes (it never touches the odd cells, which another thread may own, nor faults
    past the last one), elsewhere 8 scalar stores."""
    if ISA != "avx512":
        for i in range(8):
            at = builder.gep(ptr, [ir.Constant(ir.IntType(64), 2 * i)])
            builder.store(builder.extract_element(col, ir.Constant(_I32, i)), at, align=4)
        return
    wide = builder.shuffle_vector(
        col, col, ir.Constant(ir.VectorType(_I32, LANES), [i // 2 for i in range(LANES)])
    )
    fnty = ir.FunctionType(ir.VoidType(), [_VEC, ptr.type, _I32, _MASK])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.store.v16f32.p0")
    builder.call(fn, [wide, ptr, ir.Constant(_I32, 4), _SPREAD])


@intrinsic
def transpose8(typingctx, dst, dst_idx, dst_step, src, src_idx, src_step):
    """dst[dst_idx + j*dst_step + i] = src[src_idx + i*src_step + j] for i, j < 8: an 8 x 8
    block transposed in registers, for layout conversions whose rows are 8 or 16 floats apart
    instead of one element at a time through strided accesses."""

    def codegen(context, builder, sig, args):
        dst_arr, d0, dstep, src_arr, s0, sstep = args
        starts = [builder.add(s0, builder.mul(sstep, ir.Constant(sstep.type, i))) for i in range(8)]
        _transpose8(context, builder, sig, dst_arr, d0, dstep, src_arr, starts)
        return context.get_dummy_value()

    return types.void(dst, types.int64, types.int64, src, types.int64, types.int64), codegen


@intrinsic
def transpose8_spread(typingctx, dst, dst_idx, dst_step, src, src_idx, src_step):
    """dst[dst_idx + j*dst_step + 2*i] = src[src_idx + i*src_step + j] for i, j < 8:
    ``transpose8`` whose columns go to every other cell (rows of a width-stride-2 phase of
    an output), the cells between them untouched."""

    def codegen(context, builder, sig, args):
        dst_arr, d0, dstep, src_arr, s0, sstep = args
        starts = [builder.add(s0, builder.mul(sstep, ir.Constant(sstep.type, i))) for i in range(8)]
        _transpose8(context, builder, sig, dst_arr, d0, dstep, src_arr, starts, spread=True)
        return context.get_dummy_value()

    return types.void(dst, types.int64, types.int64, src, types.int64, types.int64), codegen


@intrinsic
def transpose8_pairs(typingctx, dst, dst_idx, dst_step, src, src_idx, src_step, offset):
    """``transpose8`` whose rows i are rows (i // 2) + (i % 2) * offset from src_idx on, in
    src_step units: rows 0, offset, 1, 1 + offset, ... The channels of two groups (``offset``
    channels apart) come out in pairs, lane by lane, as ``vbcast2`` reads them."""

    def codegen(context, builder, sig, args):
        dst_arr, d0, dstep, src_arr, s0, sstep, off = args
        off = context.cast(builder, off, sig.args[6], types.int64)
        starts = []
        for i in range(8):
            row = builder.add(ir.Constant(off.type, i // 2), builder.mul(off, ir.Constant(off.type, i % 2)))
            starts.append(builder.add(s0, builder.mul(sstep, row)))
        _transpose8(context, builder, sig, dst_arr, d0, dstep, src_arr, starts)
        return context.get_dummy_value()

    return types.void(dst, types.int64, types.int64, src, types.int64, types.int64, offset), codegen
