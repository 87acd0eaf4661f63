"""Retrieval metrics (docs/method.md#evaluation) and their names: metrics.json keys and logged `split/name`
keys, defined once."""

from __future__ import annotations

from typing import Sequence

import numpy as np

# metrics.json key -> the `split/name` it is logged under
LOGGED_NAMES = {
    "top1": "test/top1", "top5": "test/top5", "top20": "test/top20", "top50": "test/top50", "top100": "test/top100",
    "index_bytes": "index/bytes", "bytes_per_passage": "index/bytes_per_passage",
    "ms_per_query": "search/ms_per_query", "scanned_fraction": "search/scanned_fraction",
    "question_encode_ms_per_query": "search/question_encode_ms_per_query",
    "num_passages": "index/num_passages", "num_questions": "test/num_questions",
}

METRICS_KEYS = (
    "top1", "top5", "top20", "top50", "top100",
    "index_bytes", "bytes_per_passage", "ms_per_query", "search_batch_size", "num_passages", "num_questions",
)


def top_k_accuracy(hits: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """hits (Q, K) bool, hits[i, r] = passage ranked r for question i has an answer -> {"top{k}": percent}.

    A question counts for top-k when any of its first k passages has an answer (DPR's definition). Rows may hold
    fewer than k real results (a hash lookup can find fewer); missing results are False.
    """
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 2 or hits.shape[0] == 0:
        raise ValueError(f"hits must be a non-empty (questions, ranks) array, got shape {hits.shape}")
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), np.iinfo(np.int64).max)  # (Q,)
    return {f"top{k}": float(100.0 * np.mean(first_hit < k)) for k in ks}

