"""The rerank's lookups 16 candidates at a time, from 4-bit tables held in a vector register (AVX-512 VPERMPS).

The byte tables of `lut` cost one scalar (or gathered) load per byte of every candidate. Here a code is read as
nibbles instead: N_q[n, v] = the signed sum of e_q over the 4 dimensions of nibble n, for each of its 16 values v.
16 floats are one 512-bit register, and VPERMPS looks up 16 candidates' nibbles in it at once (each lane's index
is the low 4 bits of a 32-bit lane, so a shift is the only extraction). Per 64-bit word of 16 candidates: 16
permutes, 16 table loads, 16 adds, against a load per byte with the byte tables; what remains is mostly the
gathering of the 16 codes' words into one block (`_gather`). Scoring every code needs no gathering: 16 rows of a
block lie side by side (`score_lanes`). `make bench` measures both lookups.

Nibble n of word w is bits 4k..4k+3 of the word's 32-bit half h (n = 16 w + 8 h + k): byte 4h + k // 2 of the
word, its low nibble for even k (the byte's last four dimensions in numpy packbits order) and its high nibble for
odd k. Sums are added in another order than the byte tables': scores agree to float rounding.

`AVAILABLE` says whether numba compiles for a CPU with AVX-512F; without it the intrinsic emits plain vector IR
(correct, and slow: LLVM lowers a variable lane index through memory), which `lut` never chooses for speed.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from bprlab.index.kernels.jit import EXACT, JIT
from bprlab.index.kernels.layout import U0, locate

GROUP = 16  # candidates scored together: one 512-bit register of floats
U_GROUP = np.uint64(GROUP)
NIBBLES_PER_WORD = 16


def _target_has_avx512f() -> bool:
    """Whether numba compiles for AVX-512F: its configured features when set, else the host's."""
    if numba.config.CPU_FEATURES:
        return "+avx512f" in numba.config.CPU_FEATURES.split(",")
    if numba.config.CPU_NAME:  # a named target without explicit features (e.g. portable caches): assume none
        return False
    import llvmlite.binding as llvm

    return "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")


AVAILABLE = _target_has_avx512f()


def _permute(builder, table, index):
    """result[c] = table[index[c] & 15] for 16 lanes."""
    f32x16 = ir.VectorType(ir.FloatType(), GROUP)
    if AVAILABLE:
        fnty = ir.FunctionType(f32x16, [f32x16, index.type])
        fn = builder.module.declare_intrinsic("llvm.x86.avx512.permvar.sf.512", (), fnty)
        return builder.call(fn, [table, index])
    i32 = ir.IntType(32)
    low = builder.and_(index, ir.Constant(index.type, [15] * GROUP))
    out = ir.Constant(f32x16, ir.Undefined)
    for c in range(GROUP):
        lane = ir.Constant(i32, c)
        out = builder.insert_element(out, builder.extract_element(table, builder.extract_element(low, lane)), lane)
    return out


