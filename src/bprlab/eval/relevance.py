"""Relevance metrics from qrels (BEIR / jsonl datasets) and TREC run files.

The measures are computed by ir-measures (terrier-org/ir_measures), not here: it names them as papers do
(nDCG@10, R@100, RR@10) and computes nDCG and recall with pytrec_eval, the trec_eval C code BEIR's own
`EvaluateRetrieval` uses, so the numbers are comparable with published BEIR tables; RR@10 gets a real cutoff,
which trec_eval's recip_rank lacks. nDCG uses trec_eval's linear gain (grade / log2(rank + 1)). Ranks are the
search's own (tied scores keep the order the index returned them in, by row for the binary kinds), the same for
every measure.
Every query is in the run (a query whose search found nothing counts as 0), and scores are reported in percent
like the answer-string top-k.
"""

from __future__ import annotations

import gzip
import io
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np

from bprlab.artifacts import atomic_path
from bprlab.data.records import QARecord

MEASURES = ("nDCG@10", "RR@10", "R@10", "R@100", "R@1000")
KEYS = {"nDCG@10": "ndcg@10", "RR@10": "mrr@10", "R@10": "recall@10", "R@100": "recall@100", "R@1000": "recall@1000"}
DEPTH = 1000  # recall@1000 needs this many results per query


def query_ids(questions: Sequence[QARecord]) -> list[str]:
    """A question's own id, or its 1-based position in the test file (DPR qa files have no ids)."""
    return [q.id if q.id is not None else str(i + 1) for i, q in enumerate(questions)]


def run_entries(questions: Sequence[QARecord], rows: np.ndarray, scores: np.ndarray, doc_ids) -> list[tuple]:
    """(query id, document id, rank, score) for every returned row; `doc_ids(rows)` maps store rows to ids."""
    valid = rows >= 0
    ids = iter(doc_ids(rows[valid]))  # one lookup for every returned row (row-major order)
    out = []
    for qid, keep, score_list in zip(query_ids(questions), valid, scores):
        for rank, score in enumerate(score_list[keep], start=1):
            out.append((qid, str(next(ids)), rank, float(score)))
    return out


def relevance_metrics(questions: Sequence[QARecord], entries: list[tuple]) -> dict[str, float]:
    """nDCG@10, MRR@10, recall@{10,100,1000} in percent, averaged over the questions that have judgements."""
    return summarize_relevance(per_query_relevance(questions, entries))


def summarize_relevance(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-question outcomes (per_query_relevance) -> the percentages metrics.json reports."""
    if not per_query:
        return {}
    judged = ~np.isnan(next(iter(per_query.values())))
    return {key: 100.0 * float(values[judged].mean()) for key, values in per_query.items()} | \
        {"num_judged": int(judged.sum())}


def per_query_relevance(questions: Sequence[QARecord], entries: list[tuple]) -> dict[str, np.ndarray]:
    """{metric key: (Q,) float} in [0, 1], one value per question in order, NaN where a question has no
    judgements: the per-question outcomes paired tests compare (bprlab.report.stats)."""
    import ir_measures

    ids = query_ids(questions)
    judged = {qid: q for qid, q in zip(ids, questions) if q.relevant}
    if not judged:
        return {}
    qrels = [ir_measures.Qrel(qid, doc, grade) for qid, q in judged.items() for doc, grade in q.relevant.items()]
    # Every measure sees the search's own order: the score handed to ir-measures is minus the rank, so no two
    # documents of a query tie. (With raw scores, pytrec_eval's nDCG breaks ties by document id and RR@10 by
    # another rule; equal scores are rare with float embeddings and common with binary codes.)
    run = [ir_measures.ScoredDoc(qid, doc, -float(rank)) for qid, doc, rank, _ in entries if qid in judged]
    measures = [ir_measures.parse_measure(name) for name in MEASURES]
    position = {qid: i for i, qid in enumerate(ids)}
    out = {KEYS[name]: np.where([qid in judged for qid in ids], 0.0, np.nan) for name in MEASURES}
    # queries without any returned document are absent from iter_calc's output: they keep their 0
    for metric in ir_measures.iter_calc(measures, qrels, run):
        out[KEYS[str(metric.measure)]][position[metric.query_id]] = metric.value
    return out


TREC_RUN = "run.trec.gz"  # each evaluation's run file: `zcat` it for trec_eval


def write_trec_run(path: str | Path, entries: list[tuple], tag: str) -> None:
    """TREC run format: `query_id Q0 doc_id rank score tag`, one line per retrieved document. A path ending in .gz
    is gzip-compressed (no name or time in the header, so the same run gives the same bytes): at depth 1000 a
    BEIR-sized query set is a 100 MB text, and every evaluation keeps one."""
    tag = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag) or "bprlab"
    with atomic_path(path) as tmp, _text_writer(tmp, str(path).endswith(".gz")) as handle:
        for qid, doc, rank, score in entries:
            handle.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")


@contextmanager
def _text_writer(path: Path, compressed: bool):
    if not compressed:
        with open(path, "w", encoding="utf-8") as handle:
            yield handle
        return
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=raw, mtime=0) as packed:
        with io.TextIOWrapper(packed, encoding="utf-8") as handle:
            yield handle
