"""The evaluate stage: test questions -> search the saved index -> DPR top-k accuracy (answer strings) and/or
qrels metrics (nDCG@10, MRR@10, recall; bprlab.eval.relevance) + memory and latency, and a TREC run file.

Search time covers index search (candidate generation and reranking) only: question encoding is excluded and
timed separately, and the batch size is recorded beside it (docs/method.md#evaluation).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bprlab.artifacts import atomic_dir, write_json
from bprlab.config.index_kinds import kind_of, max_results
from bprlab.config.schema import RunConfig
from bprlab.core.question_encoder import QuestionEncoder
from bprlab.data.answers import has_answer
from bprlab.data.clusters import question_clusters
from bprlab.data.passage_store import PassageStore
from bprlab.data.paths import data_paths
from bprlab.data.questions import read_test_questions
from bprlab.data.records import QARecord
from bprlab.errors import StageError
from bprlab.eval.metrics import top_k_accuracy
from bprlab.eval.outcomes import CLUSTER, CLUSTER_UNIT, QUERY_PREFIX, STAGE_FIRST, question_digest
from bprlab.eval.relevance import DEPTH, TREC_RUN, per_query_relevance, run_entries, summarize_relevance, write_trec_run
from bprlab.eval.stage import first_found, stage_depth, stage_metrics
from bprlab.index.base import SearchResult, SearchStats, load_index
from bprlab.runs import RunPaths, search_tag
from bprlab.stamps import check_index_weights

log = logging.getLogger(__name__)


def evaluate(cfg: RunConfig) -> dict:
    """Writes <run>/eval/<weights>-<search>/ (metrics.json, retrieval.npz, run.trec.gz) and returns the metrics."""
    paths, data = RunPaths(cfg), data_paths(cfg.data)
    index, meta = load_index(cfg.index, paths.index)
    store = PassageStore.open(data.passages)
    if len(store) != index.ntotal:
        raise StageError(f"{paths.index}: index holds {index.ntotal} passages, {data.passages} has {len(store)}")
    questions = read_test_questions(cfg.data, data, store)[: cfg.eval.max_questions]
    clusters = question_clusters(questions, None if cfg.data.dataset.folder else data.test)
    judged, answered = any(q.relevant for q in questions), any(q.answers for q in questions)
    depth = _depth(cfg, judged)
    texts = [q.question for q in questions]
    if index.input_kind == "text":  # BM25 searches the question texts
        queries, encode_seconds, encoded_by = texts, 0.0, None
    else:
        checkpoint = paths.checkpoint()
        queries, encode_seconds, encoded_by = encode_questions(cfg, checkpoint, texts)  # a damaged one says so here
        check_index_weights(paths.index, checkpoint, cfg)
    ignore_own = cfg.data.dataset.folder and cfg.data.ignore_identical_ids
    result, search_seconds = timed_search(index, queries, depth + ignore_own, cfg.index.search_batch_size)
    removed = 0
    if ignore_own:
        result, removed = drop_identical_ids(questions, result, store, depth)
    first_stage = _candidate_stage(cfg, index, queries, questions, store, bool(ignore_own))
    entries = run_entries(questions, result.rows, result.scores, store.ids)
    hits = answer_hits(questions, result.rows, store, cfg.data.answer_match.value) if answered else None
    with_answers = np.array([bool(q.answers) for q in questions])  # a jsonl folder may mix answers and qrels
    per_query = per_query_relevance(questions, entries) if judged else {}
    metrics = {
        # each metric over the questions it applies to: top-k over those with answers, qrels over the judged
        **(top_k_accuracy(hits[with_answers], cfg.eval.top_k) if answered else {}),
        **({"num_answered": int(with_answers.sum())} if answered else {}),
        **summarize_relevance(per_query),
        **(stage_metrics(first_stage, stage_depth(len(store))) if first_stage is not None else {}),
        **_costs(cfg, index, meta, search_seconds, encode_seconds, len(questions), encoded_by),
        # what was evaluated, by content: seeds and rows are aggregated only over equal question sets and corpora
        "questions_sha256": question_digest(questions),
        "corpus_sha256": store.fingerprint(),
        "cluster_unit": clusters[1] if clusters else "question",
    }
    if cfg.data.dataset.folder:
        metrics["ignore_identical_ids"] = {"enabled": bool(ignore_own), "results_removed": removed}
    with atomic_dir(paths.eval) as tmp:
        arrays = {"rows": result.rows, "scores": result.scores, **({"hits": hits} if answered else {}),
                  **({"answered": with_answers} if answered and not with_answers.all() else {}),
                  **{QUERY_PREFIX + key: values for key, values in per_query.items()},  # per-question outcomes
                  **({CLUSTER: np.array(clusters[0], dtype=str), CLUSTER_UNIT: np.array(clusters[1])}
                     if clusters else {}),
                  **({STAGE_FIRST: first_stage} if first_stage is not None else {})}
        np.savez_compressed(tmp / "retrieval.npz", **arrays)
        write_trec_run(tmp / TREC_RUN, entries, f"{cfg.name}-{search_tag(cfg.index)}")
        write_json(tmp / "metrics.json", metrics)
    return metrics


def _candidate_stage(cfg: RunConfig, index, queries, questions: list[QARecord], store: PassageStore,
                     ignore_own: bool) -> np.ndarray | None:
    """Each question's first answer-bearing (or relevant) candidate in the candidate stage's own order, where the
    search has that stage (bprlab.eval.stage); None otherwise."""
    depth = stage_depth(len(store))
    stage = index.candidate_order(queries, depth + ignore_own)
    if stage is None:
        return None
    if ignore_own:
        stage, _ = drop_identical_ids(questions, stage, store, depth)
    return first_found(questions, stage.rows, store, cfg.data.answer_match.value)


def drop_identical_ids(questions: list[QARecord], result: SearchResult, store: PassageStore,
                       depth: int) -> tuple[SearchResult, int]:
    """Each query's own id removed from its results (BEIR's `ignore_identical_ids`): the rest move up, and every
    row is cut to `depth` (the search asked for one more). Returns the new result and how many were removed."""
    rows, scores = result.rows.copy(), result.scores.copy()
    valid = rows >= 0
    qids = np.array([q.id for q in questions], dtype=object)[:, None].repeat(rows.shape[1], axis=1)  # (Q, k)
    own = np.zeros(rows.shape, dtype=bool)
    own[valid] = np.array(store.ids(rows[valid]), dtype=object) == qids[valid]  # one lookup for every row
    for i in np.flatnonzero(own.any(axis=1)):
        keep = ~own[i]
        rows[i] = np.concatenate([rows[i, keep], np.full(int(own[i].sum()), -1, rows.dtype)])
        scores[i] = np.concatenate([scores[i, keep], np.full(int(own[i].sum()), -np.inf, scores.dtype)])
    return SearchResult(scores[:, :depth], rows[:, :depth]), int(own.sum())


def _depth(cfg: RunConfig, judged: bool) -> int:
    """Results per question: max(eval.top_k), and 1000 for recall@1000 where there are qrels (a binary index
    returns at most its num_candidates reranked passages)."""
    depth = max(cfg.eval.top_k)
    if judged:
        depth = max(depth, min(DEPTH, max_results(cfg.index) or DEPTH))
    return depth


def _costs(cfg: RunConfig, index, meta: dict, search_seconds: float, encode_seconds: float, n: int,
           encoded_by: RunConfig | None) -> dict:
    """Memory and latency beside the accuracy (docs/method.md#evaluation), and what produced them."""
    metrics = {
        "index_bytes": meta["index_bytes"],
        "bytes_per_passage": index.bytes_per_passage,
        # floats kept only to re-score candidates (index.rescore); BPR's rerank needs none
        "rescore_bytes_per_passage": index.rescore_bytes_per_passage,
        "ms_per_query": 1000.0 * search_seconds / n,
        "search_batch_size": cfg.index.search_batch_size,
        "num_passages": index.ntotal,
        "num_questions": n,
        "scanned_fraction": index.stats.scanned_fraction,
        "code_bits": 8 * index.bytes_per_passage if kind_of(cfg.index).binary else None,
        "question_encode_ms_per_query": 1000.0 * encode_seconds / n,
        "method": "bm25" if index.input_kind == "text" else cfg.method.value,
        "search": search_tag(cfg.index),
        "checkpoint": str(cfg.checkpoint),
        "dataset": cfg.data.dataset.value,
        "data_path": cfg.data.path if cfg.data.dataset.folder else None,
        # what encoded the questions (a checkpoint's saved settings), never an override that did not apply
        "encoder": None if encoded_by is None else encoded_by.model.name,
        "pooling": None if encoded_by is None else encoded_by.model.pooling.value,
        "faiss_threads": _faiss_threads(),
        **index.describe(),  # what ran the search (backend, device, threads; a hash index's buckets)
    }
    if index.stats.candidate_seconds or index.stats.rerank_seconds:  # where a two-stage search's time goes
        metrics["search_split_ms_per_query"] = {
            "candidates": 1000.0 * index.stats.candidate_seconds / n,
            "rerank": 1000.0 * index.stats.rerank_seconds / n,
        }
    return metrics


def encode_questions(cfg: RunConfig, checkpoint: Path | None, questions: list[str]) -> tuple[np.ndarray, float, RunConfig]:
    """Continuous question embeddings e_q (Q, D) with the run's question encoder (bprlab.core.question_encoder),
    the seconds it took, and the config the vectors come from (the checkpoint's saved one for a trained run)."""
    device = "cpu" if cfg.train.accelerator == "cpu" else "auto"
    encoder = QuestionEncoder.for_run(cfg, checkpoint, device)
    start = time.perf_counter()
    vectors = encoder.encode(questions, cfg.eval.question_batch_size)
    return vectors, time.perf_counter() - start, encoder.config


def timed_search(index, question_emb: np.ndarray, k: int, batch_size: int) -> tuple[SearchResult, float]:
    """Search in batches of `batch_size`, timing only the index's search calls. Untimed calls first build the search
    structures and compile (or load from numba's cache) the kernels of every path the timed calls take: a search
    picks its kernels by the number of questions, so one call per batch size that follows (the full batches and the
    last, shorter one). ms_per_query is then the steady state, on a fresh clone as on a warm one."""
    sizes = {len(question_emb[i: i + batch_size]) for i in range(0, len(question_emb), batch_size)}
    for size in sorted(sizes):
        index.search(question_emb[:size], k)
    index.stats = SearchStats()
    scores, rows, seconds = [], [], 0.0
    for i in tqdm(range(0, len(question_emb), batch_size), desc="search", unit="batch"):
        start = time.perf_counter()
        part = index.search(question_emb[i : i + batch_size], k)
        seconds += time.perf_counter() - start
        scores.append(part.scores)
        rows.append(part.rows)
    return SearchResult(np.concatenate(scores), np.concatenate(rows)), seconds


def answer_hits(questions: list[QARecord], rows: np.ndarray, store: PassageStore, mode: str) -> np.ndarray:
    """(Q, k) bool: does the passage at each rank contain an answer (DPR has_answer on the passage text)."""
    hits = np.zeros(rows.shape, dtype=bool)
    for i, question in enumerate(tqdm(questions, desc="match answers", unit="q")):
        valid = rows[i][rows[i] >= 0]
        for r, text in enumerate(store.texts(valid)):
            hits[i, r] = has_answer(question.answers, text, mode)
    return hits


def _faiss_threads() -> int:
    import faiss

    return faiss.omp_get_max_threads()
