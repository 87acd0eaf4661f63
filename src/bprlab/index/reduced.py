"""Binary codes from a post-hoc linear reduction of float passage embeddings, searched exactly as BPR searches
(docs/method.md#search): the reference a learned projection to b bits is compared with.

A map R (b x D, orthonormal rows) is fitted on the passage embeddings with faiss, as `index.rotation` says:
- none: PCA to b dimensions (faiss PCAMatrix), the sign of each principal component;
- random: PCA then a random rotation of the b components (PCAMatrix with random_rotation, "PCA-RR");
- itq: PCA then iterative quantisation (faiss ITQTransform), the rotation that minimises the sign's error.
A passage's code is sign(R (e_p - mu)) (mu: the passages' mean); a question's is sign(R e_q), and the rerank scores
<R e_q, sign(R (e_p - mu))>. The question is not centred: <e_q, e_p> = <e_q, e_p - mu> + <e_q, mu>, and the second
term is the same for every passage, so R e_q keeps the order the full inner product gives.

On disk: the codes of the inner binary index (bprlab.index.binary) plus `reduction.npz` (R, and the offset c = -R mu
+ the transform's own bias), counted in index_bytes.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from bprlab.config.enums import Rotation
from bprlab.config.schema import IndexConfig
from bprlab.core.hashing import pack_codes
from bprlab.errors import ConfigError, StageError
from bprlab.index.base import SearchResult, SearchStats, checked_vectors
from bprlab.index.binary import BinaryIndex
from bprlab.index.threads import one_blas_thread

REDUCTION = "reduction.npz"


def fit_reduction(vectors: np.ndarray, bits: int, rotation: Rotation) -> tuple[np.ndarray, np.ndarray]:
    """(R (bits, D), c (bits,)) such that the passage code is sign(vectors @ R.T + c)."""
    dim = vectors.shape[1]
    if rotation is Rotation.itq:
        transform = faiss.ITQTransform(dim, bits, True)
    else:
        transform = faiss.PCAMatrix(dim, bits, 0.0, rotation is Rotation.random)
    transform.train(np.ascontiguousarray(vectors, dtype=np.float32))
    if rotation is Rotation.itq:  # x -> L2-normalised (x - mean), then PCA + rotation: the norm leaves signs alone
        linear, mean = transform.pca_then_itq, faiss.vector_to_array(transform.mean)
    else:
        linear, mean = transform, np.zeros(dim, np.float32)
    matrix = faiss.vector_to_array(linear.A).reshape(linear.d_out, linear.d_in)
    bias = faiss.vector_to_array(linear.b) if linear.have_bias else np.zeros(linear.d_out, np.float32)
    return matrix.astype(np.float32), (bias - matrix @ mean).astype(np.float32)


class ReducedBinaryIndex:
    input_kind = "emb"

    def __init__(self, cfg: IndexConfig, dim: int, matrix: np.ndarray | None = None, offset: np.ndarray | None = None,
                 inner: BinaryIndex | None = None):
        self.input_dim, self.bits = dim, cfg.code_bits or dim
        self.rotation, self.train_size = cfg.rotation, cfg.train_size
        self.matrix, self.offset = matrix, offset
        self.inner = inner or BinaryIndex(cfg, self.bits)

    @classmethod
    def create(cls, cfg: IndexConfig, dim: int) -> "ReducedBinaryIndex":
        bits = cfg.code_bits or dim
        if bits > dim:
            raise ConfigError(f"config: index.kind=binary_pca reduces the {dim}-d embeddings: index.code_bits={bits} "
                              f"must be at most {dim}")
        BinaryIndex.create(cfg, bits)  # the inner index's own checks (bytes)
        return cls(cfg, dim)

    # the inner index's state, read through
    ntotal = property(lambda self: self.inner.ntotal)
    bytes_per_passage = property(lambda self: self.inner.bytes_per_passage)
    rescore_bytes_per_passage = property(lambda self: 0)
    device = property(lambda self: self.inner.device)

    @property
    def stats(self) -> SearchStats:
        return self.inner.stats

    @stats.setter
    def stats(self, stats: SearchStats) -> None:  # reset before a timed search
        self.inner.stats = stats

    @property
    def threads(self) -> int | None:
        return self.inner.threads

    @threads.setter
    def threads(self, n: int | None) -> None:
        self.inner.threads = n

    def build(self, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        sample = vectors
        if self.train_size and self.train_size < len(vectors):
            sample = vectors[np.sort(np.random.default_rng(0).choice(len(vectors), self.train_size, replace=False))]
        if len(sample) <= self.bits:  # centred, n vectors span at most n - 1 directions
            raise StageError(f"binary_pca: {len(sample)} passage vectors span fewer than the {self.bits} principal "
                             "components asked for (index.code_bits); fit on more passages or ask for fewer bits")
        self.matrix, self.offset = fit_reduction(sample, self.bits, self.rotation)
        self.add(vectors)

    def add(self, vectors: np.ndarray) -> None:
        if self.matrix is None:
            raise StageError("binary_pca: the reduction is fitted by build(vectors) before passages are added")
        vectors = checked_vectors(vectors, self.input_dim, "passage vectors")
        self.inner.add(pack_codes(vectors @ self.matrix.T + self.offset))

    def _project(self, question_emb: np.ndarray) -> np.ndarray:
        questions = checked_vectors(question_emb, self.input_dim)
        with one_blas_thread():  # a few questions: BLAS's thread pool would cost more than the product
            return np.ascontiguousarray(questions @ self.matrix.T)

    def search(self, question_emb: np.ndarray, k: int) -> SearchResult:
        return self.inner.search(self._project(question_emb), k)

    def candidate_order(self, question_emb: np.ndarray, depth: int) -> SearchResult | None:
        return self.inner.candidate_order(self._project(question_emb), depth)

    def save_files(self, directory: Path) -> None:
        self.inner.save_files(directory)
        np.savez(directory / REDUCTION, matrix=self.matrix, offset=self.offset, rotation=self.rotation.value)

    @classmethod
    def load_files(cls, cfg: IndexConfig, meta: dict, directory: Path) -> "ReducedBinaryIndex":
        path = directory / REDUCTION
        if not path.is_file():
            raise StageError(f"{directory}: no {REDUCTION}; rebuild it with `bprlab index <experiment.yaml> --force`")
        with np.load(path) as saved:
            matrix, offset, rotation = saved["matrix"], saved["offset"], str(saved["rotation"])
        if matrix.shape != (cfg.code_bits or meta["dim"], meta["dim"]) or rotation != cfg.rotation.value:
            raise StageError(f"{path}: a {rotation} reduction to {matrix.shape[0]} bits; the config asks for "
                             f"{cfg.rotation.value} to {cfg.code_bits or meta['dim']}: rebuild it")
        inner = BinaryIndex.load_files(cfg, {**meta, "dim": matrix.shape[0]}, directory)
        return cls(cfg, meta["dim"], matrix, offset, inner)

    def write_faiss(self, path: Path) -> None:  # pragma: no cover - the registry marks the kind not exportable
        raise StageError("a binary_pca index has no plain faiss form (its question projection is not a faiss index)")

    @classmethod
    def read_faiss(cls, cfg: IndexConfig, path: Path):  # pragma: no cover - never exported
        raise StageError(f"{path}: a binary_pca index is not exported")

    def describe(self) -> dict:
        return {**self.inner.describe(), "reduction": {"rotation": self.rotation.value, "from_dim": self.input_dim,
                                                       "bits": self.bits}}

