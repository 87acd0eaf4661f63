"""Per-question outcomes of an evaluation: what paired tests and seed averages are computed from.

An evaluation folder keeps them in retrieval.npz: `hits` (Q, depth) bool for answer-labelled questions, and
`query_<metric>` (Q,) float in [0, 1] for qrels metrics (NaN where a question has no judgements). A table's
unit record stores them compactly: the rank of each question's first answer-bearing passage (-1: none within
the depth), from which top-k for every k follows, and the qrels metrics as they are. Where the questions come in
clusters that are not independent of each other (squad's paragraphs; BEIR queries judged on a shared document),
`cluster` holds each question's cluster label and `cluster_unit` names it (bprlab.data.clusters): the tests
resample clusters, not questions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from bprlab.data.records import QARecord
from bprlab.errors import StageError

FIRST_HIT = "first_hit"
STAGE_FIRST = "hamming_first"  # bprlab.eval.stage: the first answer-bearing candidate in Hamming order
CLUSTER = "cluster"
CLUSTER_UNIT = "cluster_unit"
QUERY_PREFIX = "query_"
DIGITS = 5  # qrels outcomes are stored rounded: far below any difference a test can see


def question_digest(questions: Sequence[QARecord]) -> str:
    """The question set by content (ids, texts, answers, judgements): evaluations compare only on equal sets."""
    blob = json.dumps([[q.id, q.question, list(q.answers or []), dict(q.relevant or {})] for q in questions],
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def first_hits(hits: np.ndarray) -> np.ndarray:
    """(Q, depth) bool -> (Q,) int: rank (0-based) of the first passage with an answer, -1 when none."""
    hits = np.asarray(hits, dtype=bool)
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1)


def read_outcomes(eval_dir: Path) -> dict[str, list]:
    """The outcomes of one evaluation folder, JSON-ready."""
    path = Path(eval_dir) / "retrieval.npz"
    if not path.is_file():
        raise StageError(f"{path}: missing; evaluate the run again (`bprlab evaluate`)")
    with np.load(path) as data:
        out: dict[str, list] = {}
        if "hits" in data:
            first = first_hits(data["hits"]).tolist()
            if "answered" in data:  # questions judged by qrels only have no answer outcome
                first = [f if a else None for f, a in zip(first, data["answered"])]
            out[FIRST_HIT] = first
        if STAGE_FIRST in data:
            out[STAGE_FIRST] = data[STAGE_FIRST].astype(int).tolist()
        if CLUSTER in data:
            out[CLUSTER] = [str(c) for c in data[CLUSTER]]
            out[CLUSTER_UNIT] = str(data[CLUSTER_UNIT]) if CLUSTER_UNIT in data else "cluster"
        for key in data.files:
            if key.startswith(QUERY_PREFIX):
                values = np.round(data[key].astype(float), DIGITS)
                out[key[len(QUERY_PREFIX):]] = [None if np.isnan(v) else float(v) for v in values]
    return out


def outcome_vector(outcomes: dict[str, list], metric: str) -> np.ndarray | None:
    """(Q,) float per question for `metric` (top<k> from the first hits, or a stored qrels metric), in [0, 1];
    None where the evaluation has no such outcome. Questions without judgements are NaN."""
    if metric.startswith("top") and metric[3:].isdigit() and FIRST_HIT in outcomes:
        first = np.array([np.nan if f is None else f for f in outcomes[FIRST_HIT]], dtype=float)
        return np.where(np.isnan(first), np.nan, ((first >= 0) & (first < int(metric[3:]))).astype(float))
    if metric.startswith("hamming@") and metric[8:].isdigit() and STAGE_FIRST in outcomes:
        first = np.asarray(outcomes[STAGE_FIRST], dtype=float)
        return ((first >= 0) & (first < int(metric[8:]))).astype(float)
    if metric in outcomes:
        return np.array([np.nan if v is None else v for v in outcomes[metric]], dtype=float)
    return None


def outcome_clusters(outcomes: dict) -> list | None:
    """Each question's cluster label, or None where the record has none (every question its own cluster)."""
    labels = outcomes.get(CLUSTER)
    return None if labels is None else list(labels)
