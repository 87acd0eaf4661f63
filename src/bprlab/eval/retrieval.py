"""The evaluate stage: test questions -> search the saved index -> DPR top-k accuracy (answer strings) and/or
qrels metrics (nDCG@10, MRR@10, recall; bprlab.eval.relevance) + memory and latency, and a TREC run file.

Search time covers index search (candidate generation and reranking) only: question encoding is excluded and
timed separately, and the batch size is recorded beside it (SPEC §5).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bprlab.artifacts import atomic_dir, write_json
from bprlab.config.loader import from_dict
from bprlab.config.schema import IndexKind, RunConfig
from bprlab.core.encoder import BiEncoder, load_biencoder, load_tokenizer
from bprlab.data.collate import Collator
from bprlab.data.passage_store import PassageStore
from bprlab.data.questions import read_test_questions
from bprlab.data.records import QARecord
from bprlab.data.registry import data_paths
from bprlab.errors import StageError
from bprlab.eval.answers import has_answer
from bprlab.eval.metrics import top_k_accuracy
from bprlab.eval.outcomes import QUERY_PREFIX, question_digest
from bprlab.eval.relevance import DEPTH, per_query_relevance, run_entries, summarize_relevance, write_trec_run
from bprlab.index.base import SearchResult, SearchStats, load_index
from bprlab.runs import RunPaths, check_index_weights, search_tag

log = logging.getLogger(__name__)


def evaluate(cfg: RunConfig) -> dict:
    """Writes <run>/eval/<weights>-<search>/ (metrics.json, retrieval.npz, run.trec) and returns the metrics."""
    paths, data = RunPaths(cfg), data_paths(cfg.data)
    index, meta = load_index(cfg.index, paths.index)
    store = PassageStore.open(data.passages)
    if len(store) != index.ntotal:
        raise StageError(f"{paths.index}: index holds {index.ntotal} passages, {data.passages} has {len(store)}")
    questions = read_test_questions(cfg.data, data, store)[: cfg.eval.max_questions]
    judged, answered = any(q.relevant for q in questions), any(q.answers for q in questions)
    depth = _depth(cfg, judged)
    texts = [q.question for q in questions]
    if index.input_kind == "text":  # BM25 searches the question texts
        queries, encode_seconds = texts, 0.0
    else:
        checkpoint = paths.checkpoint()
        queries, encode_seconds = encode_questions(cfg, checkpoint, texts)  # a damaged checkpoint says so here
        check_index_weights(paths.index, checkpoint, cfg)
    ignore_own = cfg.data.dataset.folder and cfg.data.ignore_identical_ids
    result, search_seconds = timed_search(index, queries, depth + ignore_own, cfg.index.search_batch_size)
    removed = 0
    if ignore_own:
        result, removed = drop_identical_ids(questions, result, store, depth)
    entries = run_entries(questions, result.rows, result.scores, store.ids)
    hits = answer_hits(questions, result.rows, store, cfg.data.answer_match.value) if answered else None
    per_query = per_query_relevance(questions, entries) if judged else {}
    metrics = {
        **(top_k_accuracy(hits, cfg.eval.top_k) if answered else {}),
        **summarize_relevance(per_query),
        **_costs(cfg, index, meta, search_seconds, encode_seconds, len(questions)),
        # what was evaluated, by content: seeds and rows are aggregated only over equal question sets and corpora
        "questions_sha256": question_digest(questions),
        "corpus_sha256": store.fingerprint(),
    }
    if cfg.data.dataset.folder:
        metrics["ignore_identical_ids"] = {"enabled": bool(ignore_own), "results_removed": removed}
    with atomic_dir(paths.eval) as tmp:
        arrays = {"rows": result.rows, "scores": result.scores, **({"hits": hits} if answered else {}),
                  **{QUERY_PREFIX + key: values for key, values in per_query.items()}}  # per-question outcomes
        np.savez_compressed(tmp / "retrieval.npz", **arrays)
        write_trec_run(tmp / "run.trec", entries, f"{cfg.name}-{search_tag(cfg.index)}")
        write_json(tmp / "metrics.json", metrics)
    return metrics


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
        cap = cfg.index.num_candidates if cfg.index.kind.binary and cfg.index.candidate_generation else DEPTH
        depth = max(depth, min(DEPTH, cap))
    return depth


def _costs(cfg: RunConfig, index, meta: dict, search_seconds: float, encode_seconds: float, n: int) -> dict:
    """Memory and latency beside the accuracy (SPEC §5), and what produced them."""
    metrics = {
        "index_bytes": meta["index_bytes"],
        "bytes_per_passage": index.bytes_per_passage,
        # floats kept only to re-score candidates (index.rescore); BPR's rerank needs none
        "rescore_bytes_per_passage": getattr(index, "rescore_bytes_per_passage", 0),
        "ms_per_query": 1000.0 * search_seconds / n,
        "search_batch_size": cfg.index.search_batch_size,
        "num_passages": index.ntotal,
        "num_questions": n,
        "scanned_fraction": index.stats.scanned_fraction,
        "code_bits": meta["dim"] if index.input_kind == "code" else None,
        "question_encode_ms_per_query": 1000.0 * encode_seconds / n,
        "method": "bm25" if index.input_kind == "text" else cfg.method.value,
        "search": search_tag(cfg.index),
        "checkpoint": str(cfg.checkpoint),
        "dataset": cfg.data.dataset.value,
        "data_path": cfg.data.path,
        "encoder": None if index.input_kind == "text" else cfg.model.name,
        "pooling": None if index.input_kind == "text" else cfg.model.pooling.value,
        "faiss_threads": _faiss_threads(),
    }
    if index.input_kind == "code":  # where the search time goes, and what ran it
        metrics["search_split_ms_per_query"] = {
            "candidates": 1000.0 * index.stats.candidate_seconds / n,
            "rerank": 1000.0 * index.stats.rerank_seconds / n,
        }
        metrics["search_backend"] = {"backend": cfg.index.backend.value, "device": index.device,
                                     "threads": cfg.index.threads}
    if cfg.index.kind is IndexKind.binary_hash:  # the bucket size goes beside the share it scanned (SPEC §4)
        metrics["hash"] = {"bits": cfg.index.hash_bits, "tables": cfg.index.hash_tables, "flips": cfg.index.hash_flips,
                           "buckets_per_table": 2 ** cfg.index.hash_bits}
    return metrics


def encode_questions(cfg: RunConfig, checkpoint: Path | None, questions: list[str]) -> tuple[np.ndarray, float]:
    """Continuous question embeddings e_q (Q, D) with the trained (or pretrained) question encoder."""
    if checkpoint is None:
        model, model_cfg = BiEncoder.from_model_config(cfg.model), cfg
    else:
        model, saved = load_biencoder(checkpoint)
        model_cfg = from_dict(saved)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.train.accelerator != "cpu" else "cpu")
    model = model.to(device).eval()
    collator = Collator(load_tokenizer(model_cfg.model.name), model_cfg.data.max_question_length,
                        model_cfg.data.max_passage_length, passage_text_token_type=0)
    out, start, size = [], time.perf_counter(), cfg.eval.question_batch_size
    with torch.inference_mode():
        for i in tqdm(range(0, len(questions), size), desc="encode questions", unit="batch"):
            batch = {k: v.to(device) for k, v in collator.questions(questions[i : i + size]).items()}
            out.append(model.encode_question(**batch).float().cpu().numpy())
    return np.concatenate(out), time.perf_counter() - start


def timed_search(index, question_emb: np.ndarray, k: int, batch_size: int) -> tuple[SearchResult, float]:
    """Search in batches of `batch_size`, timing only the index's search calls. One untimed call first builds the
    search structures and loads the compiled kernels, so ms_per_query is the steady state."""
    index.search(question_emb[:1], k)
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
