"""Hamming candidate generation in one pass: XOR + popcount fused with counting top-l selection.

`hamming_top_l` scans the blocked codes (see `layout`) once. The corpus is split into one contiguous chunk per
thread; inside a chunk, a group of blocks small enough to stay in L1 serves every question of the batch (two at a
time, so each code word loaded serves both) before the next group is read: a batch pays for the memory traffic
once, and a single question uses every thread.

Selection counts instead of sorting (see `buffers`): each (chunk, question) admits the rows within its bound
into a buffer; a buffer near full is cut to the l nearest by a histogram of its distances, which tightens the bound.
Chunks are merged the same way, and the l survivors are ordered by distance, then row id.

A bound that starts at `bits` admits every early row, and tightening it costs a compaction per l admissions
(~9,500 admissions and 8 compactions per 500k-row chunk at l = 1000: a fifth of a batched scan). So a large chunk
first samples one block in SAMPLE_STRIDE and starts each question from the distance within which the sample
predicts SLACK x l of the chunk's rows. The result stays exact: a chunk left with fewer than l rows holds every
row within its starting bound, and it is scanned again (for that question, from no bound) unless the l-th
distance found overall is within that bound.

Index arithmetic in the hot loop is unsigned on purpose: numba wraps negative signed indices, and that check
stops LLVM from vectorising the popcount loop.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import numba
import numpy as np

from bprlab.index.kernels.buffers import append, merge, tighten, within
from bprlab.index.kernels.distance import distances, distances_pair, fixed_width, prefetch_block
from bprlab.index.kernels.jit import JIT, restore_threads, thread_count, use_threads
from bprlab.index.kernels.layout import LANES, U0, U_LANES, BlockedCodes, words_per_code

GROUP_BYTES = 1 << 15  # codes per group of blocks: stays in L1 while every question of the batch reads it
PREFETCH_BYTES = 1 << 13  # how far ahead of the scan its code words are prefetched (see `prefetch_block`)
SAMPLE_STRIDE = 64  # a chunk samples one block in 64 for its speculative bound (see `_speculative_bound`)
MIN_SAMPLE_BLOCKS = 16  # a chunk with fewer blocks to sample starts with no bound
SLACK = 2  # a speculative bound is set where the sample predicts SLACK x l rows of the chunk within it

# What a compiled scan is given, by name (numba passes named tuples by value; each is unpacked once per call, outside
# every loop, so the unpacking costs no reference counting in the hot loops):
# the blocked codes: (nblocks * W * LANES,) uint64 words, W as uint64, `fixed_width`'s tuple, the number of rows
ScanIndex = namedtuple("ScanIndex", ["words", "width", "fixed", "ntotal"])
# l, chunks (one per thread), the code's bits, how many blocks ahead to prefetch (0: none), threads
ScanPlan = namedtuple("ScanPlan", ["num_candidates", "nchunks", "bits", "ahead", "n_threads"])
# the candidates' code words kept during the scan: per-chunk buffers (nchunks, Q, capacity or 0, W) and the output
# (Q, l, W) they are merged into (see `buffers`)
KeptCodes = namedtuple("KeptCodes", ["buffers", "out"])


@numba.njit(inline="always", **JIT)
def capacity(num_candidates):
    """Pairs a (chunk, question) buffer holds: room for another block's rows above num_candidates."""
    return max(2 * num_candidates, num_candidates + 256)


@numba.njit(**JIT)
def _speculative_bound(words, width, ntotal, qwords, qbase, b0, b1, num_candidates, bits, hist, dist):
    """A starting bound for one question on blocks [b0, b1): the distance within which the chunk's sampled blocks
    (one in SAMPLE_STRIDE) predict SLACK x num_candidates of its rows. `bits` (admit every row) for small chunks."""
    nsample = (b1 - b0) // SAMPLE_STRIDE
    rows = min(ntotal, np.int64(b1) * LANES) - np.int64(b0) * LANES
    if nsample < MIN_SAMPLE_BLOCKS or rows < 4 * SLACK * num_candidates:
        return bits
    hist[:] = 0
    sampled = 0
    for i in range(nsample):
        b = b0 + i * SAMPLE_STRIDE + SAMPLE_STRIDE // 2
        if i + 1 < nsample:
            prefetch_block(words, b + SAMPLE_STRIDE, b1, width)
        distances(words, np.uint64(b) * width * U_LANES, width, qwords, qbase, dist)
        nrows = min(LANES, ntotal - np.int64(b) * LANES)
        for j in range(nrows):
            hist[dist[j]] += 1
        sampled += nrows
    need, within = SLACK * num_candidates * sampled, 0
    for t in range(bits):
        within += hist[t]
        if within * rows >= need:
            return t
    return bits


