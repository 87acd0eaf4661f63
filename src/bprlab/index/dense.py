"""DPR search: exact maximum inner product over float32 passage embeddings (faiss IndexFlatIP)."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from bprlab.index.base import SearchResult, SearchStats

FILE = "faiss.index"


class FlatIndex:
    input_kind = "emb"

    def __init__(self, dim: int, index: faiss.Index | None = None):
        self.index = index if index is not None else faiss.IndexFlatIP(dim)
        self.stats = SearchStats()

    def build(self, vectors: np.ndarray) -> None:
        self.add(vectors)

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, question_emb: np.ndarray, k: int) -> SearchResult:
        scores, rows = self.index.search(np.ascontiguousarray(question_emb, dtype=np.float32), k)
        self.stats.queries += len(question_emb)
        self.stats.codes_scanned += len(question_emb) * self.ntotal
        self.stats.ntotal = self.ntotal
        scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
        return SearchResult(scores, rows.astype(np.int64))

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    @property
    def bytes_per_passage(self) -> int:
        return self.index.d * 4  # float32

    def save_files(self, directory: Path) -> None:
        faiss.write_index(self.index, str(directory / FILE))

    @classmethod
    def load_files(cls, directory: Path) -> "FlatIndex":
        index = faiss.read_index(str(directory / FILE))
        return cls(index.d, index)
