"""The implementations behind BinaryIndex's search: candidates by Hamming distance, rerank, exhaustive scoring.

- NativeSearch (default, `index.backend: native`): the numba kernels of `bprlab.index.kernels` on the CPU, codes
  in the blocked layout, hash tables as row-id buckets over the same codes (one copy of the codes);
- TorchSearch (`index.device: cuda` / auto with a GPU, linear scan): the same search as torch operations on the
  device; a hash index generates its candidates on the CPU (NativeSearch) and reranks there too;
- FaissSearch (`index.backend: faiss`): faiss IndexBinaryFlat / IndexBinaryHash / IndexBinaryMultiHash, the
  reference (GpuIndexBinaryFlat on a CUDA device when the installed faiss has GPUs), reranked with the same table
  lookup over faiss's own storage. faiss's hash buckets hold their own copy of the codes, so the faiss hash backend
  keeps a second, row-ordered copy for the rerank.
Every implementation returns candidates ordered by (distance, row), except faiss, whose order of ties is its own.
NativeSearch also offers candidates and rerank in one compiled call (`scan_and_rerank`, `kernels.fused`), which
BinaryIndex takes where it applies: a linear scan of a few questions, whose separate rerank waits on caches the
scan has flushed.
"""

from __future__ import annotations

import logging
from typing import Protocol

import faiss
import numpy as np

from bprlab.core.hashing import pack_codes
from bprlab.index.kernels import buckets, fused, hamming, lut
from bprlab.index.kernels.layout import BlockedCodes, to_words
from bprlab.index.threads import faiss_threads

log = logging.getLogger(__name__)


class HashSettings:
    def __init__(self, bits: int, tables: int, flips: int):
        self.bits, self.tables, self.flips = bits, tables, flips


