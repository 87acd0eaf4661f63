"""The evaluate stage: test questions -> search the saved index -> DPR top-k accuracy + memory and latency.

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
from bprlab.data.readers import read_qa
from bprlab.data.records import QARecord
from bprlab.data.registry import data_paths
from bprlab.errors import StageError
from bprlab.eval.answers import has_answer
from bprlab.eval.metrics import top_k_accuracy
from bprlab.index.base import SearchResult, SearchStats, load_index
from bprlab.runs import RunPaths, search_tag

log = logging.getLogger(__name__)


def evaluate(cfg: RunConfig) -> dict:
    """Writes <run>/eval/<weights>-<search>/metrics.json (+ retrieval.npz) and returns the metrics."""
    paths, data = RunPaths(cfg), data_paths(cfg.data)
    index, meta = load_index(cfg.index, paths.index)
    questions = read_qa(data.test)[: cfg.eval.max_questions]
    if not questions:
        raise StageError(f"{data.test}: no questions to evaluate")
    question_emb, encode_seconds = encode_questions(cfg, paths.checkpoint(), [q.question for q in questions])
    depth = max(cfg.eval.top_k)
    result, search_seconds = timed_search(index, question_emb, depth, cfg.index.search_batch_size)
    store = PassageStore.open(data.passages)
    if len(store) != index.ntotal:
        raise StageError(f"{paths.index}: index holds {index.ntotal} passages, {data.passages} has {len(store)}")
    hits = answer_hits(questions, result.rows, store, cfg.data.answer_match.value)
    metrics = {
        **top_k_accuracy(hits, cfg.eval.top_k),
        "index_bytes": meta["index_bytes"],
        "bytes_per_passage": index.bytes_per_passage,
        "ms_per_query": 1000.0 * search_seconds / len(questions),
        "search_batch_size": cfg.index.search_batch_size,
        "num_passages": index.ntotal,
        "num_questions": len(questions),
        "scanned_fraction": index.stats.scanned_fraction,
        "code_bits": meta["dim"] if index.input_kind == "code" else None,
        "question_encode_ms_per_query": 1000.0 * encode_seconds / len(questions),
        "method": cfg.method.value,
        "search": search_tag(cfg.index),
        "checkpoint": cfg.checkpoint.value,
        "dataset": cfg.data.dataset.value,
        "encoder": cfg.model.name,
        "faiss_threads": _faiss_threads(),
    }
    if index.input_kind == "code":  # where the search time goes, and what ran it
        metrics["search_split_ms_per_query"] = {
            "candidates": 1000.0 * index.stats.candidate_seconds / len(questions),
            "rerank": 1000.0 * index.stats.rerank_seconds / len(questions),
        }
        metrics["search_backend"] = {"backend": cfg.index.backend.value, "device": index.device,
                                     "threads": cfg.index.threads}
    if cfg.index.kind is IndexKind.binary_hash:  # the bucket size goes beside the share it scanned (SPEC §4)
        metrics["hash"] = {"bits": cfg.index.hash_bits, "tables": cfg.index.hash_tables, "flips": cfg.index.hash_flips,
                           "buckets_per_table": 2 ** cfg.index.hash_bits}
    with atomic_dir(paths.eval) as tmp:
        np.savez_compressed(tmp / "retrieval.npz", rows=result.rows, scores=result.scores, hits=hits)
        write_json(tmp / "metrics.json", metrics)
    return metrics


def encode_questions(cfg: RunConfig, checkpoint: Path | None, questions: list[str]) -> tuple[np.ndarray, float]:
    """Continuous question embeddings e_q (Q, D) with the trained (or pretrained) question encoder."""
    if checkpoint is None:
        model, model_cfg = BiEncoder.from_pretrained(cfg.model.name, cfg.model.projection_dim), cfg
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
