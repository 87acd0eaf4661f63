"""The per-question buffers of the Hamming scan: admitting a block's rows, compacting, merging chunks.

Each (chunk, question) keeps a buffer of admitted (distance, row) pairs in row order, and a bound: rows farther
than it are not admitted. A block's rows enter together; when the buffer might not hold another block's, a
histogram of its distances gives the l-th smallest distance t (counting, not sorting: distances are integers in
0..bits); pairs beyond it are dropped, ties at t keep the lowest rows, and the bound becomes t - 1. Chunks are
merged the same way, the survivors ordered by a stable counting sort.
"""

from __future__ import annotations

import numba
import numpy as np

from bprlab.index.kernels.jit import JIT, trailing_zeros64
from bprlab.index.kernels.layout import LANES, U0, U1, U_LANES


@numba.njit(**JIT)
def compact(dists, rows, count, num_candidates, hist):
    """Keep the `num_candidates` smallest (distance, row) pairs of the first `count`, in their order; returns the cut t."""
    hist[:] = 0
    for i in range(count):
        hist[dists[i]] += 1
    below, cut = 0, 0
    while below + hist[cut] < num_candidates:
        below += hist[cut]
        cut += 1
    ties, out = num_candidates - below, 0
    for i in range(count):
        d = dists[i]
        if d < cut or (d == cut and ties > 0):
            if d == cut:
                ties -= 1
            dists[out] = d
            rows[out] = rows[i]
            out += 1
    return cut


@numba.njit(inline="always", **JIT)
def within(dist, bound, nrows):
    """Bit j set: lane j of the block's distances is within `bound` (none when the bound is negative).

    Vector compares into a mask; most blocks have no row within it. (A scalar min over the lanes first, as this
    once did, compiled to 63 dependent compare-and-moves per block.)"""
    passing = U0
    if bound < 0:
        return passing
    limit = np.uint32(bound)
    for j in range(U_LANES):
        passing |= np.uint64(dist[j] <= limit) << j
    if nrows < LANES:
        passing &= (U1 << np.uint64(nrows)) - U1
    return passing


@numba.njit(inline="always", **JIT)
def append(dist, passing, row0, q, dists, rows, counts):
    """Append the block's rows flagged in `passing` to question q's buffer; True when the buffer may not hold
    another block's rows (then `tighten` it before the next block).

    The scan inlines this and `within` for every block and question, so neither calls anything: numba counts
    references to the arrays an inlined function receives (an atomic, fencing increment and decrement per array
    and call) and can drop that counting only where the inlined body makes no call. The earlier `admit`, which
    compacted inside, paid it for its six arrays on every block and question."""
    c = counts[q]
    while passing:
        j = trailing_zeros64(passing)
        passing &= passing - U1
        dists[q, c] = dist[j]
        rows[q, c] = row0 + np.int64(j)
        c += 1
    counts[q] = c
    return c > dists.shape[1] - LANES


@numba.njit(**JIT)
def tighten(q, num_candidates, dists, rows, counts, bounds, hist):
    """Cut question q's buffer to its `num_candidates` nearest rows; the bound becomes the cut minus 1."""
    bounds[q] = compact(dists[q], rows[q], counts[q], num_candidates, hist) - 1
    counts[q] = num_candidates


@numba.njit(**JIT)
def merge(dists, rows, counts, q, num_candidates, hist, out_dist, out_rows):
    """The `num_candidates` best pairs of question q over every chunk's buffer, ordered by (distance, row)."""
    nchunks = dists.shape[0]
    hist[:] = 0
    total = 0
    for c in range(nchunks):
        total += counts[c, q]
        for i in range(counts[c, q]):
            hist[dists[c, q, i]] += 1
    num_candidates = min(num_candidates, total)
    below, cut = 0, 0
    while cut < len(hist) and below + hist[cut] < num_candidates:
        below += hist[cut]
        cut += 1
    # start offset of each distance in the output (counting sort); ties at the cut keep the lowest rows
    offset = np.zeros(cut + 2, np.int64)
    for d in range(cut):
        offset[d + 1] = offset[d] + hist[d]
    offset[cut + 1] = num_candidates
    for c in range(nchunks):
        for i in range(counts[c, q]):
            d = dists[c, q, i]
            if d < cut or (d == cut and offset[d] < offset[d + 1]):
                out_dist[q, offset[d]] = d
                out_rows[q, offset[d]] = rows[c, q, i]
                offset[d] += 1