class Search(Protocol):
    def candidates(self, question_emb: np.ndarray, num_candidates: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(Q, num_candidates) int32 Hamming distances and int64 rows (-1: none) from the questions' codes (the signs of
        the (Q, D) float32 embeddings, `core.hashing.pack_codes`), and the number of codes compared."""

    def rerank(self, question_emb: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    # optional: scan_and_rerank(question_emb, num_candidates, k) -> (scores, rows, scanned, scan s, rerank s) or None

    def score_all(self, question_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def row_chunks(self): ...


class NativeSearch:
    def __init__(self, codes: np.ndarray, n_threads: int | None, hashing: HashSettings | None = None,
                 tables: list[buckets.BucketTable] | None = None):
        self.codes = BlockedCodes.from_rows(codes)
        self.n_threads = n_threads
        self.hashing, self.tables = hashing, tables
        if hashing is not None:
            self.masks = buckets.flip_masks(hashing.bits, hashing.flips)

    def candidates(self, question_emb, num_candidates):
        if self.hashing is None:  # the codes are packed inside the compiled scan
            dist, rows = hamming.hamming_top_l(self.codes, question_emb, num_candidates, self.n_threads)
            return dist, rows, len(question_emb) * self.codes.ntotal
        question_codes = pack_codes(question_emb)
        dist, rows, scanned = buckets.probe(self.codes, to_words(question_codes), question_codes, self.tables,
                                            self.hashing.bits, self.masks, num_candidates, self.n_threads)
        return dist, rows, int(scanned.sum())

    def rerank(self, question_emb, rows, k):
        return lut.rerank_top_k(self.codes, question_emb, rows, k, self.n_threads)

    def scan_and_rerank(self, question_emb, num_candidates, k):
        """`candidates` then `rerank` in one compiled call, the same results, for a linear scan of at most
        `fused.MAX_QUESTIONS` questions; None otherwise."""
        if self.hashing is not None or len(question_emb) > fused.MAX_QUESTIONS:
            return None
        scores, rows, (scan_seconds, rerank_seconds) = fused.scan_and_rerank(self.codes, question_emb, num_candidates,
                                                                            k, self.n_threads)
        return scores, rows, len(question_emb) * self.codes.ntotal, scan_seconds, rerank_seconds

    def score_all(self, question_emb, k):
        return lut.score_all_top_k(self.codes, question_emb, k, self.n_threads)

    def row_chunks(self):
        return self.codes.iter_rows()


class TorchSearch:
    def __init__(self, codes: np.ndarray, device: str):
        from bprlab.index.kernels import torch_search

        self.kernels = torch_search
        self.codes = torch_search.TorchCodes(np.asarray(codes), device)

    def candidates(self, question_emb, num_candidates):
        dist, rows = self.kernels.hamming_top_l(self.codes, pack_codes(question_emb), num_candidates)
        return dist, rows, len(question_emb) * self.codes.ntotal

    def rerank(self, question_emb, rows, k):
        return self.kernels.rerank_top_k(self.codes, question_emb, rows, k)

    def score_all(self, question_emb, k):
        return self.kernels.score_all_top_k(self.codes, question_emb, k)

    def row_chunks(self, chunk: int = 1 << 16):
        words = self.codes.words
        for start in range(0, self.codes.ntotal, chunk):
            part = words[start : start + chunk].cpu().numpy()
            yield part.view(np.uint8).reshape(len(part), -1)[:, : self.codes.code_bytes]


class FaissSearch:
    def __init__(self, codes: np.ndarray, dim: int, n_threads: int | None, hashing: HashSettings | None = None,
                 device: str = "cpu"):
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        self.dim, self.n_threads, self.hashing = dim, n_threads, hashing
        if hashing is None:
            self._cpu_copy = faiss.IndexBinaryFlat(dim)
            self._cpu_copy.add(codes)
            self.rows_store = None  # the flat index's own storage serves the rerank
            self.index = _to_gpu(self._cpu_copy) if device == "cuda" else self._cpu_copy
        else:
            if hashing.tables == 1:
                self.index = faiss.IndexBinaryHash(dim, hashing.bits)
            else:
                self.index = faiss.IndexBinaryMultiHash(dim, hashing.tables, hashing.bits)
            self.index.nflip = hashing.flips
            self.index.add(codes)
            self.rows_store = codes  # faiss's buckets cannot give codes back by row

    def _stored_codes(self) -> np.ndarray:
        if self.rows_store is not None:
            return self.rows_store
        index = self._cpu_copy
        size = index.ntotal * index.code_size  # a view of the flat index's own storage (no copy)
        return faiss.rev_swig_ptr(index.xb.data(), size).reshape(-1, index.code_size)

    def candidates(self, question_emb, num_candidates):
        question_codes = pack_codes(question_emb)
        with faiss_threads(self.n_threads):
            if self.hashing is None:
                dist, rows = self.index.search(question_codes, num_candidates)
                return dist, rows.astype(np.int64), len(question_codes) * self.index.ntotal
            counters = faiss.cvar.indexBinaryHash_stats
            counters.reset()
            dist, rows = self.index.search(question_codes, num_candidates)
            return dist, rows.astype(np.int64), int(counters.ndis)

    def rerank(self, question_emb, rows, k):
        return lut.rerank_top_k(self._stored_codes(), question_emb, rows, k, self.n_threads)

    def score_all(self, question_emb, k):
        return lut.score_all_top_k(self._stored_codes(), question_emb, k, self.n_threads)

    def row_chunks(self, chunk: int = 1 << 16):
        codes = self._stored_codes()
        for start in range(0, len(codes), chunk):
            yield codes[start : start + chunk]


def _to_gpu(index):
    if not hasattr(faiss, "GpuIndexBinaryFlat") or faiss.get_num_gpus() == 0:
        raise RuntimeError("this faiss has no GPU support")
    config = faiss.GpuIndexBinaryFlatConfig()
    gpu = faiss.GpuIndexBinaryFlat(faiss.StandardGpuResources(), index.d, config)
    gpu.add(faiss.rev_swig_ptr(index.xb.data(), index.ntotal * index.code_size).reshape(-1, index.code_size))
    return gpu
