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
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core import config as numba_config
from numba.extending import intrinsic, models, register_model

LANES = 16


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
def vbcast(typingctx, arr, idx):
    """arr[idx] in all 16 lanes (one vbroadcastss from memory)."""

    def codegen(context, builder, sig, args):
        scalar = builder.load(_element_ptr(context, builder, sig.args[0], *args), align=4)
        one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined), _SPLAT)

    return f32x16(arr, idx), codegen


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
