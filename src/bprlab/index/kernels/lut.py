"""<e_q, sign(e_p)> by table lookup (docs/method.md#hash-layer: the rerank score), for packed codes in either layout.

For a question e_q of D dimensions, T_q[p, v] = sum over the 8 dimensions of byte p of e_q[dim] * (+1 where that
bit of v is set, else -1), in numpy packbits order (the most significant bit is the first dimension). Then
<e_q, sign(e_p)> = sum over the code's bytes p of T_q[p, byte p of the code]: D/8 lookups instead of D
multiply-adds, and no unpacked (Q, l, D) float tensor. T_q is built once per question (see `_build_table`).
Where numba compiles for AVX-512 the lookups take nibbles of 16 codes at a time instead (`nibble`: fewer loads per
candidate); the byte tables serve other CPUs and faiss's row-major storage in the scoring of every code.

Codes are read as 64-bit words, blocked (`layout`, the native index) or row-major (N, W) (a faiss index's own
storage), so the reference backend reranks with the same arithmetic. In the blocked layout a row's words are W
cache lines apart: the rerank prefetches the lines of the candidates in bursts, one burst ahead of those it
scores (many misses in flight at once), the first before the question's table is built.
"""

from __future__ import annotations

import numba
import numpy as np

from bprlab.index.kernels import nibble
from bprlab.index.kernels.jit import EXACT, JIT, prefetch, restore_threads, thread_count, use_threads
from bprlab.index.kernels.layout import LANES, U0, U1, U2, U3, U4, BlockedCodes, locate, to_words
from bprlab.index.kernels.select import best_k, keep_best

PREFETCH_BURST = 32  # candidates whose codes are prefetched together, a burst ahead (see `_score_candidates`)
# NIBBLE_SIGNS[v, k] = +1 if bit k of the 4-bit value v (k = 0 the most significant) is set, else -1
NIBBLE_SIGNS = np.array([[1.0 if (v >> (3 - k)) & 1 else -1.0 for k in range(4)] for v in range(16)], np.float32)
SIGNS_BY_BIT = np.ascontiguousarray(NIBBLE_SIGNS.T)  # [k, v]: what `_build_table` reads, one row per bit
# unsigned constants for index arithmetic (numba types uint64 op int64 as float64; see `hamming`)
U8, U16, U24, U32, U40, U48, U56 = (np.uint64(i) for i in (8, 16, 24, 32, 40, 48, 56))
# The rerank's float arithmetic is compiled without fast-math (jit.EXACT): reassociated or fused differently where
# a kernel is compiled into another (`fused` inlines the rerank after the scan), the same scores differed in the
# last bit, and candidates whose scores differ in the last bit can swap. Each sum keeps the order it is written in.
U255, U256, U512, U768, U1024, U1280, U1536, U1792, U2048 = (np.uint64(i) for i in
                                                             (255, 256, 512, 768, 1024, 1280, 1536, 1792, 2048))


