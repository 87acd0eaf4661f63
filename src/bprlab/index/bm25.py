"""BM25 behind the index protocol: the lexical floor every dense row is compared with (`index.kind=bm25`).

Built from the passage store's texts (title + text, as DPR's BM25 baseline indexes them) with bm25s (Lucene's
BM25 scoring, k1 = 1.2, b = 0.75; English stopwords; Snowball English stemming via PyStemmer), searched with the
question texts: `input_kind = "text"`, so no encoder runs for it. Tokenising and ranking are in Python, one question
at a time (equal scores in corpus order, core.scoring.top_indices, so every machine ranks alike), fine for BEIR-sized
corpora and the demo; for 21M Wikipedia passages use a Lucene index (pyserini), as the BPR paper's BM25 rows do.
On disk: bm25s's own files (sparse score matrix + vocabulary), memory-mapped at load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from bprlab.config.schema import IndexConfig
from bprlab.core.scoring import bm25_top
from bprlab.errors import StageError
from bprlab.index.base import SearchResult, SearchStats

FOLDER = "bm25"


def _stemmer():
    try:
        import Stemmer
    except ImportError:  # pragma: no cover - PyStemmer is a dependency; without it BM25 runs unstemmed
        return None
    return Stemmer.Stemmer("english").stemWords


def _tokenize(texts: list[str], stemmer):
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)


class BM25Index:
    input_kind = "text"

    device = "cpu"
    rescore_bytes_per_passage = 0

    def __init__(self, cfg: IndexConfig, retriever=None, ntotal: int = 0, nbytes: int = 0):
        self.cfg, self.retriever, self._ntotal, self._nbytes = cfg, retriever, ntotal, nbytes
        self.stats = SearchStats()
        self.stemmer = _stemmer()

    @classmethod
    def create(cls, cfg: IndexConfig, dim: int | None = None) -> "BM25Index":
        return cls(cfg)

    def build(self, texts: Iterable[str]) -> None:
        import bm25s

        texts = list(texts)
        self.retriever = bm25s.BM25(k1=1.2, b=0.75)
        self.retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False),
                             show_progress=False)
        self._ntotal = len(texts)

    def add(self, texts: Iterable[str]) -> None:  # pragma: no cover - bm25s indexes a corpus at once
        raise NotImplementedError("BM25 indexes the whole corpus at once: call build(texts)")

    def candidate_order(self, question_emb, depth: int) -> None:
        return None  # no candidate stage to measure

    def search(self, questions: list[str], k: int) -> SearchResult:
        n = self.ntotal
        depth = min(k, n)
        tokens = _tokenize(list(questions), self.stemmer)
        rows = np.full((len(questions), k), -1, dtype=np.int64)
        scores = np.full((len(questions), k), -np.inf, dtype=np.float32)
        for i, terms in enumerate(tokens if depth else ()):
            best, best_scores = bm25_top(self.retriever, terms, depth, n)  # equal scores in corpus order
            best = best[best_scores > 0]  # a passage sharing no term with the question is not retrieved
            rows[i, : len(best)], scores[i, : len(best)] = best, best_scores[: len(best)]
        self.stats.queries += len(questions)
        self.stats.codes_scanned += len(questions) * n  # the posting lists of the query terms: counted as a scan
        self.stats.ntotal = n
        return SearchResult(scores, rows)

    @property
    def ntotal(self) -> int:
        return self._ntotal

    @property
    def bytes_per_passage(self) -> int:
        """The sparse index's bytes per passage (score matrix + vocabulary), as saved."""
        return round(self._nbytes / max(1, self.ntotal))

    def save_files(self, directory: Path) -> None:
        self.retriever.save(str(directory / FOLDER))
        self._nbytes = sum(f.stat().st_size for f in (directory / FOLDER).rglob("*") if f.is_file())

    @classmethod
    def load_files(cls, cfg: IndexConfig, meta: dict, directory: Path) -> "BM25Index":
        import bm25s

        folder = directory / FOLDER
        retriever = bm25s.BM25.load(str(folder), mmap=True)
        nbytes = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        return cls(cfg, retriever, meta["ntotal"], nbytes)

    def write_faiss(self, path: Path) -> None:
        raise StageError("index.kind=bm25 has no faiss form (a sparse lexical index); export a dense or binary row")

    @classmethod
    def read_faiss(cls, cfg: IndexConfig, path: Path) -> "BM25Index":
        raise StageError("index.kind=bm25 has no faiss form")

    def describe(self) -> dict:
        return {}
