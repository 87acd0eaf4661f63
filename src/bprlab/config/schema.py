"""The typed config schema: the one place where every key and default is spelled.

Defaults follow the paper recipe (docs/method.md#training-recipe) except two that make a fresh laptop work
offline: the encoder is the packaged MiniLM (`model.name: minilm`) and the dataset is the embedded `squad` task.
Experiment YAMLs hold only the deltas from here.

Every key says which stage reads it and what it does (`key(default, stage, help)`; `bprlab config --explain KEY`):
  prepare   builds the dataset's derived files (squad: corpus, splits, negatives)
  train     decides the trained weights
  encode    decides the encoded passages (besides the weights)
  index     decides what is built from them
  search    decides how a built index is searched (its results)
  eval      decides what is scored, on which questions
  none      moves no number: paths, logging, devices, threads, batch sizes of inference, resumption
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from typing import Any, List, Optional

from bprlab.config.enums import (
    AnswerMatch,
    CandidateLoss,
    Checkpoint,
    DatasetName,
    Estimator,
    IndexKind,
    LoggerKind,
    Method,
    Pooling,
    Rotation,
    SearchBackend,
    SearchDevice,
)

# Keys the schema no longer has, with the one value they ever held in saved configs (a run's checkpoint and
# config.yaml): a saved config holding them so loads without them (bprlab.config.loader.from_dict)
REMOVED_KEYS = {"train.part": None}
STAGES = ("prepare", "train", "encode", "index", "search", "eval", "none")


def key(default=MISSING, *, stage: str, help: str, factory=MISSING, content: bool = False, encoding: bool = False):
    """A config key: its default (or `factory` for a list), the stage that reads it, and one line of help.
    `content`: a path whose file's content, not its name, enters the stage's stamp (bprlab.stamps). `encoding`: a
    key the trained weights fix: a trained run encodes questions and passages with the value it was trained with."""
    assert stage in STAGES, stage
    return field(default=default, default_factory=factory,
                 metadata={"stage": stage, "help": help, "content": content, "encoding": encoding})


def section(cls):
    """A nested section (data.squad, model, ...): its keys carry their own stages."""
    return field(default_factory=cls, metadata={"section": True})


@dataclass
class SquadConfig:
    """How `bprlab prepare` builds the embedded `squad` task from SQuAD v1.1 (docs/method.md#the-squad-task)."""

    source: str = key("../shared/data/squad/dev-v1.1.json", stage="prepare",
                      help="the SQuAD v1.1 dev JSON (fetched once and checked by sha256 where it is absent)", content=True)
    words_per_passage: int = key(100, stage="prepare", help="passages are cut into chunks of this many words")
    dev_articles: int = key(4, stage="prepare", help="articles held out for validation (model selection)")
    test_articles: int = key(8, stage="prepare", help="articles held out for the test questions")
    bm25_depth: int = key(100, stage="prepare", help="BM25 passages examined per question when mining hard negatives")
    hard_negatives: int = key(30, stage="prepare", help="hard negatives stored per question (DPR's files keep 30)")
    other_negatives: int = key(30, stage="prepare",
                               help="random answer-free passages stored per question (DPR's `negative_ctxs`)")
    seed: int = key(13, stage="prepare", help="the seed of the article split and the random negatives")


# What picks a BEIR / jsonl evaluation folder, besides data.dataset: keys that config.validate refuses away from one
FOLDER_KEYS = ("path", "split", "ignore_identical_ids")


@dataclass
class DataConfig:
    dataset: DatasetName = key(DatasetName.squad, stage="eval",
                               help="squad | nq | trivia | custom | beir | jsonl: which dataset's files are read")
    root: str = key("data", stage="none", help="prepared and downloaded files live under root/<dataset>/")
    path: Optional[str] = key(None, stage="eval", help="dataset=beir|jsonl: the folder holding corpus.jsonl, "
                                                        "queries.jsonl (and qrels/)", content=True)
    split: str = key("test", stage="eval", help="dataset=beir: which qrels/<split>.tsv the evaluation reads")
    ignore_identical_ids: bool = key(True, stage="eval", help="dataset=beir|jsonl: a query's own id never counts "
                                                             "among its results (BEIR's default); false keeps them")
    train_file: Optional[str] = key(None, stage="train", help="biencoder training JSON; null: the dataset's own "
                                                              "file under root/<dataset>/ (bprlab.data.paths)", content=True)
    dev_file: Optional[str] = key(None, stage="train", help="biencoder JSON for validation (model selection); null: "
                                                            "the dataset's own", content=True)
    test_file: Optional[str] = key(None, stage="eval", help="questions and answers (qa TSV) evaluated; null: the "
                                                            "dataset's own", content=True)
    passages_file: Optional[str] = key(None, stage="encode", help="the corpus (passages TSV) encoded and searched; "
                                                                  "null: the dataset's own", content=True)
    answer_match: AnswerMatch = key(AnswerMatch.string, stage="eval",
                                    help="string (DPR's has_answer) | regex (CuratedTREC's answers)")
    num_hard_negatives: int = key(1, stage="train", help="hard negatives per question per step; re-sampled every "
                                                         "epoch")
    num_other_negatives: int = key(0, stage="train", help="other (random) negatives per question per step")
    shuffle_negatives: bool = key(True, stage="train", help="draw each epoch's negatives at random from the pools "
                                                            "(false: the first ones)")
    strip_question_mark: bool = key(True, stage="train", help="drop a trailing '?' from training questions "
                                                              "(docs/method.md#training-recipe)")
    max_question_length: int = key(256, stage="train", help="tokens of a question (truncated); the trained value "
                                                            "also encodes questions at evaluation", encoding=True)
    max_passage_length: int = key(256, stage="train", help="tokens of [CLS] title [SEP] text [SEP] (truncated); the "
                                                           "trained value also encodes the corpus", encoding=True)
    num_workers: int = key(0, stage="none", help="DataLoader worker processes for tokenising")
    val_hard_negatives: int = key(30, stage="train", help="validation: hard negatives each dev question brings "
                                                          "into the pool ranked for val/avg_rank")
    val_other_negatives: int = key(30, stage="train", help="validation: other negatives each dev question brings "
                                                           "into the pool")
    max_val_questions: Optional[int] = key(None, stage="train", help="validation: a seeded sample of this many dev "
                                                                     "questions; null: all")
    squad: SquadConfig = section(SquadConfig)


@dataclass
class ModelConfig:
    name: str = key("minilm", stage="train", help="`minilm` = the packaged all-MiniLM-L6-v2 (offline); the paper "
                                                  "uses bert-base-uncased; any Hugging Face name or local folder",
                    encoding=True)
    projection_dim: Optional[int] = key(None, stage="train", help="a linear layer (+ LayerNorm) on the pooled "
                                                                   "vector sets the code length; null: hidden size",
                                        encoding=True)
    pooling: Pooling = key(Pooling.cls, stage="train", help="cls (the paper) | mean: how a tower turns token states "
                                                            "into e (MiniLM's own is mean + normalize)", encoding=True)
    same_projection_init: bool = key(False, stage="train", help="with a projection: both towers' projections start "
                                                                "from the same random weights (a short run cannot "
                                                                "align two unrelated ones)")
    normalize: bool = key(False, stage="train", help="L2-normalise e (inner product = cosine), as "
                                                     "sentence-transformers' Normalize module", encoding=True)
    passage_text_token_type: Optional[int] = key(None, stage="train", help="token type of the passage text segment "
                                                                            "in [CLS] title [SEP] text [SEP]; null: 1 "
                                                                            "for bpr, 0 for dpr", encoding=True)


@dataclass
class HashConfig:
    estimator: Estimator = key(Estimator.scaled_tanh, stage="train",
                               help="scaled_tanh (the paper) | ste (straight-through) | fixed (tanh(fixed_beta e))")
    gamma: float = key(0.1, stage="train", help="beta = sqrt(1 + gamma * step) (HashNet's schedule)")
    fixed_beta: float = key(1.0, stage="train", help="beta of estimator=fixed")


@dataclass
class LossConfig:
    candidate_weight: float = key(1.0, stage="train", help="weight of the candidate (Hamming) loss; 0 drops it")
    rerank_weight: float = key(1.0, stage="train", help="weight of the rerank loss; 0 drops it")
    candidate_kind: CandidateLoss = key(CandidateLoss.margin, stage="train",
                                        help="margin (the paper's ranking hinge) | ce (cross-entropy)")
    # the official BPR code uses 0.1; a later port cites the paper's appendix for 2.0: we follow the code
    margin: float = key(0.1, stage="train", help="the candidate loss's margin")


@dataclass
class OptimConfig:
    lr: float = key(2.0e-5, stage="train", help="AdamW learning rate (peak, after warmup)")
    eps: float = key(1.0e-6, stage="train", help="AdamW epsilon (BPR 1e-6; DPR 1e-8)")
    weight_decay: float = key(0.0, stage="train", help="AdamW weight decay")
    warmup_ratio: float = key(0.06, stage="train", help="linear warmup over this share of the steps, then linear decay")
    warmup_steps: Optional[int] = key(None, stage="train", help="warmup steps, overriding warmup_ratio (DPR: 1237)")
    max_grad_norm: float = key(2.0, stage="train", help="gradient clipping by norm")
    projection_lr: Optional[float] = key(None, stage="train", help="learning rate of model.projection_dim's layer, "
                                                                   "which starts from random; null: optim.lr")


@dataclass
class TrainConfig:
    batch_size: int = key(16, stage="train", help="questions per device per step (each with its positive and "
                                                  "negatives; in-batch negatives across devices)")
    epochs: int = key(40, stage="train", help="training epochs")
    max_steps: int = key(-1, stage="train", help="stop after this many steps; -1: epochs decide")
    accelerator: str = key("auto", stage="none", help="auto | cpu | gpu | cuda | mps | tpu (Lightning)")
    devices: Any = key("auto", stage="train", help="devices per node: a count, a list of ids or auto; with "
                                                   "batch_size it sets the global batch")
    num_nodes: int = key(1, stage="train", help="nodes (SLURM); with devices and batch_size, the global batch")
    strategy: str = key("auto", stage="none", help="Lightning strategy: auto, or ddp on clusters")
    timeout_minutes: Optional[int] = key(None, stage="none", help="strategy=ddp: how long a rank waits in a "
                                                                  "collective for a rank that died before failing "
                                                                  "(null: torch's default, 30 minutes)")
    precision: str = key("32-true", stage="train", help="Lightning precision: 32-true, bf16-mixed, 16-mixed")
    accumulate_grad_batches: int = key(1, stage="train", help="gradient accumulation; NOT a larger contrastive "
                                                              "batch: each micro-batch sees only its own negatives")
    grad_cache_chunk_size: Optional[int] = key(None, stage="train", help="gradient caching: the whole batch in the "
                                                                         "loss, this many questions in memory at a "
                                                                         "time; null: off")
    select_from_epoch: int = key(30, stage="train", help="the best checkpoint is chosen among epochs >= this "
                                                         "(docs/method.md#training-recipe)")
    val_every_n_epochs: int = key(1, stage="train", help="validate every n epochs (model selection)")
    val_check_interval: Any = key(None, stage="train", help="int: validate every n training batches; float: a "
                                                            "fraction of an epoch")
    checkpoint_every_n_steps: Optional[int] = key(None, stage="none", help="also refresh last.ckpt every n steps "
                                                                           "(what a killed run resumes from)")
    log_every_n_steps: int = key(10, stage="none", help="logging interval")
    resume: bool = key(True, stage="none", help="continue from <run_dir>/checkpoints/last.ckpt when it exists")
    keep_resume_state: bool = key(True, stage="none", help="a finished run's last.ckpt keeps the optimizer, scheduler "
                                                           "and callback state (3x the weights' size); false: they go "
                                                           "once train.json is written, for studies of many runs "
                                                           "(make ablations)")
    deterministic: bool = key(False, stage="none", help="torch deterministic algorithms (slower; same numbers on "
                                                        "one machine either way on the CPU)")


@dataclass
class EncodeConfig:
    batch_size: int = key(128, stage="none", help="passages per encoding batch")
    shard_size: int = key(100_000, stage="encode", help="rows per shard file, written when complete; a rerun "
                                                        "encodes only missing shards")
    precision: str = key("32-true", stage="encode", help="precision of the encoding pass: 32-true, or bf16-mixed / "
                                                         "16-mixed on a GPU (can flip the bits of coordinates near 0)")
    part: Optional[str] = key(None, stage="none", help="i/n: this job encodes the missing shards whose number is i "
                                                       "modulo n (a SLURM array task); null: all, then merge")


@dataclass
class IndexConfig:
    kind: IndexKind = key(IndexKind.binary_flat, stage="index", help="which index (bprlab.config.index_kinds): "
                                                                     + " | ".join(k.value for k in IndexKind))
    num_candidates: int = key(1000, stage="search", help="l: Hamming candidates reranked by <e_q, sign(e_p)> (or "
                                                         "the top-l a rescoring index re-scores)")
    rerank: bool = key(True, stage="search", help="false: return candidates in Hamming order (ablation)")
    candidate_generation: bool = key(True, stage="search", help="false: score every passage with <e_q, sign(e_p)> "
                                                                "(ablation)")
    hash_bits: int = key(16, stage="index", help="binary_hash: bucket key = the first b bits (b <= 64)")
    hash_flips: int = key(2, stage="search", help="binary_hash: probe every bucket within this Hamming radius of "
                                                  "the question's key")
    hash_tables: int = key(1, stage="index", help="binary_hash: > 1 tables on disjoint b-bit slices")
    search_batch_size: int = key(32, stage="none", help="questions per search call; ms_per_query is measured at "
                                                        "this size")
    backend: SearchBackend = key(SearchBackend.native, stage="none", help="binary kinds: native kernels or faiss "
                                                                          "(the reference); the same results")
    device: SearchDevice = key(SearchDevice.auto, stage="none", help="binary kinds: auto | cpu | cuda for search")
    threads: Optional[int] = key(None, stage="none", help="CPU threads of a search; null: every core")
    code_bits: Optional[int] = key(None, stage="index", help="lsh, binary_pca: bits per passage; null: the "
                                                             "embedding dimension")
    rotation: Rotation = key(Rotation.random, stage="index", help="lsh, binary_pca: none | random | itq (what "
                                                                  "projects or rotates before the sign)")
    pq_subquantizers: Optional[int] = key(None, stage="index", help="pq: M sub-quantisers; null: dimension / 8 "
                                                                    "(BPR's bytes with 8-bit codes)")
    pq_bits: int = key(8, stage="index", help="pq: bits per sub-quantiser code")
    rabitq_query_bits: int = key(4, stage="search", help="rabitq: bits of the quantised question (0: float)")
    rescore: bool = key(False, stage="index", help="pq, int8, rabitq, factory: keep the float vectors and re-score "
                                                   "the top num_candidates exactly (IndexRefineFlat)")
    hnsw_m: int = key(32, stage="index", help="hnsw: links per node")
    hnsw_ef_construction: int = key(200, stage="index", help="hnsw: candidate list size while building")
    hnsw_ef_search: int = key(128, stage="search", help="hnsw: candidate list size while searching")
    factory: Optional[str] = key(None, stage="index", help="kind=factory: a faiss index_factory string, e.g. "
                                                           "OPQ48,IVF256,PQ48 (inner product)")
    train_size: Optional[int] = key(None, stage="index", help="vectors a quantiser is trained on (a seeded sample); "
                                                              "null: every passage")
    name: Optional[str] = key(None, stage="none", help="folder name under <run>/index/; null derives one from the "
                                                       "settings")


@dataclass
class EvalConfig:
    top_k: List[int] = key(stage="eval", help="the k of top-k accuracy", factory=lambda: [1, 5, 20, 50, 100])
    question_batch_size: int = key(64, stage="none", help="questions per encoding batch at evaluation")
    max_questions: Optional[int] = key(None, stage="eval", help="evaluate the first n test questions only; null: all")


@dataclass
class WandbConfig:
    project: str = key("bprlab", stage="none", help="the W&B project runs log to")
    entity: Optional[str] = key(None, stage="none", help="W&B entity (user or team)")
    group: Optional[str] = key(None, stage="none", help="the table or sweep a run belongs to (set by `reproduce` "
                                                        "and sweeps)")
    tags: List[str] = key(stage="none", help="tags added to dataset, method and encoder", factory=list)
    log_artifacts: bool = key(True, stage="none", help="metrics.json (+ retrieval.npz) as a W&B artifact after "
                                                       "evaluation")


@dataclass
class RunConfig:
    name: str = key("default", stage="none", help="the run directory is runs_root/name")
    method: Method = key(Method.bpr, stage="train", help="dpr (float vectors) | bpr (learned binary codes)")
    seed: int = key(42, stage="train", help="seeds initialisation, shuffling and negatives")
    runs_root: str = key("runs", stage="none", help="where run directories live")
    checkpoint: str = key(Checkpoint.best.value, stage="encode", help="the weights encode and evaluate use: best | "
                                                                      "last | pretrained (the untrained encoder) | "
                                                                      "the path of a Lightning .ckpt")
    logger: LoggerKind = key(LoggerKind.csv, stage="none", help="csv | wandb | none")
    data: DataConfig = section(DataConfig)
    model: ModelConfig = section(ModelConfig)
    hash: HashConfig = section(HashConfig)
    loss: LossConfig = section(LossConfig)
    optim: OptimConfig = section(OptimConfig)
    train: TrainConfig = section(TrainConfig)
    encode: EncodeConfig = section(EncodeConfig)
    index: IndexConfig = section(IndexConfig)
    eval: EvalConfig = section(EvalConfig)
    wandb: WandbConfig = section(WandbConfig)
