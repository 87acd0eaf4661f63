"""One index protocol for every method (docs/method.md#search); each kind's facts live in `registry.py`.

An index is built from the passage representation its kind consumes (`input_kind`: "emb" = float32 (N, D), "code" =
packed uint8 (N, D/8), "text" = the passage texts for BM25), searched with continuous question embeddings (Q, D)
(the question texts for "text"), saved to a directory and loaded back. Rows returned are passage-store row numbers;
-1 marks "no result" (a hash lookup can find fewer than k passages)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from bprlab.artifacts import atomic_dir, read_json, write_json
from bprlab.config.index_kinds import kind_of
from bprlab.config.schema import IndexConfig
from bprlab.errors import InputError, StageError
from bprlab.index.registry import implementation

META = "index.json"


@dataclass
class SearchResult:
    scores: np.ndarray  # (Q, k) float32, higher is better; -inf where rows == -1
    rows: np.ndarray  # (Q, k) int64


@dataclass
class SearchStats:
    """What the searches cost: codes (or vectors) compared per query, as a share of the index (docs/method.md#search). A graph
    search (HNSW) counts its distance computations, which can exceed the index size on a tiny index."""

    queries: int = 0
    codes_scanned: int = 0
    ntotal: int = 0
    candidate_seconds: float = 0.0  # binary kinds: Hamming candidate generation (or scoring every code)
    rerank_seconds: float = 0.0  # binary kinds: the table-lookup rerank
    extra: dict = field(default_factory=dict)

    @property
    def scanned_fraction(self) -> float:
        return self.codes_scanned / max(1, self.queries * self.ntotal)


class RetrievalIndex(Protocol):
    """What every index kind provides (bprlab.index.registry names the class of each kind)."""

    input_kind: ClassVar[str]  # "emb", "code" or "text": what it is built from and searched with
    stats: SearchStats

    @classmethod
    def create(cls, cfg: IndexConfig, dim: int | None) -> "RetrievalIndex": ...

    @classmethod
    def load_files(cls, cfg: IndexConfig, meta: dict, directory: Path) -> "RetrievalIndex":
        """Load what `save_files` wrote, configured for search by `cfg`; `meta` is index.json."""

    @classmethod
    def read_faiss(cls, cfg: IndexConfig, path: Path) -> "RetrievalIndex":
        """Load the faiss file `write_faiss` wrote (an export's index)."""

    def build(self, vectors) -> None:
        """Train (where the kind needs it) on `vectors`, then add them."""

    def add(self, vectors) -> None: ...

    def search(self, question_emb, k: int) -> SearchResult: ...

    def candidate_order(self, question_emb, depth: int) -> SearchResult | None:
        """The candidate stage alone, where the search has one: the first `depth` candidates in the order the
        stage ranks them (BPR: Hamming distance, before the rerank); None for a kind without one. Not counted in
        `stats` (a measurement beside the search, not part of it)."""

    def save_files(self, directory: Path) -> None:
        """Write the index's own files into an (empty, temporary) directory."""

    def write_faiss(self, path: Path) -> None:
        """The index as one faiss file that plain faiss reads (`bprlab export`)."""

    def describe(self) -> dict:
        """What ran the search and how it was set up, for metrics.json (backend, device, threads, buckets...)."""

    @property
    def ntotal(self) -> int: ...

    @property
    def bytes_per_passage(self) -> int:
        """Bytes of one stored passage representation (the code size)."""

    @property
    def rescore_bytes_per_passage(self) -> int:
        """Bytes per passage kept only to re-score candidates (float vectors); 0 for most kinds."""

    threads: int | None  # CPU threads for the following searches (None: every core); settable
    device: str  # "cpu" or "cuda": where searches run


def checked_vectors(vectors, dim: int, what: str = "question vectors") -> np.ndarray:
    """(Q, dim) finite floats as contiguous float32, else one InputError saying what is wrong: every kind's search
    checks its questions here before faiss or a compiled kernel sees them (a NaN there can end the process)."""
    array = np.asarray(vectors)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{what}: expected a (Q, {dim}) float array, got {array.dtype} of shape {array.shape}")
    if array.shape[1] != dim:
        raise InputError(f"{what}: {array.shape[1]} wide, the index takes {dim} (was it built with another model?)")
    array = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(f"{what}: {len(bad)} of {len(array)} are not finite (NaN or inf), the first at row {bad[0]}")
    return array


def empty_result(k: int) -> SearchResult:
    return SearchResult(np.zeros((0, k), np.float32), np.zeros((0, k), np.int64))


def create_index(cfg: IndexConfig, dim: int | None) -> RetrievalIndex:
    return implementation(cfg).create(cfg, dim)


def input_kind(cfg: IndexConfig) -> str:
    """Which passage representation the encode stage must produce for this index kind ("text": none)."""
    return kind_of(cfg).input


def save_index(index: RetrievalIndex, cfg: IndexConfig, dim: int, directory: str | Path, **extra) -> dict:
    """Atomically write the index and its metadata; index_bytes counts every file search needs."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        index.save_files(tmp)
        nbytes = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        meta = {"kind": cfg.kind.value, "dim": dim, "ntotal": index.ntotal, "index_bytes": nbytes,
                "bytes_per_passage": index.bytes_per_passage, **extra}
        write_json(tmp / META, meta)
    return meta


def load_index(cfg: IndexConfig, directory: str | Path) -> tuple[RetrievalIndex, dict]:
    """Load an index saved by `save_index`, configured for search by `cfg` (candidates, rerank, flips)."""
    directory = Path(directory)
    if not (directory / META).is_file():
        raise StageError(f"{directory}: no index here; run `bprlab index` first")
    meta = read_json(directory / META)
    if meta["kind"] != cfg.kind.value:
        raise StageError(f"{directory}: holds a {meta['kind']} index, config asks for {cfg.kind.value}")
    try:
        return implementation(cfg).load_files(cfg, meta, directory), meta
    except (RuntimeError, ValueError, OSError, EOFError, KeyError) as exc:  # truncated / garbage / missing files
        raise StageError(f"{directory}: the index files are damaged or missing ({str(exc).splitlines()[0][:100]}); "
                         "rebuild them with `bprlab index <experiment.yaml> --force`") from None


def write_faiss_file(index, path: str | Path) -> None:
    """Write a faiss index (float or binary) through a Python file object. faiss's own file writer reports a full disk
    as a RuntimeError, or only prints it when the error comes at close and leaves a truncated file behind; through
    Python both surface as OSError(ENOSPC), which the CLI reports in one line. The bytes are faiss's own format."""
    import faiss

    write = faiss.write_index_binary if isinstance(index, faiss.IndexBinary) else faiss.write_index
    with open(path, "wb") as handle:
        write(index, faiss.PyCallbackIOWriter(handle.write))


def top_k(scores: np.ndarray, rows: np.ndarray, k: int) -> SearchResult:
    """Keep the k best of each row of `scores` (Q, M), highest first, equal scores in column order (a stable sort:
    the same on every machine, and candidates in Hamming order keep their ties by row id); rows == -1 never win."""
    scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (Q, min(M, k)) columns, best first
    out_scores = np.take_along_axis(scores, best, axis=1)
    out_rows = np.where(np.isinf(out_scores), -1, np.take_along_axis(rows, best, axis=1))
    return _pad(SearchResult(out_scores, out_rows.astype(np.int64)), k)


def _pad(result: SearchResult, k: int) -> SearchResult:
    missing = k - result.rows.shape[1]
    if missing <= 0:
        return result
    q = result.rows.shape[0]
    return SearchResult(
        np.hstack([result.scores, np.full((q, missing), -np.inf, np.float32)]),
        np.hstack([result.rows, np.full((q, missing), -1, np.int64)]),
    )
