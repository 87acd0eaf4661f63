"""BPR search (SPEC §4): Hamming candidate generation over packed passage codes, then rerank by <e_q, sign(e_p)>.

Candidates come from a linear scan (faiss IndexBinaryFlat) or a hash-table lookup (IndexBinaryHash, or
IndexBinaryMultiHash for several tables). A hash table keys on the first `hash_bits` bits of a code and probes
every bucket within `hash_flips` bit flips of the query's key, so it scans only part of the corpus; the share it
scans is counted per query (`stats.scanned_fraction`). A hash index cannot give codes back, so the packed codes
are kept beside it for reranking, and counted in the index bytes. The index stores no float passage vectors.

The official implementation this follows is studio-ousia/bpr, bpr/index.py (`FaissBinaryIndex`, at 36920a5).
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from bprlab.config.schema import IndexConfig, IndexKind
from bprlab.core.hashing import pack_codes, unpack_codes
from bprlab.core.scoring import inner_product_from_hamming
from bprlab.errors import ConfigError, StageError
from bprlab.index.base import SearchResult, SearchStats, top_k

FILE = "faiss.index"
CODES = "codes.npy"
EXHAUSTIVE_CHUNK = 1 << 16  # passages unpacked at a time when candidate generation is off


class BinaryIndex:
    input_kind = "code"

    def __init__(self, index: faiss.IndexBinary, cfg: IndexConfig, codes: np.ndarray | None = None):
        self.index = index
        self.dim = index.d
        self.hashed = cfg.kind is IndexKind.binary_hash
        self._codes = codes if self.hashed else None  # linear scan: codes are read from the faiss index itself
        self.num_candidates = cfg.num_candidates
        self.rerank = cfg.rerank
        self.candidate_generation = cfg.candidate_generation
        if self.hashed:
            self.index.nflip = cfg.hash_flips
        self.stats = SearchStats()

    @classmethod
    def create(cls, cfg: IndexConfig, dim: int) -> "BinaryIndex":
        if cfg.kind is IndexKind.binary_flat:
            return cls(faiss.IndexBinaryFlat(dim), cfg)
        if cfg.hash_bits * cfg.hash_tables > dim:
            raise ConfigError(
                f"config: index.hash_bits x index.hash_tables = {cfg.hash_bits * cfg.hash_tables} exceeds the {dim}-bit code"
            )
        if cfg.hash_tables == 1:
            index = faiss.IndexBinaryHash(dim, cfg.hash_bits)
        else:
            index = faiss.IndexBinaryMultiHash(dim, cfg.hash_tables, cfg.hash_bits)
        return cls(index, cfg, codes=np.zeros((0, dim // 8), np.uint8))

    # ------------------------------------------------------------------------------------------ building

    def build(self, vectors: np.ndarray) -> None:
        self.add(vectors)

    def add(self, vectors: np.ndarray) -> None:
        codes = np.ascontiguousarray(vectors, dtype=np.uint8)
        if codes.ndim != 2 or codes.shape[1] * 8 != self.dim:
            raise ValueError(f"expected packed codes of shape (N, {self.dim // 8}), got {codes.shape}")
        self.index.add(codes)
        if self.hashed:
            self._codes = np.concatenate([self._codes, codes])

    @property
    def codes(self) -> np.ndarray:
        """(N, D/8) packed passage codes, in row order."""
        if self.hashed:
            return self._codes
        size = self.index.ntotal * self.index.code_size  # a view of the linear index's own storage (no copy)
        return faiss.rev_swig_ptr(self.index.xb.data(), size).reshape(-1, self.index.code_size)

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    @property
    def bytes_per_passage(self) -> int:
        return self.dim // 8

    # ------------------------------------------------------------------------------------------ search

    def search(self, question_emb: np.ndarray, k: int) -> SearchResult:
        question_emb = np.ascontiguousarray(question_emb, dtype=np.float32)  # (Q, D)
        if not self.candidate_generation:
            return self._score_everything(question_emb, k)
        depth = self.num_candidates if self.rerank else k
        hamming, rows = self._candidates(pack_codes(question_emb), depth)  # (Q, depth) each
        if not self.rerank:
            scores = inner_product_from_hamming(hamming.astype(np.float32), self.dim)
            return top_k(scores, rows, k)  # Hamming order; also drops -1 padding to the end
        return top_k(self._rerank_scores(question_emb, rows), rows, k)

    def _candidates(self, question_codes: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        nq = len(question_codes)
        if self.hashed:
            counters = faiss.cvar.indexBinaryHash_stats
            counters.reset()
            hamming, rows = self.index.search(question_codes, depth)
            scanned = counters.ndis
        else:
            hamming, rows = self.index.search(question_codes, depth)
            scanned = nq * self.ntotal
        self._count(nq, scanned)
        return hamming, rows.astype(np.int64)

    def _rerank_scores(self, question_emb: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """<e_q, sign(e_p)> for each candidate: (Q, D) x (Q, l) rows -> (Q, l)."""
        signs = unpack_codes(self.codes[np.maximum(rows, 0)], self.dim)  # (Q, l, D) in {-1, +1}
        return np.einsum("qld,qd->ql", signs, question_emb)

    def _score_everything(self, question_emb: np.ndarray, k: int) -> SearchResult:
        """The no-candidate-generation ablation: <e_q, sign(e_p)> against every stored code."""
        codes, best = self.codes, None
        if len(codes) == 0:
            raise StageError("the binary index is empty: nothing to search")
        for start in range(0, len(codes), EXHAUSTIVE_CHUNK):
            signs = unpack_codes(codes[start : start + EXHAUSTIVE_CHUNK], self.dim)  # (C, D)
            scores = question_emb @ signs.T  # (Q, C)
            rows = np.broadcast_to(np.arange(start, start + len(signs)), scores.shape)
            if best is not None:
                scores, rows = np.hstack([best.scores, scores]), np.hstack([best.rows, rows])
            best = top_k(scores, rows, k)
        self._count(len(question_emb), len(question_emb) * len(codes))
        return best

    def _count(self, queries: int, scanned: int) -> None:
        self.stats.queries += queries
        self.stats.codes_scanned += scanned
        self.stats.ntotal = self.ntotal

    # ------------------------------------------------------------------------------------------ files

    def save_files(self, directory: Path) -> None:
        faiss.write_index_binary(self.index, str(directory / FILE))
        if self.hashed:
            np.save(directory / CODES, self._codes)

    @classmethod
    def load_files(cls, cfg: IndexConfig, dim: int, directory: Path) -> "BinaryIndex":
        index = faiss.read_index_binary(str(directory / FILE))
        if cfg.kind is IndexKind.binary_flat:
            return cls(index, cfg)
        # read_index_binary already returns the concrete class (IndexBinaryHash / IndexBinaryMultiHash)
        if index.b != cfg.hash_bits:
            raise StageError(f"{directory}: built with hash_bits={index.b}, config asks {cfg.hash_bits}; rebuild it")
        return cls(index, cfg, codes=np.load(directory / CODES))