@numba.njit(**JIT)
def _scan_chunk(words, width, fixed, ntotal, qwords, nq, b0, b1, num_candidates, dists, rows, counts, bounds, hist, group, ahead,
                spec, bits, kept):
    """Admit the rows of blocks [b0, b1) into each question's buffer (see module doc). Questions go in pairs
    through each group of blocks, so one load of a code word serves two of them. The first pass over a block
    (the first question or pair) prefetches the block `ahead` blocks on. With `spec`, each question starts from
    its speculative bound (recorded there); without, from `bounds` as given."""
    dist_a = np.empty(LANES, np.uint32)
    dist_b = np.empty(LANES, np.uint32)
    if spec is not None:
        for q in range(nq):
            spec[q] = _speculative_bound(words, width, ntotal, qwords, np.uint64(q) * width, b0, b1, num_candidates, bits,
                                         hist, dist_a)
            bounds[q] = spec[q]
    for g0 in range(b0, b1, group):
        g1 = min(b1, g0 + group)
        for q in range(0, nq - 1, 2):
            qbase = np.uint64(q) * width
            for b in range(g0, g1):
                if q == 0 and ahead > 0:
                    prefetch_block(words, b + ahead, b1, width)
                base = np.uint64(b) * width * U_LANES
                distances_pair(words, base, width, fixed, qwords, qbase, dist_a, dist_b)
                row0 = np.int64(b) * LANES
                nrows = min(LANES, ntotal - row0)
                passing = within(dist_a, bounds[q], nrows)
                if passing and append(dist_a, passing, row0, q, dists, rows, counts, words, base, width, kept):
                    tighten(q, num_candidates, dists, rows, counts, bounds, hist, kept)
                passing = within(dist_b, bounds[q + 1], nrows)
                if passing and append(dist_b, passing, row0, q + 1, dists, rows, counts, words, base, width, kept):
                    tighten(q + 1, num_candidates, dists, rows, counts, bounds, hist, kept)
        if nq % 2:
            q = nq - 1
            qbase = np.uint64(q) * width
            for b in range(g0, g1):
                if bounds[q] < 0:
                    break
                if nq == 1 and ahead > 0:
                    prefetch_block(words, b + ahead, b1, width)
                base = np.uint64(b) * width * U_LANES
                distances(words, base, width, qwords, qbase, dist_a)
                row0 = np.int64(b) * LANES
                passing = within(dist_a, bounds[q], min(LANES, ntotal - row0))
                if passing and append(dist_a, passing, row0, q, dists, rows, counts, words, base, width, kept):
                    tighten(q, num_candidates, dists, rows, counts, bounds, hist, kept)


