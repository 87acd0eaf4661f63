"""<e_q, sign(e_p)> by table lookup (SPEC §1: the rerank score), for packed codes in either layout.

For a question e_q of D dimensions, T_q[p, v] = sum over the 8 dimensions of byte p of e_q[dim] * (+1 where that
bit of v is set, else -1), in numpy packbits order (the most significant bit is the first dimension). Then
<e_q, sign(e_p)> = sum over the code's bytes p of T_q[p, byte p of the code]: D/8 lookups instead of D
multiply-adds, and no unpacked (Q, l, D) float tensor. T_q is built once per question (see `_build_table`).

Codes are read as 64-bit words, blocked (`layout`, the native index) or row-major (N, W) (a faiss index's own
storage), so the reference backend reranks with the same arithmetic. In the blocked layout a row's words are W
cache lines apart: the rerank first touches every line of every candidate with short independent loads (many
misses in flight at once), then does the lookups from cache.
"""

from __future__ import annotations

import numba
import numpy as np

from bprlab.index.kernels.jit import JIT
from bprlab.index.kernels.layout import LANES, BlockedCodes, to_words

# NIBBLE_SIGNS[v, k] = +1 if bit k of the 4-bit value v (k = 0 the most significant) is set, else -1
NIBBLE_SIGNS = np.array([[1.0 if (v >> (3 - k)) & 1 else -1.0 for k in range(4)] for v in range(16)], np.float32)