@numba.njit(**EXACT)
def _build_table(emb, table, signs_by_bit):
    """table (W * 8 * 256,) <- T_q for one question; positions past the embedding are 0 (zero padding bytes).

    T_q[p, v] = H[v >> 4] + L[v & 15], where H and L are the 16 signed sums of the byte's first and last four
    dimensions (signs_by_bit[k, v]: the sign of bit k of nibble v). The loops over the 16 nibble values take their
    length from `signs_by_bit` at run time: with a constant 16 LLVM unrolled them and vectorised the other way,
    into scatters instead of contiguous stores."""
    npos = np.uint64(len(emb) // 8)
    table[npos * U256 :] = 0.0
    n16 = np.uint64(signs_by_bit.shape[1])
    high = np.empty(16, np.float32)
    low = np.empty(16, np.float32)
    for pos in range(U0, npos):
        d = pos * U8
        h0, h1, h2, h3 = emb[d], emb[d + U1], emb[d + U2], emb[d + U3]
        l0, l1, l2, l3 = emb[d + U4], emb[d + U4 + U1], emb[d + U4 + U2], emb[d + U4 + U3]
        for v in range(U0, n16):
            s0, s1, s2, s3 = signs_by_bit[0, v], signs_by_bit[1, v], signs_by_bit[2, v], signs_by_bit[3, v]
            high[v] = (s0 * h0 + s1 * h1) + (s2 * h2 + s3 * h3)
            low[v] = (s0 * l0 + s1 * l1) + (s2 * l2 + s3 * l3)
        for hv in range(U0, U16):
            base = pos * U256 + hv * U16
            h = high[hv]
            for lv in range(U0, n16):
                table[base + lv] = h + low[lv]


@numba.njit(inline="always", **JIT)
def _lookup(words, row, width, blocked, table):
    """Sum of the code's byte lookups, with one accumulator per byte of a word (independent add chains)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
    at, stride = locate(row, width, blocked)
    for w in range(U0, width):
        word = words[at + w * stride]
        base = w * U2048
        s0 += table[base + (word & U255)]
        s1 += table[base + U256 + ((word >> U8) & U255)]
        s2 += table[base + U512 + ((word >> U16) & U255)]
        s3 += table[base + U768 + ((word >> U24) & U255)]
        s4 += table[base + U1024 + ((word >> U32) & U255)]
        s5 += table[base + U1280 + ((word >> U40) & U255)]
        s6 += table[base + U1536 + ((word >> U48) & U255)]
        s7 += table[base + U1792 + (word >> U56)]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@numba.njit(inline="always", **JIT)
def _prefetch_code(words, row, width, blocked):
    """Prefetch every cache line of a row's code (W lines apart in the blocked layout) into L1: with the burst
    prefetch the lines are used soon after they arrive, so L1 beats L2 (with one candidate prefetched per candidate
    scored, L2 had been the better target). The measurements are in git history; `make bench` keeps them true."""
    at, stride = locate(row, width, blocked)
    step = U8 if stride == U1 else stride  # each cache line once
    for w in range(U0, width * stride, step):
        prefetch(words, at + w)


@numba.njit(**JIT)
def _prefetch_first(words, width, blocked, rows, start, stop, count):
    """Start the misses of the first `count` candidates of [start, stop)."""
    for i in range(start, min(stop, start + count)):
        if rows[i] >= 0:
            _prefetch_code(words, rows[i], width, blocked)


@numba.njit(**EXACT)
def _score_some(words, width, blocked, rows, table, scores, start, stop, nibbles, block, acc):
    if nibbles:  # 16 candidates at a time from in-register 4-bit tables
        nibble.score_range(words, width, blocked, rows, table, scores, start, stop, block, acc)
        return
    for i in range(start, stop):
        scores[i] = _lookup(words, rows[i], width, blocked, table) if rows[i] >= 0 else -np.inf


@numba.njit(**JIT)
def _score_candidates(words, width, blocked, rows, table, scores, start, stop, burst, nibbles):
    """scores[i] for candidates [start, stop) of one question, `burst` at a time: the codes of the next burst are
    prefetched together before the current one is scored (the first burst already by `_prefetch_first`). Random
    rows of a large index would otherwise stall on each of their cache lines in turn. Bursts beat one candidate's
    prefetch per candidate scored (at any distance) and the whole question's prefetched first, where the codes do
    not fit in the last-level cache (`make bench`, 21M codes). Prefetches spread among the lookups compete with them
    for the load ports and fill buffers; a burst issues them while the previous burst's lines are in L2.
    `table` holds N_q (`nibble`) when `nibbles`, else T_q."""
    block = np.empty(width * nibble.U_GROUP, np.uint64)
    acc = np.empty(nibble.GROUP, np.float32)
    if burst <= 0:
        _score_some(words, width, blocked, rows, table, scores, start, stop, nibbles, block, acc)
        return
    for first in range(start, stop, burst):
        _prefetch_first(words, width, blocked, rows, first + burst, stop, burst)
        _score_some(words, width, blocked, rows, table, scores, first, min(stop, first + burst), nibbles, block, acc)


@numba.njit(**JIT)
def _fill_table(emb, table, signs_by_bit, nibbles):
    if nibbles:
        words = (len(emb) + 63) // 64  # nibbles of the zero padding look up 0
        nibble.build_table(emb, table[: words * nibble.NIBBLES_PER_WORD * nibble.GROUP], NIBBLE_SIGNS)
    else:
        _build_table(emb, table, signs_by_bit)


@numba.njit(**JIT)
def _keep(rows, scores, k, q, out_scores, out_rows):
    order = best_k(scores, k)  # equal scores keep candidate order
    for i in range(len(order)):
        if rows[order[i]] >= 0:
            out_scores[q, i] = scores[order[i]]
            out_rows[q, i] = rows[order[i]]


@numba.njit(parallel=True, **JIT)
def _rerank(words, width, blocked, emb, rows, k, signs_by_bit, nchunks, burst, nibbles):
    """A thread per question; with fewer questions than threads (nchunks), a question's candidates are split
    instead."""
    before = use_threads(nchunks)
    nq, depth = rows.shape
    out_scores = np.full((nq, k), -np.inf, np.float32)
    out_rows = np.full((nq, k), -1, np.int64)
    if nq >= nchunks:
        for q in numba.prange(nq):
            _prefetch_first(words, width, blocked, rows[q], 0, depth, burst)
            table = np.empty(np.int64(width) * 2048, np.float32)
            _fill_table(emb[q], table, signs_by_bit, nibbles)
            scores = np.empty(depth, np.float32)
            _score_candidates(words, width, blocked, rows[q], table, scores, 0, depth, burst, nibbles)
            _keep(rows[q], scores, k, q, out_scores, out_rows)
        restore_threads(before)
        return out_scores, out_rows
    table = np.empty(np.int64(width) * 2048, np.float32)
    scores = np.empty(depth, np.float32)
    step = -(-depth // nchunks)
    for q in range(nq):
        for c in range(nchunks):
            _prefetch_first(words, width, blocked, rows[q], c * step, min(depth, (c + 1) * step), burst)
        _fill_table(emb[q], table, signs_by_bit, nibbles)
        for c in numba.prange(nchunks):
            _score_candidates(words, width, blocked, rows[q], table, scores, c * step, min(depth, (c + 1) * step),
                              burst, nibbles)
        _keep(rows[q], scores, k, q, out_scores, out_rows)
    restore_threads(before)
    return out_scores, out_rows


@numba.njit(inline="always", **JIT)
def _offer(score, row, floor, count, buf_scores, buf_rows):
    """Add one code's score to a chunk's buffer for one question when above the floor; the count after it.
    Nothing here calls out (see `buffers.append`): the caller cuts a full buffer."""
    if score > floor:  # a later row never wins a tie
        buf_scores[count] = score
        buf_rows[count] = row
        count += 1
    return count


@numba.njit(parallel=True, **JIT)
def _score_all(words, width, blocked, ntotal, emb, k, nchunks, signs_by_bit, nibbles, n_threads):
    """Every code against every question; chunks of whole blocks, one per thread. With `nibbles` (blocked codes
    only), 16 rows of a block at a time (`nibble.score_lanes`)."""
    before = use_threads(n_threads)
    nq = emb.shape[0]
    cap = max(2 * k, k + 256)
    buf_scores = np.empty((nchunks, nq, cap), np.float32)
    buf_rows = np.empty((nchunks, nq, cap), np.int64)
    counts = np.zeros((nchunks, nq), np.int64)
    tables = np.empty((nq, np.int64(width) * 2048), np.float32)
    for q in numba.prange(nq):
        _fill_table(emb[q], tables[q], signs_by_bit, nibbles)
    step = -(-ntotal // (nchunks * LANES)) * LANES
    for c in numba.prange(nchunks):
        acc = np.empty(nibble.GROUP, np.float32)
        start, stop = c * step, min(ntotal, (c + 1) * step)
        for q in range(nq):
            # one view of each per question: a view per row cost two atomic reference counts
            table, scores, rows = tables[q], buf_scores[c, q], buf_rows[c, q]
            floor, count = -np.inf, 0
            for row0 in range(start, stop, nibble.GROUP):  # 16 rows scored, then offered
                n = min(nibble.GROUP, stop - row0)
                if nibbles:
                    nibble.score_lanes(words, width, row0, table, acc)
                else:
                    for i in range(n):
                        acc[i] = _lookup(words, row0 + i, width, blocked, table)
                for i in range(n):
                    count = _offer(acc[i], row0 + i, floor, count, scores, rows)
                    if count == cap:
                        floor, count = keep_best(scores, rows, count, k), k
            counts[c, q] = count
    out_scores = np.full((nq, k), -np.inf, np.float32)
    out_rows = np.full((nq, k), -1, np.int64)
    for q in numba.prange(nq):
        total = 0
        for c in range(nchunks):
            total += counts[c, q]
        scores = np.empty(total, np.float32)
        rows = np.empty(total, np.int64)
        at = 0
        for c in range(nchunks):  # chunks in row order: the stable sort keeps rows ascending among ties
            n = counts[c, q]
            scores[at : at + n] = buf_scores[c, q, :n]
            rows[at : at + n] = buf_rows[c, q, :n]
            at += n
        order = best_k(scores, k)
        out_scores[q, : len(order)] = scores[order]
        out_rows[q, : len(order)] = rows[order]
    restore_threads(before)
    return out_scores, out_rows


def _as_words(codes) -> tuple[np.ndarray, int, bool, int]:
    """(flat uint64 words, words per code, blocked?, number of codes) for BlockedCodes or (N, B) uint8 codes."""
    if isinstance(codes, BlockedCodes):
        return codes.words, codes.width, True, codes.ntotal
    words = to_words(codes)
    return words.reshape(-1), words.shape[1], False, len(words)


def _check(emb: np.ndarray, width: int) -> np.ndarray:
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[1] % 8 or -(-emb.shape[1] // 64) != width:
        raise ValueError(f"question embeddings of shape {emb.shape} do not match codes of {width} words")
    return emb


def rerank_top_k(codes, question_emb: np.ndarray, rows: np.ndarray, k: int, n_threads: int | None = 1,
                 burst: int = PREFETCH_BURST, nibbles: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each question's candidate rows by <e_q, sign(e_p)>: (Q, k) float32 scores, int64 rows.

    Equal scores keep the candidates' order (Hamming distance, then row); rows -1 (no candidate) never win.
    burst: how many candidates' codes are prefetched together, a burst ahead of those scored (0: none).
    nibbles: look up 16 candidates at a time in 4-bit tables (`nibble`); None: where the CPU has AVX-512."""
    words, width, blocked, _ = _as_words(codes)
    emb = _check(question_emb, width)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    nibbles = nibble.AVAILABLE if nibbles is None else bool(nibbles)
    return _rerank(words, np.uint64(width), blocked, emb, rows, int(k), SIGNS_BY_BIT, thread_count(n_threads),
                   int(burst), nibbles)


def score_all_top_k(codes, question_emb: np.ndarray, k: int, n_threads: int | None,
                    nibbles: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k best codes of the whole index by <e_q, sign(e_p)> (the no-candidate-generation ablation); equal
    scores are ordered by row. nibbles: as in `rerank_top_k`, for blocked codes (row-major ones use the byte
    tables)."""
    words, width, blocked, ntotal = _as_words(codes)
    emb = _check(question_emb, width)
    n_threads = thread_count(n_threads)
    nchunks = max(1, min(n_threads, ntotal))
    nibbles = blocked and (nibble.AVAILABLE if nibbles is None else bool(nibbles))
    return _score_all(words, np.uint64(width), blocked, ntotal, emb, int(k), nchunks, SIGNS_BY_BIT, nibbles,
                      n_threads)