@numba.njit(parallel=True, **JIT)
def _top_l(index, qwords, nq, plan, kept_codes):
    """index: ScanIndex; plan: ScanPlan; kept_codes: KeptCodes, whose buffers are (nchunks, nq,
    capacity(num_candidates), W) uint64 where the candidates' codes are kept (into its out, (nq, num_candidates, W)),
    else (nchunks, nq, 0, W) (see `buffers`)."""
    words, width, fixed, ntotal = index
    num_candidates, nchunks, bits, ahead, n_threads = plan
    kept, out_codes = kept_codes
    before = use_threads(n_threads)
    nblocks = len(words) // (width * LANES) if width > 0 else 0
    cap = capacity(num_candidates)
    dists = np.empty((nchunks, nq, cap), np.uint16)
    rows = np.empty((nchunks, nq, cap), np.int64)
    counts = np.zeros((nchunks, nq), np.int64)
    bounds = np.full((nchunks, nq), bits, np.int64)
    spec = np.full((nchunks, nq), bits, np.int64)
    group = max(1, GROUP_BYTES // (int(width) * LANES * 8))
    step = -(-nblocks // nchunks)
    for c in numba.prange(nchunks):
        hist = np.zeros(bits + 1, np.int64)
        _scan_chunk(words, width, fixed, ntotal, qwords, nq, c * step, min(nblocks, (c + 1) * step), num_candidates,
                    dists[c], rows[c], counts[c], bounds[c], hist, group, ahead, spec[c], bits, kept[c])
    out_dist = np.full((nq, num_candidates), bits + 1, np.int32)
    out_rows = np.full((nq, num_candidates), -1, np.int64)
    for q in numba.prange(nq):
        hist = np.zeros(bits + 1, np.int64)
        merge(dists, rows, counts, q, num_candidates, hist, out_dist, out_rows, kept, out_codes)
    rescans = _rescan_short_chunks(words, width, fixed, ntotal, qwords, nq, num_candidates, nchunks, bits, ahead, step,
                                   nblocks, dists, rows, counts, bounds, spec, group, out_dist, out_rows, kept, out_codes)
    restore_threads(before)
    return out_dist, out_rows, np.sum(spec < bits), rescans


@numba.njit(**JIT)
def _rescan_short_chunks(words, width, fixed, ntotal, qwords, nq, num_candidates, nchunks, bits, ahead, step, nblocks,
                         dists, rows, counts, bounds, spec, group, out_dist, out_rows, kept, out_codes):
    """Make the speculation exact: a chunk that started from a speculative bound and ended with fewer than `num_candidates`
    rows holds every row within that bound, and no more. Its missing rows are all farther, so they cannot enter a
    question's top-l when the l-th distance found is within the bound; otherwise the chunk is scanned again for
    that question from no bound and the question merged again. Returns how many (chunk, question) scans were redone."""
    hist = np.zeros(bits + 1, np.int64)
    rescans = 0
    for q in range(nq):
        again = False
        for c in range(nchunks):
            if (num_candidates > 0 and spec[c, q] < bits and counts[c, q] < num_candidates
                    and spec[c, q] < out_dist[q, num_candidates - 1]):
                counts[c, q], bounds[c, q] = 0, bits
                _scan_chunk(words, width, fixed, ntotal, qwords[q * width : (q + 1) * width], 1, c * step,
                            min(nblocks, (c + 1) * step), num_candidates, dists[c, q : q + 1], rows[c, q : q + 1],
                            counts[c, q : q + 1], bounds[c, q : q + 1], hist, group, ahead, None, bits,
                            kept[c, q : q + 1])
                again = True
                rescans += 1
        if again:
            out_dist[q, :] = bits + 1
            out_rows[q, :] = -1
            merge(dists, rows, counts, q, num_candidates, hist, out_dist, out_rows, kept, out_codes)
    return rescans


@numba.njit(**dict(JIT, fastmath=False))  # fast-math would let LLVM assume no NaN, which is not >= 0
def sign_words(emb, width):
    """(Q, D) float -> (Q, width) uint64 codes: bit 1 where e >= 0 (docs/method.md#hash-layer's sign,
    `core.hashing.pack_codes`), laid out as `layout.to_words(pack_codes(emb))`: numpy packbits' bytes (the first
    dimension the most significant bit) read as little-endian words, zeros past D."""
    nq, d = emb.shape
    out = np.zeros((nq, width), np.uint64)
    for q in range(nq):
        for w in range(width):
            first = 64 * w
            word = U0
            for i in range(min(64, d - first)):  # dimension i of the word: bit i ^ 7 (byte i // 8, big-endian)
                word |= np.uint64(emb[q, first + i] >= 0) << np.uint64(i ^ 7)  # NaN is not >= 0, as in numpy
            out[q, w] = word
    return out


@numba.njit(**JIT)
def _top_l_of_embeddings(index, emb, plan, kept_codes):
    """`_top_l` for float questions, their codes taken inside the compiled call: packing a lone question in numpy
    (`pack_codes`, then `to_words`) adds calls whose fixed cost a cold-cache search feels."""
    qwords = sign_words(emb, index.width).ravel()
    return _top_l(index, qwords, emb.shape[0], plan, kept_codes)


def hamming_top_l(codes: BlockedCodes, questions: np.ndarray, l: int, n_threads: int | None,
                  prefetch_bytes: int | None = None, stats: dict | None = None,
                  fixed: bool = True, codes_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The l nearest codes of each question by Hamming distance, ordered by (distance, row).

    questions: (Q, W) uint64 codes (see `layout.to_words`), or (Q, D) float embeddings, whose codes are their signs
    (`sign_words`). n_threads: CPU threads (None: all). Returns (Q, l) int32 distances and int64 rows; where the
    index holds fewer than l codes, the missing places have row -1 and a distance above any real one.
    prefetch_bytes: how far ahead of the scan code words are prefetched (None: PREFETCH_BYTES; 0: not at all).
    stats: where given, counts (chunk, question) scans that started from a speculative bound ("speculative_chunks")
    and those redone because it proved too tight ("rescanned_chunks").
    fixed: the distance loop compiled for the code's width where it has one (see `fixed_width`); False: the loop
    over a run-time width (the same results; tests and the bench compare the two).
    codes_out: where given, a (Q, l, W) uint64 array that receives the candidates' code words in the order of the
    rows returned (row-major, zeros where the row is -1), copied during the scan (see `buffers`): what a lone
    question's rerank reads (`fused`) instead of W scattered cache lines per candidate. It costs buffers of
    threads x Q x 2l x W words, so it is meant for a few questions.
    """
    embeddings = np.issubdtype(questions.dtype, np.floating)
    if questions.ndim != 2 or (embeddings and questions.shape[1] % 8):
        raise ValueError(f"questions of shape {questions.shape}: expected (Q, W) code words or (Q, D) embeddings, "
                         "D a multiple of 8")
    width = words_per_code(questions.shape[1] // 8) if embeddings else questions.shape[1]
    setup = ScanSetup.of(codes, len(questions), width, l, n_threads, prefetch_bytes, fixed, codes_out)
    if embeddings:
        emb = np.ascontiguousarray(questions, dtype=np.float32)
        found = _top_l_of_embeddings(setup.index, emb, setup.plan, setup.kept)
    else:
        qwords = np.ascontiguousarray(questions, dtype=np.uint64).ravel()
        found = _top_l(setup.index, qwords, len(questions), setup.plan, setup.kept)
    dist, rows, speculated, rescans = found
    count_speculation(stats, speculated, rescans)
    return dist, rows


@dataclass
class ScanSetup:
    """The compiled scan's arguments around the questions, by name."""

    index: ScanIndex
    plan: ScanPlan
    kept: KeptCodes

    @classmethod
    def of(cls, codes: BlockedCodes, nq: int, width: int, l: int, n_threads: int | None, prefetch_bytes: int | None,
           fixed: bool, codes_out: np.ndarray | None) -> "ScanSetup":
        if width != codes.width:
            raise ValueError(f"questions have {width} words per code, the index {codes.width}")
        n_threads = thread_count(n_threads)
        nchunks = max(1, min(n_threads, codes.nblocks))
        ahead = -(-(PREFETCH_BYTES if prefetch_bytes is None else prefetch_bytes) // (width * LANES * 8))  # 0: off
        if codes_out is None:
            kept = (np.empty((nchunks, nq, 0, width), np.uint64), np.empty((nq, 0, width), np.uint64))
        else:
            if codes_out.shape != (nq, l, width) or codes_out.dtype != np.uint64 or not codes_out.flags.c_contiguous:
                raise ValueError(f"codes_out: expected a contiguous ({nq}, {l}, {width}) uint64 array")
            codes_out[:] = 0
            kept = (np.empty((nchunks, nq, capacity(int(l)), width), np.uint64), codes_out)
        return cls(ScanIndex(codes.words, np.uint64(width), fixed_width(width, fixed), codes.ntotal),
                   ScanPlan(int(l), nchunks, width * 64, ahead, n_threads), KeptCodes(*kept))


def count_speculation(stats: dict | None, speculated: int, rescans: int) -> None:
    if stats is not None:
        stats["speculative_chunks"] = stats.get("speculative_chunks", 0) + int(speculated)
        stats["rescanned_chunks"] = stats.get("rescanned_chunks", 0) + int(rescans)
