"""Indexes over float32 DPR embeddings: exact search (IndexFlatIP) and the post-hoc baselines
(docs/method.md#search).

- flat: exact maximum inner product, DPR's own search;
- lsh: sign of projections of e_p, searched by Hamming distance from the projected question (IndexLSH), with no
  rotation, a random one, or a learned one (ITQ, faiss ITQTransform);
- pq: product quantisation (IndexPQ, inner-product metric), codebooks trained on the passage embeddings,
  searched with the continuous question (asymmetric distance);
- int8: 8-bit scalar quantisation per dimension (IndexScalarQuantizer QT_8bit), exact search over the codes;
- rabitq: RaBitQ (IndexRaBitQ), one bit per dimension plus two floats per passage, with an unbiased distance
  estimate from a `rabitq_query_bits`-bit question;
- hnsw: a graph over the float vectors (IndexHNSWFlat), the speed reference of the official BPR README;
- factory: any faiss index_factory string, for everything else.
With `index.rescore` (pq, int8, rabitq, factory) the index keeps the original float vectors too and re-scores its
top `num_candidates` exactly (IndexRefineFlat): the "quantise, then rescore" recipe, whose extra memory is the
float vectors (`rescore_bytes_per_passage`), unlike BPR's rerank, which scores the codes themselves.
`bytes_per_passage` is faiss's own code size (`sa_code_size`): what one passage costs in the index, before ids
and graph links (those are counted in index_bytes); for HNSW it is the stored float vector.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from bprlab.config.enums import IndexKind, Rotation
from bprlab.config.schema import IndexConfig
from bprlab.errors import ConfigError, StageError
from bprlab.index.base import SearchResult, SearchStats, checked_vectors, empty_result, write_faiss_file
from bprlab.index.threads import faiss_threads

FILE = "faiss.index"


def _lsh(cfg: IndexConfig, dim: int) -> faiss.Index:
    bits = cfg.code_bits or dim
    if cfg.rotation is Rotation.none:
        if bits != dim:
            raise ConfigError(f"config: index.rotation=none takes the sign of each of the {dim} dimensions: "
                              f"index.code_bits must be {dim} or null")
        return faiss.IndexLSH(dim, bits, False, False)
    if cfg.rotation is Rotation.random:
        return faiss.IndexLSH(dim, bits, True, False)  # random orthogonal projection, threshold 0
    if bits > dim:
        raise ConfigError(f"config: index.rotation=itq learns at most {dim} bits; index.code_bits={bits}")
    return faiss.IndexPreTransform(faiss.ITQTransform(dim, bits, True), faiss.IndexLSH(bits, bits, False, False))


def _pq(cfg: IndexConfig, dim: int) -> faiss.Index:
    m = cfg.pq_subquantizers or dim // 8
    if dim % m:
        raise ConfigError(f"config: index.pq_subquantizers={m} must divide the embedding dimension {dim}")
    return faiss.IndexPQ(dim, m, cfg.pq_bits, faiss.METRIC_INNER_PRODUCT)


def _hnsw(cfg: IndexConfig, dim: int) -> faiss.Index:
    index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = cfg.hnsw_ef_construction
    return index


def _factory(cfg: IndexConfig, dim: int) -> faiss.Index:
    if not cfg.factory:
        raise ConfigError("config: index.kind=factory needs index.factory (a faiss index_factory string)")
    try:
        return faiss.index_factory(dim, cfg.factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ConfigError(f"config: index.factory={cfg.factory!r}: faiss cannot build it ({exc})") from None


BUILDERS = {
    IndexKind.flat: lambda cfg, dim: faiss.IndexFlatIP(dim),
    IndexKind.int8: lambda cfg, dim: faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit,
                                                                faiss.METRIC_INNER_PRODUCT),
    IndexKind.rabitq: lambda cfg, dim: faiss.IndexRaBitQ(dim, faiss.METRIC_INNER_PRODUCT),
    IndexKind.lsh: _lsh,
    IndexKind.pq: _pq,
    IndexKind.hnsw: _hnsw,
    IndexKind.factory: _factory,
}


class FaissIndex:
    input_kind = "emb"
    device = "cpu"  # faiss's float kinds search on the CPU here (a GPU index is the binary kinds' backend)

    def __init__(self, index: faiss.Index, cfg: IndexConfig):
        self.index, self.kind = index, cfg.kind
        self.train_size = cfg.train_size
        self.threads = cfg.threads  # faiss's OpenMP threads for each search (None: as faiss has it)
        self.num_candidates = cfg.num_candidates
        self.stats = SearchStats()
        refine = faiss.downcast_index(index)
        self.rescore = isinstance(refine, faiss.IndexRefine)
        self.base = faiss.downcast_index(refine.base_index) if self.rescore else refine
        if self.rescore != cfg.rescore:
            raise StageError(f"the saved {cfg.kind.value} index was built with index.rescore={self.rescore}; "
                             f"rebuild it with `bprlab index` for index.rescore={cfg.rescore}")
        self._configure_search(cfg)

    @classmethod
    def create(cls, cfg: IndexConfig, dim: int) -> "FaissIndex":
        index = BUILDERS[cfg.kind](cfg, dim)
        if cfg.rescore:  # the float vectors kept beside the codes; k_factor is set per search
            index = faiss.IndexRefineFlat(index)
        return cls(index, cfg)

    def _configure_search(self, cfg: IndexConfig) -> None:
        if cfg.kind is IndexKind.hnsw:
            self.base.hnsw.efSearch = cfg.hnsw_ef_search
        if cfg.kind is IndexKind.rabitq:
            self.base.qb = cfg.rabitq_query_bits

    def build(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not self.index.is_trained:
            sample = vectors
            if self.train_size and self.train_size < len(vectors):
                rows = np.random.default_rng(0).choice(len(vectors), self.train_size, replace=False)
                sample = vectors[np.sort(rows)]
            try:
                self.index.train(sample)
            except RuntimeError as exc:  # e.g. fewer vectors than PQ centroids or than ITQ's PCA dimensions
                reason = str(exc).split("failed:")[-1].strip().splitlines()[0]
                raise StageError(f"faiss could not train the {self.kind.value} index on {len(sample)} passage "
                                 f"vectors: {reason}") from None
        self.add(vectors)

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def candidate_order(self, question_emb, depth: int) -> None:
        return None  # no candidate stage to measure

    def search(self, question_emb: np.ndarray, k: int) -> SearchResult:
        question_emb = checked_vectors(question_emb, self.index.d)  # faiss asserts (or worse) on anything else
        if len(question_emb) == 0:
            return empty_result(k)
        hnsw = self.kind is IndexKind.hnsw
        if hnsw:
            faiss.cvar.hnsw_stats.reset()
        if self.rescore:  # the base index proposes num_candidates, the float vectors order them
            faiss.downcast_index(self.index).k_factor = max(1.0, self.num_candidates / k)
        with faiss_threads(self.threads):
            scores, rows = self.index.search(question_emb, k)
        self.stats.queries += len(question_emb)
        # a graph search compares the question with the vectors it visits; every other kind scans them all
        self.stats.codes_scanned += faiss.cvar.hnsw_stats.ndis if hnsw else len(question_emb) * self.ntotal
        self.stats.ntotal = self.ntotal
        if self.kind is IndexKind.lsh:  # IndexLSH returns Hamming distances: smaller is better
            scores = -scores
        scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
        return SearchResult(scores, rows.astype(np.int64))

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    @property
    def rescore_bytes_per_passage(self) -> int:
        """Bytes per passage kept only for re-scoring (the float vectors), 0 without index.rescore."""
        return 4 * self.index.d if self.rescore else 0

    @property
    def bytes_per_passage(self) -> int:
        index = self.base
        if isinstance(index, faiss.IndexHNSW):  # the stored vector; the graph's links count in index_bytes
            index = faiss.downcast_index(index.storage)
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:  # what an inverted list stores per vector: sa_code_size adds the list number, which
            return int(ivf.code_size)  # the list a vector sits in already gives
        try:
            return int(index.sa_code_size())
        except RuntimeError:  # a factory index without a standalone codec: its serialised size per passage
            return round(len(faiss.serialize_index(self.base)) / max(1, self.ntotal))

    def save_files(self, directory: Path) -> None:
        write_faiss_file(self.index, directory / FILE)

    @classmethod
    def load_files(cls, cfg: IndexConfig, meta: dict, directory: Path) -> "FaissIndex":
        return cls(faiss.read_index(str(directory / FILE)), cfg)

    def write_faiss(self, path: Path) -> None:
        write_faiss_file(self.index, path)

    @classmethod
    def read_faiss(cls, cfg: IndexConfig, path: Path) -> "FaissIndex":
        return cls(faiss.read_index(str(path)), cfg)

    def describe(self) -> dict:
        return {"faiss_threads": self.threads or faiss.omp_get_max_threads()}
