"""Top-k selection over float scores (the rerank's last step), stable: equal scores keep their order.

The k-th highest score is found by bucketing rather than by a quickselect: the finite scores are mapped linearly
onto CUT_BUCKETS buckets between their minimum and maximum (monotone: a higher score never lands in a lower
bucket), a histogram gives the bucket that holds the k-th highest, and only that bucket's few scores are sorted.
The k picked positions are then ordered by one sort of (score, position) keys: one pass and a small sort instead
of numpy's partition of every score.
"""

from __future__ import annotations

import numba
import numpy as np

# No fast-math here (jit.EXACT): it lets LLVM assume no infinities, and -inf (no candidate) must compare as the
# lowest score.
from bprlab.index.kernels.jit import EXACT

CUT_BUCKETS = 1024
SIGN = np.uint32(0x80000000)


@numba.njit(**EXACT)
def kth_highest(scores, k):
    """The k-th highest of `scores` (1 <= k <= len(scores)); -inf counts as the lowest score. No NaN."""
    lo, hi, finite = np.inf, -np.inf, 0
    for s in scores:
        if s > -np.inf:
            lo, hi, finite = min(lo, s), max(hi, s), finite + 1
    if finite < k:
        return np.float32(-np.inf)
    if lo == hi:
        return np.float32(hi)
    scale = (CUT_BUCKETS - 1) / (np.float64(hi) - np.float64(lo))
    bucket = np.full(len(scores), -1, np.int32)  # computed once: both passes must agree on it
    hist = np.zeros(CUT_BUCKETS, np.int64)
    for i in range(len(scores)):
        if scores[i] > -np.inf:
            b = min(CUT_BUCKETS - 1, np.int32((np.float64(scores[i]) - lo) * scale))
            bucket[i] = b
            hist[b] += 1
    above, cut_bucket = 0, CUT_BUCKETS - 1
    while above + hist[cut_bucket] < k:
        above += hist[cut_bucket]
        cut_bucket -= 1
    inside = np.empty(hist[cut_bucket], np.float32)
    at = 0
    for i in range(len(scores)):
        if bucket[i] == cut_bucket:
            inside[at] = scores[i]
            at += 1
    inside.sort()
    return inside[len(inside) - (k - above)]


@numba.njit(inline="always", **EXACT)
def _descending_key(bits, position):
    """A uint64 that sorts by score, highest first, then by position: `bits` are the float32 score's bits, read
    as an integer that orders like the float (-0.0 is passed as 0.0's bits: equal scores, equal keys)."""
    ascending = ~bits if bits & SIGN else bits | SIGN
    return (np.uint64(~ascending) << np.uint64(32)) | np.uint64(position)


@numba.njit(**EXACT)
def best_k(scores, k):
    """Positions of the k highest scores, best first; equal scores keep their order in `scores` (< 2**32 long)."""
    n = len(scores)
    k = min(k, n)
    if k == 0:
        return np.empty(0, np.int64)
    cut = kth_highest(scores, k)
    above = 0
    for i in range(n):
        above += scores[i] > cut
    ties, at = k - above, 0
    keys = np.empty(k, np.uint64)
    bits = scores.view(np.uint32)
    for i in range(n):
        if scores[i] > cut or (scores[i] == cut and ties > 0):
            if scores[i] == cut:
                ties -= 1
            keys[at] = _descending_key(bits[i] if scores[i] != 0 else np.uint32(0), i)
            at += 1
    keys.sort()
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)


@numba.njit(**EXACT)
def keep_best(scores, rows, count, k):
    """Stable: the k best of the first `count` (rows ascending among equal scores); returns the k-th score."""
    order = best_k(scores[:count], k)
    kept_scores, kept_rows = scores[order].copy(), rows[order].copy()
    scores[:k] = kept_scores
    rows[:k] = kept_rows
    return kept_scores[k - 1]