@numba.njit(**JIT)
def _build_table(emb, table, nibble_signs):
    """table (W * 8 * 256,) <- T_q for one question; positions past the embedding stay 0 (zero padding bytes).

    T_q[p, v] = H[v >> 4] + L[v & 15], where H and L are the 16 signed sums of the byte's first and last four
    dimensions: 32 small sums and 256 independent additions per byte."""
    table[:] = 0.0
    high = np.empty(16, np.float32)
    low = np.empty(16, np.float32)
    for pos in range(len(emb) // 8):
        for v in range(16):
            h = np.float32(0.0)
            lo = np.float32(0.0)
            for k in range(4):
                h += nibble_signs[v, k] * emb[pos * 8 + k]
                lo += nibble_signs[v, k] * emb[pos * 8 + 4 + k]
            high[v] = h
            low[v] = lo
        base = pos * 256
        for v in range(256):
            table[base + v] = high[v >> 4] + low[v & 15]


@numba.njit(inline="always", **JIT)
def _locate(row, width, blocked):
    """(index of the row's first word, distance between its words) in either layout."""
    if blocked:
        return (row // LANES) * width * LANES + row % LANES, LANES
    return row * width, 1


@numba.njit(inline="always", **JIT)
def _lookup(words, row, width, blocked, table):
    """Sum of the code's byte lookups, with one accumulator per byte of a word (independent add chains)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
    at, stride = _locate(row, width, blocked)
    for w in range(width):
        word = words[at + w * stride]
        base = w * 2048
        s0 += table[base + (word & 255)]
        s1 += table[base + 256 + ((word >> 8) & 255)]
        s2 += table[base + 512 + ((word >> 16) & 255)]
        s3 += table[base + 768 + ((word >> 24) & 255)]
        s4 += table[base + 1024 + ((word >> 32) & 255)]
        s5 += table[base + 1280 + ((word >> 40) & 255)]
        s6 += table[base + 1536 + ((word >> 48) & 255)]
        s7 += table[base + 1792 + ((word >> 56) & 255)]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@numba.njit(**JIT)
def _best_k(scores, k):
    """Positions of the k highest scores, best first; equal scores keep their order in `scores`."""
    n = len(scores)
    k = min(k, n)
    if k == 0:
        return np.empty(0, np.int64)
    cut = -np.partition(-scores, k - 1)[k - 1]  # the k-th highest score
    picked = np.empty(k, np.int64)
    above = 0
    for i in range(n):
        above += scores[i] > cut
    ties, at = k - above, 0
    for i in range(n):
        if scores[i] > cut or (scores[i] == cut and ties > 0):
            if scores[i] == cut:
                ties -= 1
            picked[at] = i
            at += 1
    return picked[np.argsort(-scores[picked], kind="mergesort")]


@numba.njit(**JIT)
def _score_candidates(words, width, blocked, rows, table, scores, start, stop):
    """scores[i] for candidates [start, stop) of one question. Every candidate's code is touched first: short
    independent loads keep many cache misses in flight, so the lookups find the codes in cache (random rows of a
    large index otherwise stall on each one). Returns the touched words' XOR, so the loads are kept."""
    touched = np.uint64(0)
    for i in range(start, stop):
        if rows[i] >= 0:
            at, stride = _locate(rows[i], width, blocked)
            for w in range(0, width * stride, 8 * stride if stride == 1 else stride):  # each cache line
                touched ^= words[at + w]
    for i in range(start, stop):
        scores[i] = _lookup(words, rows[i], width, blocked, table) if rows[i] >= 0 else -np.inf
    return touched


@numba.njit(**JIT)
def _keep(rows, scores, k, q, out_scores, out_rows):
    order = _best_k(scores, k)  # equal scores keep candidate order
    for i in range(len(order)):
        if rows[order[i]] >= 0:
            out_scores[q, i] = scores[order[i]]
            out_rows[q, i] = rows[order[i]]


@numba.njit(parallel=True, **JIT)
def _rerank(words, width, blocked, emb, rows, k, nibble_signs, nchunks):
    """A thread per question; with fewer questions than threads, a question's candidates are split instead."""
    nq, depth = rows.shape
    out_scores = np.full((nq, k), -np.inf, np.float32)
    out_rows = np.full((nq, k), -1, np.int64)
    sink = np.zeros(max(nq, nchunks), np.uint64)
    if nq >= nchunks:
        for q in numba.prange(nq):
            table = np.empty(width * 2048, np.float32)
            _build_table(emb[q], table, nibble_signs)
            scores = np.empty(depth, np.float32)
            sink[q] = _score_candidates(words, width, blocked, rows[q], table, scores, 0, depth)
            _keep(rows[q], scores, k, q, out_scores, out_rows)
        return out_scores, out_rows, sink
    table = np.empty(width * 2048, np.float32)
    scores = np.empty(depth, np.float32)
    step = -(-depth // nchunks)
    for q in range(nq):
        _build_table(emb[q], table, nibble_signs)
        for c in numba.prange(nchunks):
            sink[c] ^= _score_candidates(words, width, blocked, rows[q], table, scores, c * step,
                                         min(depth, (c + 1) * step))
        _keep(rows[q], scores, k, q, out_scores, out_rows)
    return out_scores, out_rows, sink


@numba.njit(**JIT)
def _keep_best(scores, rows, count, k):
    """Stable: the k best of the first `count` (rows ascending among equal scores); returns the k-th score."""
    order = _best_k(scores[:count], k)
    kept_scores, kept_rows = scores[order].copy(), rows[order].copy()
    scores[:k] = kept_scores
    rows[:k] = kept_rows
    return kept_scores[k - 1]


@numba.njit(parallel=True, **JIT)
def _score_all(words, width, blocked, ntotal, emb, k, nchunks, nibble_signs):
    nq = emb.shape[0]
    cap = max(2 * k, k + 256)
    buf_scores = np.empty((nchunks, nq, cap), np.float32)
    buf_rows = np.empty((nchunks, nq, cap), np.int64)
    counts = np.zeros((nchunks, nq), np.int64)
    tables = np.empty((nq, width * 2048), np.float32)
    for q in numba.prange(nq):
        _build_table(emb[q], tables[q], nibble_signs)
    step = -(-ntotal // nchunks)
    for c in numba.prange(nchunks):
        for q in range(nq):
            floor, count = -np.inf, 0
            for row in range(c * step, min(ntotal, (c + 1) * step)):
                score = _lookup(words, row, width, blocked, tables[q])
                if score > floor:  # a later row never wins a tie
                    buf_scores[c, q, count] = score
                    buf_rows[c, q, count] = row
                    count += 1
                    if count == cap:
                        floor = _keep_best(buf_scores[c, q], buf_rows[c, q], count, k)
                        count = k
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
        order = _best_k(scores, k)
        out_scores[q, : len(order)] = scores[order]
        out_rows[q, : len(order)] = rows[order]
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


def rerank_top_k(codes, question_emb: np.ndarray, rows: np.ndarray, k: int, n_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each question's candidate rows by <e_q, sign(e_p)>: (Q, k) float32 scores, int64 rows.

    Equal scores keep the candidates' order (Hamming distance, then row); rows -1 (no candidate) never win."""
    words, width, blocked, _ = _as_words(codes)
    emb = _check(question_emb, width)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    scores, rows, _ = _rerank(words, width, blocked, emb, rows, int(k), NIBBLE_SIGNS, max(1, int(n_threads)))
    return scores, rows


def score_all_top_k(codes, question_emb: np.ndarray, k: int, n_threads: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best codes of the whole index by <e_q, sign(e_p)> (the no-candidate-generation ablation); equal
    scores are ordered by row."""
    words, width, blocked, ntotal = _as_words(codes)
    emb = _check(question_emb, width)
    nchunks = max(1, min(n_threads, ntotal))
    return _score_all(words, width, blocked, ntotal, emb, int(k), nchunks, NIBBLE_SIGNS)
