"""The Hamming distances of one block of blocked codes (see `layout`) to one question or two, the kernels' inner
loop: XOR and popcount over a code's words, summed per lane, plus the prefetch that runs ahead of the scan.
`hamming` scans the corpus with them."""

from __future__ import annotations

import numba
import numpy as np

from bprlab.index.kernels.jit import JIT, popcount64, prefetch
from bprlab.index.kernels.layout import U0, U1, U2, U3, U4, U_LANES

MAX_FIXED_WORDS = 16  # codes up to 1024 bits get a distance loop compiled for their width (see `fixed_width`)


def fixed_width(width: int, fixed: bool = True) -> tuple:
    """The `fixed` argument of the kernels: a tuple of `width` zeros where the code's width gets its own compiled
    distance loop, else the empty tuple (the loop over a run-time width).

    A tuple's length is part of its numba type, so each width compiles (and caches on disk) a kernel of its own in
    which the loop over a code's words has a constant trip count: LLVM unrolls it and sums each lane's distance in
    a register, where the run-time loop stores partial sums every four words. Past MAX_FIXED_WORDS the unrolled
    body grows too large for LLVM to unroll, and a loop it does not unroll does not vectorise over the lanes
    (`make bench`'s kernel table compares the two loops)."""
    return (0,) * width if fixed and 0 < width <= MAX_FIXED_WORDS else ()


@numba.njit(inline="always", **JIT)
def distances(words, base, width, qwords, qbase, dist):
    """dist[j] = Hamming(question, row j of the block starting at words[base]).

    Four words are summed per pass over the lanes (one store of the partial sums per four popcounts). A lone
    question's scan is bound by memory, and this order (four of a block's lines at a time) reads it faster than
    the fixed-width loop of `distances_pair`, which touches all of a block's lines in each pass."""
    for j in range(U_LANES):
        dist[j] = 0
    w4 = width - width % U4
    for w in range(U0, w4, U4):
        q0, q1, q2, q3 = qwords[qbase + w], qwords[qbase + w + U1], qwords[qbase + w + U2], qwords[qbase + w + U3]
        s0 = base + w * U_LANES
        s1, s2, s3 = s0 + U_LANES, s0 + U2 * U_LANES, s0 + U3 * U_LANES
        for j in range(U_LANES):
            dist[j] += np.uint32(popcount64(words[s0 + j] ^ q0) + popcount64(words[s1 + j] ^ q1)
                                 + popcount64(words[s2 + j] ^ q2) + popcount64(words[s3 + j] ^ q3))
    for w in range(w4, width):
        qw = qwords[qbase + w]
        start = base + w * U_LANES
        for j in range(U_LANES):
            dist[j] += np.uint32(popcount64(words[start + j] ^ qw))


@numba.njit(inline="always", **JIT)
def distances_pair(words, base, width, fixed, qwords, qbase, dist_a, dist_b):
    """`distances` for two questions (rows qbase and qbase + width of qwords): each code word is read once.

    With `fixed` a tuple of `width` entries (see `fixed_width`), the width is a compile-time constant: LLVM unrolls
    the loop over a code's words, and each lane's two distances are summed in registers and stored once. Otherwise
    four words are summed per pass over the lanes, storing the partial sums after each."""
    if len(fixed) > 0:
        for j in range(U_LANES):
            acc_a, acc_b = U0, U0
            for w in range(len(fixed)):
                c = words[base + np.uint64(w) * U_LANES + j]
                acc_a += popcount64(c ^ qwords[qbase + np.uint64(w)])
                acc_b += popcount64(c ^ qwords[qbase + width + np.uint64(w)])
            dist_a[j] = np.uint32(acc_a)
            dist_b[j] = np.uint32(acc_b)
        return
    for j in range(U_LANES):
        dist_a[j] = 0
        dist_b[j] = 0
    w4 = width - width % U4
    for w in range(U0, w4, U4):
        a0, a1, a2, a3 = qwords[qbase + w], qwords[qbase + w + U1], qwords[qbase + w + U2], qwords[qbase + w + U3]
        qb = qbase + width + w
        b0, b1, b2, b3 = qwords[qb], qwords[qb + U1], qwords[qb + U2], qwords[qb + U3]
        s0 = base + w * U_LANES
        s1, s2, s3 = s0 + U_LANES, s0 + U2 * U_LANES, s0 + U3 * U_LANES
        for j in range(U_LANES):
            c0, c1, c2, c3 = words[s0 + j], words[s1 + j], words[s2 + j], words[s3 + j]
            dist_a[j] += np.uint32(popcount64(c0 ^ a0) + popcount64(c1 ^ a1)
                                   + popcount64(c2 ^ a2) + popcount64(c3 ^ a3))
            dist_b[j] += np.uint32(popcount64(c0 ^ b0) + popcount64(c1 ^ b1)
                                   + popcount64(c2 ^ b2) + popcount64(c3 ^ b3))
    for w in range(w4, width):
        a0, b0 = qwords[qbase + w], qwords[qbase + width + w]
        s0 = base + w * U_LANES
        for j in range(U_LANES):
            c0 = words[s0 + j]
            dist_a[j] += np.uint32(popcount64(c0 ^ a0))
            dist_b[j] += np.uint32(popcount64(c0 ^ b0))


@numba.njit(inline="always", **JIT)
def prefetch_block(words, b, b1, width):
    """Prefetch every cache line of block b (< b1). The CPU's own prefetcher stops at each 4 KiB page, and a
    block spans two or more: without this, a lone question's scan stalls at every page boundary."""
    if b < b1:
        base = np.uint64(b) * width * U_LANES
        for line in range(U0, width * U_LANES, np.uint64(8)):
            prefetch(words, base + line)
