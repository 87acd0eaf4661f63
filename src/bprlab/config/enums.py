"""The config's named choices (method, dataset kind, index kind, ...): each value with what it means.
bprlab.config.schema types its keys with them."""

from __future__ import annotations

from enum import Enum


class Method(str, Enum):
    dpr = "dpr"
    bpr = "bpr"


class Checkpoint(str, Enum):
    best = "best"  # lowest val/avg_rank from train.select_from_epoch on (the paper's model selection)
    last = "last"
    pretrained = "pretrained"  # the untrained encoder: the zero-shot row


class DatasetName(str, Enum):
    squad = "squad"
    nq = "nq"
    trivia = "trivia"
    custom = "custom"  # DPR-format files, every path given explicitly (data.*_file)
    beir = "beir"  # a BEIR folder (data.path): corpus.jsonl, queries.jsonl, qrels/<data.split>.tsv
    jsonl = "jsonl"  # a folder (data.path): corpus.jsonl + queries.jsonl with answers and/or relevant ids

    @property
    def folder(self) -> bool:
        """Read from a folder named by data.path; evaluation only unless data.train_file/dev_file are given."""
        return self in (DatasetName.beir, DatasetName.jsonl)


class AnswerMatch(str, Enum):
    string = "string"
    regex = "regex"  # CuratedTREC


class Estimator(str, Enum):
    scaled_tanh = "scaled_tanh"  # tanh(beta * e), beta = sqrt(1 + gamma * step): the paper
    ste = "ste"  # forward sign(e), backward the gradient of tanh(e) (official code)
    fixed = "fixed"  # tanh(hash.fixed_beta * e), no schedule


class CandidateLoss(str, Enum):
    margin = "margin"  # the paper: ranking hinge over all (positive, negative) pairs
    ce = "ce"  # cross-entropy over the tanh codes' scores


class IndexKind(str, Enum):
    """Index kinds by name; what each is built from, reads and searches is in bprlab.config.index_kinds."""

    flat = "flat"  # exact inner product over float vectors (faiss IndexFlatIP): DPR
    binary_flat = "binary_flat"  # Hamming linear scan over packed codes (IndexBinaryFlat) + rerank: BPR
    binary_hash = "binary_hash"  # Hamming hash-table lookup (IndexBinary[Multi]Hash) + rerank: BPR
    binary_pca = "binary_pca"  # post-hoc: sign of a PCA (+ rotation) reduction of float embeddings, BPR's search
    lsh = "lsh"  # post-hoc: sign of (rotated) projections of DPR embeddings, Hamming search (IndexLSH)
    pq = "pq"  # post-hoc: product quantisation of DPR embeddings, asymmetric inner product (IndexPQ)
    int8 = "int8"  # post-hoc: 8-bit scalar quantisation of DPR embeddings, exact search (IndexScalarQuantizer QT_8bit)
    rabitq = "rabitq"  # post-hoc: RaBitQ (IndexRaBitQ): one bit per dimension + two floats per passage
    hnsw = "hnsw"  # DPR + HNSW graph (IndexHNSWFlat): the speed reference of the official README
    factory = "factory"  # any faiss index_factory string over float embeddings (index.factory)
    bm25 = "bm25"  # lexical BM25 over the passage texts (bm25s): no encoder; the floor every dense row faces


class SearchBackend(str, Enum):
    native = "native"  # bprlab's kernels (numba JIT on CPU, torch on CUDA): the default, faster (experiments/BENCH.md)
    faiss = "faiss"  # faiss IndexBinaryFlat / IndexBinaryHash: the reference implementation


class SearchDevice(str, Enum):
    auto = "auto"  # cuda when torch sees a GPU, else cpu
    cpu = "cpu"
    cuda = "cuda"


class Rotation(str, Enum):
    """lsh: what projects the embeddings before the sign; binary_pca: what rotates the principal components."""

    none = "none"  # lsh: the coordinates themselves (index.code_bits = dimension); binary_pca: PCA alone
    random = "random"  # lsh: a random orthogonal projection (classic LSH); binary_pca: PCA + a random rotation
    itq = "itq"  # a learned rotation: iterative quantisation (ITQ) after PCA, fitted on the passage embeddings


class Pooling(str, Enum):
    cls = "cls"  # the [CLS] hidden state: the paper, DPR, BPR
    mean = "mean"  # attention-masked mean of the token states: how sentence-transformers models (MiniLM) were trained


class LoggerKind(str, Enum):
    csv = "csv"
    wandb = "wandb"
    none = "none"
