"""BPR search (docs/method.md#search): Hamming candidate generation over packed passage codes, then rerank by <e_q,
sign(e_p)>.

Candidates come from a linear scan or a hash-table lookup (keys on the first `hash_bits` bits of a code, or on
`hash_tables` disjoint slices; every bucket within `hash_flips` bit flips of the question's key is probed, so a
query scans only part of the corpus, counted in `stats.scanned_fraction`). The l candidates are reranked by
<e_q, sign(e_p)> with a per-question lookup table; the ablations skip the rerank (Hamming order) or the
candidates (every code scored). Which implementation runs is a search setting (`binary_search`): index.backend
(native kernels or faiss, the reference) and index.device (cpu or cuda); they return the same rows and scores.

On disk an index is `codes.npy`, the (N, D/8) packed codes in row order (numpy packbits, bit 1 for e >= 0), plus
for a hash index `buckets.npz` (per table: sorted keys, offsets, row ids). No float passage vector is stored, and
the codes are held once: the file is memory-mapped, and the search structures are built from it when the first
question arrives. Equal Hamming distances are ordered by row id (the native and torch implementations).

The official implementation this follows is studio-ousia/bpr, bpr/index.py (`FaissBinaryIndex`, at 36920a5).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bprlab.config.enums import IndexKind, SearchBackend
from bprlab.config.schema import IndexConfig
from bprlab.core.scoring import inner_product_from_hamming
from bprlab.errors import ConfigError, StageError
from bprlab.index.base import SearchResult, SearchStats, checked_vectors, empty_result, top_k, write_faiss_file
from bprlab.index.binary_search import FaissSearch, HashSettings, NativeSearch, Search, TorchSearch
from bprlab.index.kernels.buckets import BucketTable, slice_keys

CODES = "codes.npy"
BUCKETS = "buckets.npz"
SAVE_CHUNK_ROWS = 1 << 16


class BinaryIndex:
    input_kind = "code"

    def __init__(self, cfg: IndexConfig, dim: int, codes: np.ndarray | None = None,
                 tables: list[BucketTable] | None = None):
        from bprlab.core.devices import resolve_device  # torch, loaded only when an index is made

        self.dim = dim
        self.hashing = HashSettings(cfg.hash_bits, cfg.hash_tables, cfg.hash_flips) \
            if cfg.kind is IndexKind.binary_hash else None
        self.num_candidates, self.rerank = cfg.num_candidates, cfg.rerank
        self.candidate_generation = cfg.candidate_generation
        self.backend, self.n_threads = cfg.backend, cfg.threads
        self.device = resolve_device(cfg.device, "index.device").type
        self._codes = np.zeros((0, dim // 8), np.uint8) if codes is None else codes  # row-major, until searched
        self._tables = tables
        self._search: Search | None = None
        self._ntotal = len(self._codes)
        self.stats = SearchStats()

    @classmethod
    def create(cls, cfg: IndexConfig, dim: int) -> "BinaryIndex":
        if dim % 8:
            raise ConfigError(f"config: binary codes are packed in bytes: the code length {dim} is not a multiple of 8")
        if cfg.kind is IndexKind.binary_hash and cfg.hash_bits * cfg.hash_tables > dim:
            raise ConfigError(
                f"config: index.hash_bits x index.hash_tables = {cfg.hash_bits * cfg.hash_tables} exceeds the {dim}-bit code"
            )
        return cls(cfg, dim)

    # ------------------------------------------------------------------------------------------ building

    def build(self, vectors: np.ndarray) -> None:
        self.add(vectors)

    def add(self, vectors: np.ndarray) -> None:
        codes = np.asarray(vectors)
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] * 8 != self.dim:
            raise ValueError(f"expected packed codes of shape (N, {self.dim // 8}) uint8, got {codes.dtype} {codes.shape}")
        existing = self._row_codes()
        self._codes = codes if len(existing) == 0 else np.concatenate([existing, codes])
        self._ntotal = len(self._codes)
        self._search, self._tables = None, None

    def _row_codes(self) -> np.ndarray:
        if self._search is None:
            return self._codes
        return np.concatenate(list(self._search.row_chunks()) or [np.zeros((0, self.dim // 8), np.uint8)])

    @property
    def codes(self) -> np.ndarray:
        """The (N, bits/8) packed codes in row order (the memory-mapped file until the first search)."""
        return self._row_codes()

    @property
    def tables(self) -> list[BucketTable]:
        if self._tables is None:
            codes = self._row_codes()
            self._tables = [BucketTable.build(slice_keys(codes, self.hashing.bits, t)) for t in range(self.hashing.tables)]
        return self._tables

    @property
    def threads(self) -> int | None:
        return self.n_threads

    @threads.setter
    def threads(self, n: int | None) -> None:
        """CPU threads for the following searches (None: every core)."""
        self.n_threads = n
        if self._search is not None and hasattr(self._search, "n_threads"):
            self._search.n_threads = n

    @property
    def ntotal(self) -> int:
        return self._ntotal

    @property
    def bytes_per_passage(self) -> int:
        return self.dim // 8

    @property
    def rescore_bytes_per_passage(self) -> int:
        return 0  # the rerank scores the codes themselves: no float vector is kept

    @property
    def resident_codes(self) -> np.ndarray:
        """The array the search reads (the native backend's blocked words once a question has arrived, else the
        row-major codes): what a read-bandwidth reference should stream over."""
        search = self._searcher()
        return search.codes.words if isinstance(search, NativeSearch) else self.codes

    def describe(self) -> dict:
        info = {"search_backend": {"backend": self.backend.value, "device": self.device, "threads": self.n_threads}}
        if self.hashing is not None:  # the bucket size goes beside the share it scanned (docs/method.md#search)
            info["hash"] = {"bits": self.hashing.bits, "tables": self.hashing.tables, "flips": self.hashing.flips,
                            "buckets_per_table": 2 ** self.hashing.bits}
        return info

    # ------------------------------------------------------------------------------------------ search

    def _searcher(self) -> Search:
        """Build the search structures from the row-major codes the first time a question arrives; the row-major
        array (often a memory map of codes.npy) is released, so the codes are held once."""
        if self._search is None:
            if self.backend is SearchBackend.faiss:
                device = self.device if self.hashing is None else "cpu"
                self._search = FaissSearch(self._codes, self.dim, self.n_threads, self.hashing, device)
            elif self.device == "cuda" and self.hashing is None:
                self._search = TorchSearch(self._codes, self.device)
            else:
                self._search = NativeSearch(self._codes, self.n_threads, self.hashing,
                                            self.tables if self.hashing else None)
            self._codes = None
        return self._search

    def candidate_order(self, question_emb: np.ndarray, depth: int) -> SearchResult | None:
        """The first `depth` Hamming candidates of each question in Hamming order (ties by row id), scored
        <h_q, h_p> = D - 2 Hamming: what the rerank starts from (docs/method.md#search); None without a candidate
        stage (index.candidate_generation=false)."""
        if not self.candidate_generation:
            return None
        question_emb = checked_vectors(question_emb, self.dim)
        if len(question_emb) == 0:
            return empty_result(depth)
        hamming, rows, _ = self._checked_searcher().candidates(question_emb, depth)
        return top_k(inner_product_from_hamming(hamming.astype(np.float32), self.dim), rows, depth)

    def _checked_searcher(self) -> Search:
        if self.ntotal == 0:
            raise StageError("the binary index is empty: nothing to search")
        return self._searcher()

    def search(self, question_emb: np.ndarray, k: int) -> SearchResult:
        question_emb = checked_vectors(question_emb, self.dim)  # (Q, D) finite float32
        if len(question_emb) == 0:
            return empty_result(k)
        search = self._checked_searcher()
        start = time.perf_counter()
        if not self.candidate_generation:  # the ablation: <e_q, sign(e_p)> against every stored code
            scores, rows = search.score_all(question_emb, k)
            self._count(len(question_emb), len(question_emb) * self.ntotal, time.perf_counter() - start)
            return SearchResult(scores, rows)
        num_candidates = self.num_candidates if self.rerank else k
        both = getattr(search, "scan_and_rerank", None) if self.rerank else None
        found = both(question_emb, num_candidates, k) if both else None
        if found is not None:  # one compiled call (a few questions on the native scan): its parts timed inside
            scores, rows, scanned, scan_seconds, rerank_seconds = found
            self._count(len(question_emb), scanned, scan_seconds)
            self.stats.rerank_seconds += rerank_seconds
            return SearchResult(scores, rows)
        hamming, rows, scanned = search.candidates(question_emb, num_candidates)  # (Q, num_candidates) each
        self._count(len(question_emb), scanned, time.perf_counter() - start)
        if not self.rerank:
            scores = inner_product_from_hamming(hamming.astype(np.float32), self.dim)
            return top_k(scores, rows, k)  # Hamming order; drops -1 padding to the end
        start = time.perf_counter()
        scores, rows = search.rerank(question_emb, rows, k)
        self.stats.rerank_seconds += time.perf_counter() - start
        return SearchResult(scores, rows)

    def _count(self, queries: int, scanned: int, seconds: float) -> None:
        self.stats.candidate_seconds += seconds
        self.stats.queries += queries
        self.stats.codes_scanned += scanned
        self.stats.ntotal = self.ntotal

    # ------------------------------------------------------------------------------------------ files

    def save_files(self, directory: Path) -> None:
        """codes.npy written a chunk at a time with plain writes (never a second full copy, and no written pages
        mapped into this process), plus the bucket tables."""
        chunks = [self._codes] if self._search is None else self._search.row_chunks()
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                  "shape": (self.ntotal, self.dim // 8)}
        with open(directory / CODES, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            for chunk in chunks:
                for start in range(0, len(chunk), SAVE_CHUNK_ROWS):
                    handle.write(np.ascontiguousarray(chunk[start : start + SAVE_CHUNK_ROWS]).tobytes())
        if self.hashing is not None:
            arrays = {}
            for t, table in enumerate(self.tables):
                arrays.update({f"keys{t}": table.keys, f"offsets{t}": table.offsets, f"rows{t}": table.rows})
            np.savez(directory / BUCKETS, bits=self.hashing.bits, **arrays)

    def write_faiss(self, path: Path) -> None:
        """faiss IndexBinaryFlat of the codes (it keeps them, unlike faiss's hash index)."""
        import faiss

        codes = np.ascontiguousarray(self.codes)
        flat = faiss.IndexBinaryFlat(self.dim)
        flat.add(codes)
        write_faiss_file(flat, path)

    @classmethod
    def read_faiss(cls, cfg: IndexConfig, path: Path) -> "BinaryIndex":
        """From the IndexBinaryFlat `write_faiss` wrote; a hash config searches it with the linear scan (the export
        keeps the codes, not the buckets)."""
        import dataclasses

        import faiss

        flat = faiss.read_index_binary(str(path))
        codes = faiss.vector_to_array(flat.xb).reshape(flat.ntotal, flat.code_size)
        return cls(dataclasses.replace(cfg, kind=IndexKind.binary_flat), flat.d, codes)

    @classmethod
    def load_files(cls, cfg: IndexConfig, meta: dict, directory: Path) -> "BinaryIndex":
        dim = meta["dim"]
        if not (directory / CODES).is_file():
            raise StageError(f"{directory}: no {CODES} (an index from an older bprlab, or damaged); "
                             "rebuild it with `bprlab index <experiment.yaml> --force`")
        codes = np.load(directory / CODES, mmap_mode="r")
        if codes.ndim != 2 or codes.shape[1] * 8 != dim:
            raise StageError(f"{directory / CODES}: codes of shape {codes.shape}, index.json says {dim} bits; rebuild it")
        tables = None
        if cfg.kind is IndexKind.binary_hash:
            with np.load(directory / BUCKETS) as saved:
                if int(saved["bits"]) != cfg.hash_bits or f"keys{cfg.hash_tables - 1}" not in saved or \
                        f"keys{cfg.hash_tables}" in saved:
                    raise StageError(f"{directory}: built with other hash settings than index.hash_bits="
                                     f"{cfg.hash_bits}, index.hash_tables={cfg.hash_tables}; rebuild it")
                tables = [BucketTable(saved[f"keys{t}"], saved[f"offsets{t}"], saved[f"rows{t}"])
                          for t in range(cfg.hash_tables)]
        return cls(cfg, dim, codes=codes, tables=tables)
