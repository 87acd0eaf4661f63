"""The candidate stage as a measurement of its own (docs/method.md#search): for a search that ranks candidates
before it reranks them (BPR's Hamming top-l), how often the answer is among the first l candidates, for several l.

`hamming@l` is the percentage of questions with an answer-bearing passage (DPR's has_answer; for a question
judged by qrels, a document of grade > 0) among the first l candidates in Hamming order. It is two things at once:
the recall of the candidate stage had l candidates been kept, and the top-l accuracy of the Hamming order alone.
Where it is near 100 at the l a search keeps, the candidate stage does not bind and the rerank decides top-k.
Per-question outcome: the rank (0-based) of the first such candidate, -1 when none is within the depth.
"""

from __future__ import annotations

import numpy as np

from bprlab.data.answers import has_answer
from bprlab.data.records import QARecord

LS = (10, 20, 50, 100, 1000)  # the l at which the stage is read
PREFIX = "hamming@"
CHUNKS = (0, 20, 100)  # candidates are read in runs starting here, so a question stops at its first find


def stage_depth(ntotal: int) -> int:
    return min(max(LS), ntotal)


def first_found(questions: list[QARecord], rows: np.ndarray, store, mode: str) -> np.ndarray:
    """(Q,) rank of the first candidate with an answer (or, for a question with judgements and no answers, a
    relevant document); -1 when none. `store` gives the candidates' texts and ids (a PassageStore)."""
    first = np.full(len(questions), -1, dtype=np.int64)
    for i, question in enumerate(questions):
        valid = rows[i][rows[i] >= 0]
        relevant = {doc for doc, grade in (question.relevant or {}).items() if grade > 0}
        for start, end in zip(CHUNKS, (*CHUNKS[1:], len(valid))):  # most answers come early: stop at the first
            part = valid[start:end]
            if question.answers:
                found = [r for r, text in enumerate(store.texts(part)) if has_answer(question.answers, text, mode)]
            else:
                found = [r for r, doc in enumerate(store.ids(part)) if doc in relevant]
            if found:
                first[i] = start + found[0]
                break
    return first


def stage_metrics(first: np.ndarray, depth: int) -> dict[str, float]:
    """hamming@l in percent, for every l within the depth searched."""
    return {f"{PREFIX}{n}": 100.0 * float(np.mean((first >= 0) & (first < n))) for n in LS if n <= depth}
