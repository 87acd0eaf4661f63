"""numba set-up shared by the kernels: the popcount intrinsic, thread control and a bandwidth probe.

numba compiles for the host CPU when a kernel is first called (LLVM picks the instruction set it finds:
AVX-512 VPOPCNTDQ where present, a shuffle-based vector popcount on AVX2, scalar POPCNT otherwise); compiled
kernels are cached on disk, so only the first call on a machine pays the compile time.

A rule for the kernels' inner loops: numba counts references to arrays with atomic (locked, fencing) increments
and decrements. It drops them for an inlined function's array arguments only where the inlined body calls
nothing (a call includes a slice assignment's memset), and every view taken (`a[q]`, `a[c, q]`) is counted too.
So per-row and per-block helpers that take arrays are inlined and call nothing, views are taken outside the
loops, and rare work (a compaction) is a separate, non-inlined call. Check with `inspect_asm`: no `NRT_incref` /
`NRT_decref` in a hot loop (each is a locked read-modify-write, paid per block and question of a scan).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.ufunc.parallel import _launch_threads

JIT = dict(nogil=True, fastmath=True, boundscheck=False, cache=True)
# Without fast-math: where -inf must compare as the lowest score (`select`), and where a float sum must keep the
# order it is written in wherever the kernel is compiled into another (the rerank's tables and lookups, `lut`).
EXACT = dict(JIT, fastmath=False)


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


@intrinsic
def cycle_counter(typingctx):
    """LLVM's readcyclecounter: the CPU's time-stamp counter (x86 RDTSC, constant-rate on current CPUs), 0 where
    the target has none. For splitting one compiled call's time into its parts (see `fused`)."""
    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", (), ir.FunctionType(ir.IntType(64), []))
        return builder.call(fn, [])

    return types.int64(), codegen


def available_threads() -> int:
    return numba.config.NUMBA_NUM_THREADS


_threads_started = False


def thread_count(n: int | None) -> int:
    """`n` CPU threads for a kernel, within what numba runs (None: all of them). Every kernel's Python wrapper
    calls this before the kernel, which first starts numba's threading layer: the kernels call its functions by
    name (`use_threads`), and one loaded from the on-disk cache into a process where nothing had started it yet
    called an unresolved symbol (a segfault; compiling starts the layer, loading a cached kernel does not)."""
    global _threads_started
    if not _threads_started:
        _launch_threads()
        _threads_started = True
    total = available_threads()
    return total if n is None else max(1, min(int(n), total))


@intrinsic
def _get_num_threads(typingctx):
    """The calling thread's count for numba's parallel loops (the threading layer's `get_num_threads`)."""
    _launch_threads()

    def codegen(context, builder, signature, args):  # declared as numba's parallel loops declare it (an intp)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(cgutils.intp_t, []), "get_num_threads")
        count = builder.trunc(builder.call(fn, []), ir.IntType(32))  # a C int: the upper half is not defined
        return builder.sext(count, ir.IntType(64))

    return types.int64(), codegen


@intrinsic
def _set_num_threads(typingctx, n):
    """Set the calling thread's count for numba's parallel loops (the threading layer's `set_num_threads`)."""
    if not isinstance(n, types.Integer):
        return None
    _launch_threads()

    def codegen(context, builder, signature, args):  # declared as numba's parallel loops declare it
        fnty = ir.FunctionType(ir.VoidType(), [cgutils.intp_t])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "set_num_threads")
        builder.call(fn, [context.cast(builder, args[0], signature.args[0], types.intp)])
        return context.get_dummy_value()

    return types.void(n), codegen


@numba.njit(inline="always", **JIT)
def use_threads(n):
    """In a parallel kernel, before its first parallel loop: run its loops on `n` threads (1 <= n <=
    available_threads(), see `thread_count`). Returns the caller's count, which the kernel gives back
    (`restore_threads`) before it returns: numba's count belongs to the calling thread and outlives the call.

    Set inside the compiled kernel rather than around its call from Python: `numba.get_num_threads` and
    `set_num_threads` called from Python go through ctypes, a fixed cost that a lone question with cold caches
    feels; here they are two direct calls into the threading layer. (numba's own jitted `set_num_threads` calls
    through a ctypes pointer, which keeps a kernel out of the on-disk cache; these intrinsics call the threading
    layer's symbols by name, as numba's parallel loops do.)"""
    before = _get_num_threads()
    _set_num_threads(n)
    return before


@numba.njit(inline="always", **JIT)
def restore_threads(before):
    _set_num_threads(before)


@numba.njit(parallel=True, **JIT)
def _sum_words(words: np.ndarray, chunks: int) -> int:
    before = use_threads(chunks)
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
    restore_threads(before)
    return out


def read_bandwidth_of(words: np.ndarray, n_threads: int | None = None, repeats: int = 3) -> float:
    """GB/s of the best of `repeats` streaming XOR passes over `words` (uint64) on `n_threads` threads."""
    n = thread_count(n_threads)
    _sum_words(words[:1024], n)  # compile outside the timing
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        _sum_words(words, n)
        best = min(best, time.perf_counter() - start)
    return words.nbytes / best / 1e9


def read_bandwidth(nbytes: int = 1 << 30, repeats: int = 5, threads: Sequence[int | None] = (None,)) -> dict:
    """Measured DRAM read bandwidth in GB/s on each of `threads` thread counts: the best of `repeats` streaming
    passes over one array larger than the last-level cache (what a bandwidth-bound scan can reach at best)."""
    words = np.ones(nbytes // 8, np.uint64)
    return {n: read_bandwidth_of(words, n, repeats) for n in threads}


def cpuinfo(field: str) -> str | None:
    """The first value of a /proc/cpuinfo field ("model name", "flags", "vendor_id", "cpu MHz"); None where the
    file or the field is absent."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    name = cpuinfo("model name")
    if name:
        return name
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
