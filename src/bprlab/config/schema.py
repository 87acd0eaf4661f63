"""The typed config schema: the one place where every key and default is spelled.

Defaults follow the paper recipe (docs/method.md#training-recipe) except two that make a fresh laptop work
offline: the encoder is the packaged MiniLM (`model.name: minilm`) and the dataset is the embedded `squad` task. Experiment YAMLs hold
only the deltas from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional


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
    """Index kinds by name; what each is built from, reads and searches is in bprlab.index.registry."""

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


@dataclass
class SquadConfig:
    """How `bprlab prepare` builds the embedded `squad` task from SQuAD v1.1 (docs/method.md#the-squad-task)."""

    source: str = "../shared/data/squad/dev-v1.1.json"
    words_per_passage: int = 100
    dev_articles: int = 4
    test_articles: int = 8
    bm25_depth: int = 100  # BM25 passages examined per question when mining hard negatives
    hard_negatives: int = 30  # stored per question (DPR's files keep up to 30 + 30)
    other_negatives: int = 30  # random answer-free passages (DPR's `negative_ctxs`)
    seed: int = 13


@dataclass
class DataConfig:
    dataset: DatasetName = DatasetName.squad
    root: str = "data"  # prepared and downloaded files live under root/<dataset>/
    path: Optional[str] = None  # dataset=beir|jsonl: the folder holding corpus.jsonl, queries.jsonl (and qrels/)
    split: str = "test"  # dataset=beir: which qrels/<split>.tsv the evaluation reads
    # dataset=beir|jsonl: a query's own id never counts among its results, as BEIR's evaluation does by default
    # (ArguAna and Quora hold their queries in the corpus); false keeps them
    ignore_identical_ids: bool = True
    # Empty means the dataset's conventional file under root/<dataset>/ (see bprlab.data.registry).
    train_file: Optional[str] = None
    dev_file: Optional[str] = None
    test_file: Optional[str] = None
    passages_file: Optional[str] = None
    answer_match: AnswerMatch = AnswerMatch.string
    num_hard_negatives: int = 1  # per question per step; re-sampled every epoch
    num_other_negatives: int = 0
    shuffle_negatives: bool = True
    strip_question_mark: bool = True  # training questions only (docs/method.md#training-recipe)
    max_question_length: int = 256
    max_passage_length: int = 256
    num_workers: int = 0
    # Validation average rank: each dev question brings its positive, these negatives, into one pool per device.
    val_hard_negatives: int = 30
    val_other_negatives: int = 30
    max_val_questions: Optional[int] = None
    squad: SquadConfig = field(default_factory=SquadConfig)


@dataclass
class ModelConfig:
    name: str = "minilm"  # `minilm` = the packaged all-MiniLM-L6-v2; the paper uses bert-base-uncased
    projection_dim: Optional[int] = None  # a linear layer on [CLS] sets the code length; None keeps hidden size
    # How a tower turns token states into e. The paper's [CLS] is the default for every encoder; the packaged
    # MiniLM declares mean pooling + L2 normalisation as its own (its modules.json): experiments/squad/zero_shot_own.yaml.
    pooling: Pooling = Pooling.cls
    # With a projection: start both towers' projection layers from the same random weights (false: independent,
    # as the official code). A short run cannot align two unrelated random projections: the squad code-length
    # twins (50 CPU steps) set it.
    same_projection_init: bool = False
    normalize: bool = False  # L2-normalise e (inner product = cosine), as sentence-transformers' Normalize module
    # Token type of the passage text segment in `[CLS] title [SEP] text [SEP]`; None: 1 for bpr, 0 for dpr.
    passage_text_token_type: Optional[int] = None


@dataclass
class HashConfig:
    estimator: Estimator = Estimator.scaled_tanh
    gamma: float = 0.1  # beta = sqrt(1 + gamma * step) (HashNet)
    fixed_beta: float = 1.0  # used by estimator=fixed only


@dataclass
class LossConfig:
    candidate_weight: float = 1.0
    rerank_weight: float = 1.0
    candidate_kind: CandidateLoss = CandidateLoss.margin
    # Official BPR code uses 0.1; a later port cites the paper's appendix for 2.0. We follow the code.
    margin: float = 0.1


@dataclass
class OptimConfig:
    lr: float = 2.0e-5
    eps: float = 1.0e-6  # BPR; DPR uses 1e-8 (experiments/*/dpr.yaml)
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    warmup_steps: Optional[int] = None  # overrides warmup_ratio (DPR: 1237)
    max_grad_norm: float = 2.0
    # Learning rate of the projection layer (model.projection_dim), which starts from random weights while the
    # encoder is pretrained; null = optim.lr, as the paper and the official code.
    projection_lr: Optional[float] = None


@dataclass
class TrainConfig:
    batch_size: int = 16  # questions per device per step
    epochs: int = 40
    max_steps: int = -1  # -1: epochs decide
    accelerator: str = "auto"
    devices: Any = "auto"  # int, list of ids or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" on clusters
    precision: str = "32-true"
    # "i/n": this job encodes the missing shards whose number is i modulo n, into <out>.partial (a SLURM array
    # task: encode.part=$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); null: all missing shards, then finalise.
    # Running once more with null after the array finds every shard done and only merges.
    part: Optional[str] = None
    accumulate_grad_batches: int = 1  # NOT a larger contrastive batch: each micro-batch sees only its own negatives
    # Gradient caching (Gao et al. 2021): the step's whole batch in the loss, the activations of this many
    # questions (and their passages) in memory at a time; null = off. Same loss and update as the full batch.
    grad_cache_chunk_size: Optional[int] = None
    select_from_epoch: int = 30  # best checkpoint is chosen among epochs >= this (docs/method.md#training-recipe)
    val_every_n_epochs: int = 1
    val_check_interval: Any = None  # int: every n training batches; float: a fraction of an epoch
    checkpoint_every_n_steps: Optional[int] = None  # also refresh last.ckpt every n steps
    log_every_n_steps: int = 10
    resume: bool = True  # continue from <run_dir>/checkpoints/last.ckpt when it exists
    deterministic: bool = False


@dataclass
class EncodeConfig:
    batch_size: int = 128
    shard_size: int = 100_000  # rows per shard file, written when complete; a rerun encodes only missing shards
    # Lightning precision of the encoding pass: 32-true, or bf16-mixed / 16-mixed on a GPU (codes are the sign of
    # the embedding, so a lower precision can flip the bits of coordinates near 0).
    precision: str = "32-true"
    # "i/n": this job encodes the missing shards whose number is i modulo n, into <out>.partial (a SLURM array
    # task: encode.part=$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); null: all missing shards, then finalise.
    # Running once more with null after the array finds every shard done and only merges.
    part: Optional[str] = None


@dataclass
class IndexConfig:
    kind: IndexKind = IndexKind.binary_flat
    num_candidates: int = 1000  # l: Hamming candidates reranked by <e_q, sign(e_p)>
    rerank: bool = True  # false: return candidates in Hamming order (ablation)
    candidate_generation: bool = True  # false: score every passage with <e_q, sign(e_p)> (ablation)
    hash_bits: int = 16  # bucket key = first b bits (b <= 64); honest sizes only (docs/method.md#search)
    hash_flips: int = 2  # probe every bucket within this Hamming radius of the query's key
    hash_tables: int = 1  # > 1: several tables on disjoint b-bit slices (IndexBinaryMultiHash)
    search_batch_size: int = 32  # questions per search call; ms_per_query is measured at this size
    # Binary kinds: which implementation searches (candidates + rerank), on which device, with how many CPU
    # threads (null: every core). Search settings only: an index folder serves every backend and device.
    backend: SearchBackend = SearchBackend.native
    device: SearchDevice = SearchDevice.auto
    threads: Optional[int] = None
    # Post-hoc quantisation of DPR embeddings. Bit budgets default to BPR's: one bit per dimension.
    code_bits: Optional[int] = None  # lsh, binary_pca: bits per passage; None = embedding dimension (768 for BERT-base)
    rotation: Rotation = Rotation.random  # lsh, binary_pca
    pq_subquantizers: Optional[int] = None  # pq: M; None = dimension / 8, i.e. BPR's bytes with 8-bit codes
    pq_bits: int = 8
    rabitq_query_bits: int = 4  # rabitq: bits of the quantised question (faiss `qb`; 0 = float question)
    # Quantised float kinds (pq, int8, rabitq, factory): re-score the top index.num_candidates with exact inner
    # products against the original float vectors, which the index then keeps beside the codes (faiss
    # IndexRefineFlat). bytes_per_passage stays the code size; rescore_bytes_per_passage counts the kept floats.
    # Binary kinds rerank with index.rerank instead, from the codes alone (no extra bytes).
    rescore: bool = False
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    factory: Optional[str] = None  # kind=factory: e.g. "OPQ48,IVF256,PQ48"; searched with inner product
    train_size: Optional[int] = None  # vectors used to train a quantiser; None = all passages
    name: Optional[str] = None  # folder name under <run_dir>/index/; None derives one from the settings


@dataclass
class EvalConfig:
    top_k: List[int] = field(default_factory=lambda: [1, 5, 20, 50, 100])
    question_batch_size: int = 64
    max_questions: Optional[int] = None


@dataclass
class WandbConfig:
    project: str = "bprlab"
    entity: Optional[str] = None
    group: Optional[str] = None  # the table or sweep a run belongs to (set by `reproduce` and sweeps)
    tags: List[str] = field(default_factory=list)  # added to dataset, method and encoder
    log_artifacts: bool = True  # metrics.json (+ retrieval.npz) as a W&B artifact after evaluation


@dataclass
class RunConfig:
    name: str = "default"
    method: Method = Method.bpr
    seed: int = 42
    runs_root: str = "runs"  # the run directory is runs_root/name
    # Which weights encode / evaluate use: best | last | pretrained (the untrained encoder), or the path of a
    # Lightning checkpoint (*.ckpt) from any run, e.g. to evaluate it on another dataset.
    checkpoint: str = Checkpoint.best.value
    logger: LoggerKind = LoggerKind.csv
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    hash: HashConfig = field(default_factory=HashConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
