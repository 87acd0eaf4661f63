"""Scores shared by training-time validation and search (docs/method.md#hash-layer)."""

from __future__ import annotations

import numpy as np
import torch


def gold_ranks(question: torch.Tensor, passage: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """(Q,) number of pool passages scored strictly above each question's gold passage (0 = ranked first).

    question (Q, D), passage (N, D) = the pooled dev passages, gold (Q,) = column of each question's positive.
    Strictly above, so a tie counts in the gold passage's favour, as the official BPR code counts
    (studio-ousia/bpr, bpr/biencoder.py, `_compute_average_rank`, at af29763).
    """
    scores = question @ passage.T  # (Q, N)
    gold_scores = scores.gather(1, gold[:, None])  # (Q, 1)
    return (scores > gold_scores).sum(dim=1)


def average_rank(question: torch.Tensor, passage: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Mean of `gold_ranks`: the dev model-selection metric of docs/method.md#model-selection."""
    return gold_ranks(question, passage, gold).float().mean()


def inner_product_from_hamming(hamming, dim: int):
    """For +-1 vectors of length d: <h_q, h_p> = d - 2 * Hamming(h_q, h_p)."""
    return dim - 2 * hamming


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest of `scores` (1-D), highest first, equal scores in position order: the same
    ranking on every machine. numpy's partition and quicksort leave equal keys in an order that differs between
    their SIMD variants (AVX-512, AVX2, baseline); here a partition only finds the k-th highest value (a value,
    the same everywhere), and a stable sort orders every position at or above it."""
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = np.flatnonzero(scores >= kth)  # ties at the k-th value included, in position order
    else:
        candidates = np.arange(len(scores))
    return candidates[np.argsort(-scores[candidates], kind="stable")[:k]]


def bm25_top(retriever, terms: list[str], k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores): the k best of n passages for one tokenised question under a bm25s retriever, best first,
    equal scores in corpus order (`top_indices`). Every passage is scored with `get_scores_from_ids`, which adds the
    terms' scores element by element, so the scores do not depend on the machine either; a question with no term
    in the corpus scores 0 everywhere."""
    ids = retriever.get_tokens_ids(terms)  # terms absent from the corpus score nothing
    scores = retriever.get_scores_from_ids(ids) if ids else np.zeros(n, dtype=np.float32)
    rows = top_indices(scores, k)
    return rows, scores[rows]
