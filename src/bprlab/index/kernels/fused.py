"""Candidates and rerank of a few questions in one compiled call (`scan_and_rerank`).

After a lone question's scan has streamed the whole index through the caches, everything else is cold: the
candidates' codes (W cache lines apart in the blocked layout, `layout`) and just as much the Python, numpy and
numba-dispatch code that a second call goes through. Reranking from Python then cost several times the rerank's
own work. Here the scan keeps each admitted row's code words while its block is in L1 (`hamming_top_l`'s
codes_out, see `buffers`), and the same compiled call reranks the l candidates from that contiguous copy with the
table lookup of `lut` (row-major words, the same arithmetic and order as reranking the index's own codes).

The call's time is split into its scan and its rerank by the CPU's time-stamp counter (`jit.cycle_counter`), read
around each part and scaled to the call's measured wall time; where the target has no counter, the whole call is
counted as the scan.
"""

from __future__ import annotations

import time

import numba
import numpy as np

from bprlab.index.kernels import nibble
from bprlab.index.kernels.hamming import ScanSetup, _top_l_of_embeddings, count_speculation
from bprlab.index.kernels.jit import JIT, cycle_counter
from bprlab.index.kernels.layout import BlockedCodes, words_per_code
from bprlab.index.kernels.lut import SIGNS_BY_BIT, _rerank

MAX_QUESTIONS = 8  # the kept codes cost threads x Q x 2l x W words of buffers: meant for a few questions


@numba.njit(**JIT)
def _scan_and_rerank(index, emb, plan, kept, flat_codes, k, signs_by_bit, nibbles):
    """index, plan, kept: as `hamming._top_l`'s. kept.out (Q, l, W) and flat_codes (Q * l * W,) are views of one
    buffer: the scan fills the first, the rerank reads the second as row-major codes, candidate i of question q at
    position q * l + i."""
    width, num_candidates, nchunks = index.width, plan.num_candidates, plan.nchunks
    start = cycle_counter()
    dist, rows, speculated, rescans = _top_l_of_embeddings(index, emb, plan, kept)
    scanned = cycle_counter()
    nq = emb.shape[0]
    positions = np.empty((nq, num_candidates), np.int64)
    for q in range(nq):
        for i in range(num_candidates):
            positions[q, i] = q * num_candidates + i if rows[q, i] >= 0 else -1
    scores, picked = _rerank(flat_codes, width, False, emb, positions, k, signs_by_bit, nchunks, 0, nibbles)
    out_rows = np.full(picked.shape, -1, np.int64)
    for q in range(nq):
        for i in range(picked.shape[1]):
            p = picked[q, i]
            if p >= 0:
                out_rows[q, i] = rows[p // num_candidates, p % num_candidates]
    return scores, out_rows, speculated, rescans, scanned - start, cycle_counter() - scanned


def scan_and_rerank(codes: BlockedCodes, question_emb: np.ndarray, l: int, k: int, n_threads: int | None,
                    stats: dict | None = None, nibbles: bool | None = None) -> tuple[np.ndarray, np.ndarray, tuple]:
    """`hamming_top_l` then `lut.rerank_top_k` of (Q, D) float32 questions, the same scores and rows, in one call.

    Returns (Q, k) float32 scores, int64 rows (-1: none) and the (scan, rerank) seconds of the call. stats: as in
    `hamming_top_l`. nibbles: as in `lut.rerank_top_k`."""
    emb = np.ascontiguousarray(question_emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[1] % 8:
        raise ValueError(f"questions of shape {emb.shape}: expected (Q, D) embeddings, D a multiple of 8")
    nq, width = len(emb), words_per_code(emb.shape[1] // 8)
    buffer = np.empty(nq * l * width, np.uint64)
    setup = ScanSetup.of(codes, nq, width, l, n_threads, None, True, buffer.reshape(nq, l, width))
    nibbles = nibble.AVAILABLE if nibbles is None else bool(nibbles)
    start = time.perf_counter()
    scores, rows, speculated, rescans, scan_ticks, rerank_ticks = _scan_and_rerank(
        setup.index, emb, setup.plan, setup.kept, buffer, int(k), SIGNS_BY_BIT, nibbles)
    seconds = time.perf_counter() - start
    count_speculation(stats, speculated, rescans)
    total = scan_ticks + rerank_ticks
    split = (seconds * scan_ticks / total, seconds * rerank_ticks / total) if total > 0 else (seconds, 0.0)
    return scores, rows, split
