"""The per-question buffers of the Hamming scan: admitting a block's rows, compacting, merging chunks.

Each (chunk, question) keeps a buffer of admitted (distance, row) pairs in row order, and a bound: rows farther
than it are not admitted. A block's rows enter together; when the buffer might not hold another block's, a
histogram of its distances gives the l-th smallest distance t (counting, not sorting: distances are integers in
0..bits); pairs beyond it are dropped, ties at t keep the lowest rows, and the bound becomes t - 1. Chunks are
merged the same way, the survivors ordered by a stable counting sort.

Where the buffers also keep codes (`kept`: a (questions, capacity, W) uint64 array per chunk; capacity 0: not), each
admitted row's code words are copied beside its distance, while its block is in L1, and travel with it through
compaction and merging: the rerank of a lone question then reads its candidates' codes from one contiguous array
instead of W cache lines per candidate scattered over the index (see `hamming_top_l`'s `codes_out` and `fused`).
"""

from __future__ import annotations

import numba
import numpy as np

from bprlab.index.kernels.jit import JIT, trailing_zeros64
from bprlab.index.kernels.layout import LANES, U0, U1, U_LANES


@numba.njit(**JIT)
def compact(dists, rows, count, num_candidates, hist, kept):
    """Keep the `num_candidates` smallest (distance, row) pairs of the first `count`, in their order (and their codes
    in `kept`, (capacity, W), where its capacity is not 0); returns the cut t."""
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
            if len(kept):
                kept[out, :] = kept[i, :]
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
def append(dist, passing, row0, q, dists, rows, counts, words, base, width, kept):
    """Append the block's rows flagged in `passing` to question q's buffer; True when the buffer may not hold
    another block's rows (then `tighten` it before the next block). Where `kept` has room, the rows' code words
    too, read from the block at words[base] (word w of lane j at base + 64 w + j).

    The scan inlines this and `within` for every block and question, so neither calls anything: numba counts
    references to the arrays an inlined function receives (an atomic, fencing increment and decrement per array
    and call) and can drop that counting only where the inlined body makes no call. The earlier `admit`, which
    compacted inside, paid it for its six arrays on every block and question."""
    c = counts[q]
    keep = kept.shape[1] > 0
    while passing:
        j = trailing_zeros64(passing)
        passing &= passing - U1
        dists[q, c] = dist[j]
        rows[q, c] = row0 + np.int64(j)
        if keep:
            for w in range(width):
                kept[q, c, w] = words[base + np.uint64(w) * U_LANES + np.uint64(j)]
        c += 1
    counts[q] = c
    return c > dists.shape[1] - LANES


@numba.njit(**JIT)
def tighten(q, num_candidates, dists, rows, counts, bounds, hist, kept):
    """Cut question q's buffer to its `num_candidates` nearest rows; the bound becomes the cut minus 1."""
    bounds[q] = compact(dists[q], rows[q], counts[q], num_candidates, hist, kept[q]) - 1
    counts[q] = num_candidates


@numba.njit(**JIT)
def merge(dists, rows, counts, q, num_candidates, hist, out_dist, out_rows, kept, out_codes):
    """The `num_candidates` best pairs of question q over every chunk's buffer, ordered by (distance, row); with
    `kept` ((chunks, questions, capacity, W), capacity not 0) their codes too, into out_codes (questions,
    num_candidates, W)."""
    nchunks, keep = dists.shape[0], kept.shape[2] > 0
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
                if keep:
                    out_codes[q, offset[d], :] = kept[c, q, i, :]
                offset[d] += 1