@intrinsic
def _add_word(typingctx, src, at, stride, w, table, acc):
    """acc[0:16] += the table lookups of word w of 16 codes, whose words w are src[at + w * stride + c] (uint64)
    for code c: side by side, as in a gathered group (stride 16) or in 16 lanes of a block (stride 64)."""
    if not all(isinstance(a, types.Array) for a in (src, table, acc)) or \
            not all(isinstance(a, types.Integer) for a in (at, stride, w)):
        return None
    sig = types.void(src, types.uint64, types.uint64, types.uint64, table, acc)

    def codegen(context, builder, signature, args):
        def data(i):
            return context.make_array(signature.args[i])(context, builder, args[i]).data

        i64, i32 = ir.IntType(64), ir.IntType(32)
        u64x16, u32x16 = ir.VectorType(i64, GROUP), ir.VectorType(i32, GROUP)
        f32x16 = ir.VectorType(ir.FloatType(), GROUP)
        word = args[3]
        first = builder.gep(data(0), [builder.add(args[1], builder.mul(word, args[2]))])
        codes = builder.load(builder.bitcast(first, u64x16.as_pointer()), align=8)
        halves = [builder.trunc(codes, u32x16),
                  builder.trunc(builder.lshr(codes, ir.Constant(u64x16, [32] * GROUP)), u32x16)]
        rows = builder.mul(word, ir.Constant(i64, NIBBLES_PER_WORD * GROUP))
        sums = []  # four independent add chains
        for n in range(NIBBLES_PER_WORD):
            half, k = divmod(n, 8)
            index = halves[half] if k == 0 else builder.lshr(halves[half], ir.Constant(u32x16, [4 * k] * GROUP))
            row = builder.gep(data(4), [builder.add(rows, ir.Constant(i64, n * GROUP))])
            found = _permute(builder, builder.load(builder.bitcast(row, f32x16.as_pointer()), align=4), index)
            if len(sums) < 4:
                sums.append(found)
            else:  # no fast-math flags: each sum in the order written, wherever this is inlined (see `lut`)
                sums[n % 4] = builder.fadd(sums[n % 4], found)
        total = builder.fadd(builder.fadd(sums[0], sums[1]), builder.fadd(sums[2], sums[3]))
        out = builder.bitcast(data(5), f32x16.as_pointer())
        builder.store(builder.fadd(builder.load(out, align=4), total), out, align=4)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(**EXACT)  # the order of the sums as written: see `lut`
def build_table(emb, table, nibble_signs):
    """table[(16 w + n) * 16 + v] <- N_q for one question (see the module doc for the order of nibbles n);
    nibble_signs[v, k]: the sign of bit k (the most significant first) of nibble value v."""
    table[:] = 0.0
    for p in range(len(emb) // 8):
        word, j = p // 8, p % 8
        first = word * NIBBLES_PER_WORD + (j // 4) * 8 + (j % 4) * 2  # the byte's low nibble; high = first + 1
        for high in range(2):
            d = 8 * p + (0 if high else 4)
            e0, e1, e2, e3 = emb[d], emb[d + 1], emb[d + 2], emb[d + 3]
            at = (first + high) * GROUP
            for v in range(GROUP):
                table[at + v] = ((nibble_signs[v, 0] * e0 + nibble_signs[v, 1] * e1)
                                 + (nibble_signs[v, 2] * e2 + nibble_signs[v, 3] * e3))


@numba.njit(inline="always", **JIT)
def _gather(words, width, blocked, rows, start, count, block):
    """block[w * 16 + c] <- word w of candidate start + c (row 0 stands in for missing and -1 rows)."""
    for c in range(GROUP):
        row = rows[start + c] if c < count else -1
        at, stride = locate(max(row, 0), width, blocked)
        for w in range(U0, width):
            block[w * U_GROUP + np.uint64(c)] = words[at + w * stride]


@numba.njit(**JIT)
def score_range(words, width, blocked, rows, table, scores, start, stop, block, acc):
    """scores[i] for candidates [start, stop), 16 at a time (-inf for rows -1). block: (width * 16,) uint64 and
    acc: (16,) float32 scratch."""
    for first in range(start, stop, GROUP):
        count = min(GROUP, stop - first)
        _gather(words, width, blocked, rows, first, count, block)
        acc[:] = 0.0
        for w in range(U0, width):
            _add_word(block, U0, U_GROUP, w, table, acc)
        for c in range(count):
            scores[first + c] = acc[c] if rows[first + c] >= 0 else -np.inf


@numba.njit(inline="always", **JIT)
def score_lanes(words, width, row0, table, acc):
    """acc[c] <- the score of row row0 + c (c < 16) in the blocked layout, row0 a multiple of 16: the 16 rows'
    words w lie side by side in their block, so no gathering (rows past the last code score its zero padding)."""
    at, stride = locate(row0, width, True)
    acc[:] = 0.0
    for w in range(U0, width):
        _add_word(words, at, stride, w, table, acc)
