"""numba set-up shared by the kernels: the popcount intrinsic, thread control and a bandwidth probe.

numba compiles for the host CPU when a kernel is first called (LLVM picks the instruction set it finds:
AVX-512 VPOPCNTDQ where present, a shuffle-based vector popcount on AVX2, scalar POPCNT otherwise); compiled
kernels are cached on disk, so only the first call on a machine pays the compile time.

A rule for the kernels' inner loops: numba counts references to arrays with atomic (locked, fencing) increments
and decrements. It drops them for an inlined function's array arguments only where the inlined body calls
nothing (a call includes a slice assignment's memset), and every view taken (`a[q]`, `a[c, q]`) is counted too.
So per-row and per-block helpers that take arrays are inlined and call nothing, views are taken outside the
loops, and rare work (a compaction) is a separate, non-inlined call. Check with `inspect_asm`: no `NRT_incref` /
`NRT_decref` in a hot loop. (The scan paid 12 such operations per block and question until this was found;
removing them cut batched scans' time by 9-27%.)
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

JIT = dict(nogil=True, fastmath=True, boundscheck=False, cache=True)


@intrinsic
def popcount64(typingctx, x):
    """LLVM's ctpop on a uint64: one instruction where the CPU has one, vectorised inside vectorisable loops."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def trailing_zeros64(typingctx, x):
    """LLVM's cttz on a uint64 (the index of the lowest set bit; x must not be 0)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.cttz", [ir.IntType(64), ir.IntType(1)])
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 1)])

    return sig, codegen


def _prefetch_intrinsic(locality: int, doc: str):
    def prefetch(typingctx, array, index):
        if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
            return None
        sig = types.void(array, index)

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            address = builder.gep(data, [args[1]])
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [address.type, i32, i32, i32])
            fn = builder.module.declare_intrinsic("llvm.prefetch", [address.type], fnty)
            builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, locality), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

    prefetch.__doc__ = doc
    return intrinsic(prefetch)


prefetch = _prefetch_intrinsic(3, "LLVM's prefetch of array[index] into every cache level (a hint: never faults, "
                                  "retires without waiting).")


def available_threads() -> int:
    return numba.config.NUMBA_NUM_THREADS


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Run the kernels inside the block on `n` threads (None: every core numba sees)."""
    total = available_threads()
    n = total if n is None else max(1, min(int(n), total))
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(before)


@numba.njit(parallel=True, **JIT)
def _sum_words(words: np.ndarray, chunks: int) -> int:
    n = words.shape[0]
    step = (n + chunks - 1) // chunks
    partial = np.zeros(chunks, np.uint64)
    for c in numba.prange(chunks):
        acc = np.uint64(0)
        for i in range(np.uint64(c * step), np.uint64(min(n, (c + 1) * step))):  # unsigned: vectorised
            acc ^= words[i]
        partial[c] = acc
    out = np.uint64(0)
    for c in range(chunks):
        out ^= partial[c]
    return out


def read_bandwidth_of(words: np.ndarray, n_threads: int | None = None, repeats: int = 3) -> float:
    """GB/s of the best of `repeats` streaming XOR passes over `words` (uint64) on `n_threads` threads."""
    with threads(n_threads) as n:
        _sum_words(words[:1024], n)  # compile outside the timing
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            _sum_words(words, n)
            best = min(best, time.perf_counter() - start)
    return words.nbytes / best / 1e9


def read_bandwidth(nbytes: int = 1 << 30, repeats: int = 5, n_threads: int | None = None) -> float:
    """Measured DRAM read bandwidth in GB/s: the best of `repeats` streaming passes over an array larger than the
    last-level cache, on `n_threads` threads (what a bandwidth-bound scan can reach at best)."""
    return read_bandwidth_of(np.ones(nbytes // 8, np.uint64), n_threads, repeats)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def host_features() -> str:
    """The SIMD features LLVM compiles the kernels for on this machine (for benchmark reports)."""
    import llvmlite.binding as llvm

    wanted = ("avx512vpopcntdq", "avx512f", "avx2", "popcnt", "neon", "sve")
    have = {f[1:] for f in llvm.get_host_cpu_features().flatten().split(",") if f.startswith("+")}
    return " ".join(f for f in wanted if f in have) or "none"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
