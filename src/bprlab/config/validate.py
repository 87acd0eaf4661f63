"""Combinations and ranges the schema's types cannot express, checked once a config is resolved and before any
model loads: every problem is collected, so one ConfigError names them all (bprlab.config.loader.load_config)."""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass

from bprlab.config.enums import CandidateLoss, DatasetName, Estimator, Method
from bprlab.config.schema import DataConfig, RunConfig
from bprlab.errors import ConfigError

PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true")


def validate(cfg: RunConfig) -> None:
    problems = (_method_problems(cfg) + _index_problems(cfg) + _data_problems(cfg) + _train_problems(cfg)
                + _range_problems(cfg))
    if problems:
        raise ConfigError("config: " + "; ".join(problems))


def encode_part(text: str) -> tuple[int, int] | None:
    """`i/n` -> (i, n), or None when malformed."""
    first, sep, second = str(text).partition("/")
    if not (sep and first.strip().isdigit() and second.strip().isdigit()):
        return None
    index, count = int(first), int(second)
    return (index, count) if 0 <= index < count else None


def _method_problems(cfg: RunConfig) -> list[str]:
    """The loss, the hash layer and the model."""
    problems = []
    if cfg.loss.candidate_weight < 0 or cfg.loss.rerank_weight < 0:
        problems.append("loss.*_weight: weights must be >= 0")
    if cfg.method is Method.bpr and cfg.loss.candidate_weight == 0 and cfg.loss.rerank_weight == 0:
        problems.append("loss: candidate_weight and rerank_weight are both 0: nothing to train")
    if cfg.hash.estimator is Estimator.fixed and cfg.hash.fixed_beta <= 0:
        problems.append("hash.fixed_beta: must be > 0")
    if cfg.hash.gamma < 0:
        problems.append("hash.gamma: must be >= 0 (beta = sqrt(1 + gamma * step) needs 1 + gamma * step >= 0)")
    if cfg.loss.candidate_kind is CandidateLoss.margin and cfg.loss.margin < 0:
        problems.append("loss.margin: must be >= 0")
    if cfg.model.passage_text_token_type not in (None, 0, 1):
        problems.append("model.passage_text_token_type: expected 0, 1 or null")
    if cfg.model.projection_dim is not None and cfg.model.projection_dim <= 0:
        problems.append("model.projection_dim: must be positive")
    if str(cfg.checkpoint) not in ("best", "last", "pretrained") and not str(cfg.checkpoint).endswith(".ckpt"):
        problems.append(f"checkpoint={cfg.checkpoint!r}: best, last, pretrained or the path of a .ckpt file")
    return problems


def _index_problems(cfg: RunConfig) -> list[str]:
    """The index kind's own keys (bprlab.config.index_kinds), then the ranges every kind shares."""
    from bprlab.config.index_kinds import config_problems, kind_of  # the one place that knows each index kind

    index, kind = cfg.index, kind_of(cfg.index)
    problems = config_problems(index)
    if kind.binary and kind.input == "code" and (cfg.model.projection_dim or 8) % 8:
        problems.append("model.projection_dim: binary codes are packed in bytes: use a multiple of 8")
    if index.code_bits is not None and (index.code_bits <= 0 or index.code_bits % 8):
        problems.append("index.code_bits: a positive multiple of 8")
    if not 1 <= index.hash_bits <= 64:
        problems.append("index.hash_bits: faiss hash tables key on 1..64 bits")
    if index.hash_flips < 0 or index.hash_tables < 1:
        problems.append("index.hash_flips >= 0 and index.hash_tables >= 1 are required")
    if index.threads is not None and index.threads < 1:
        problems.append("index.threads: a positive number of threads, or null for every core")
    if index.num_candidates < 1:
        problems.append("index.num_candidates: must be >= 1")
    if index.hnsw_m < 2 or index.hnsw_ef_construction < 1 or index.hnsw_ef_search < 1:
        problems.append("index.hnsw_m >= 2 (faiss divides by log M), index.hnsw_ef_construction >= 1 and "
                        "index.hnsw_ef_search >= 1 are required")
    if index.pq_subquantizers is not None and index.pq_subquantizers < 1:
        problems.append("index.pq_subquantizers: null (= dimension / 8) or >= 1")
    if not 1 <= index.pq_bits <= 16:
        problems.append("index.pq_bits: 1 to 16 bits per sub-quantiser code")
    if index.train_size is not None and index.train_size < 1:
        problems.append("index.train_size: null (every passage) or >= 1")
    if not 0 <= index.rabitq_query_bits <= 8:
        problems.append("index.rabitq_query_bits: 0 (float question) to 8")
    if not cfg.eval.top_k or min(cfg.eval.top_k) < 1:
        problems.append("eval.top_k: a non-empty list of positive integers")
    elif kind.binary and index.candidate_generation and index.num_candidates < max(cfg.eval.top_k):
        problems.append(f"index.num_candidates={index.num_candidates} is below max(eval.top_k)={max(cfg.eval.top_k)}")
    return problems


def _data_problems(cfg: RunConfig) -> list[str]:
    """Data keys the chosen dataset kind does not read, set away from their default, and the counts."""
    data, defaults = cfg.data, DataConfig()
    kind = data.dataset.value
    problems = []
    if data.dataset.folder and not data.path:
        problems.append(f"data.dataset={kind} reads a folder: set data.path")
    if data.path is not None and not data.dataset.folder:
        problems.append(f"data.path={data.path} means nothing for data.dataset={kind} (it names the folder of a beir "
                        "or jsonl dataset); remove it, or set data.dataset=beir|jsonl")
    if data.split != defaults.split and data.dataset is not DatasetName.beir:
        problems.append(f"data.split={data.split} means nothing for data.dataset={kind} (it picks a BEIR folder's "
                        "qrels/<split>.tsv); remove it")
    if data.ignore_identical_ids != defaults.ignore_identical_ids and not data.dataset.folder:
        problems.append(f"data.ignore_identical_ids means nothing for data.dataset={kind} (queries with ids of "
                        "their own: beir or jsonl folders); remove it")
    if data.squad != defaults.squad and data.dataset is not DatasetName.squad:
        problems.append(f"data.squad.* means nothing for data.dataset={kind} (it builds the squad task); remove it")
    if data.num_hard_negatives < 0 or data.num_other_negatives < 0:
        problems.append("data.num_*_negatives: must be >= 0")
    if data.num_workers < 0:
        problems.append("data.num_workers: must be >= 0")
    for key in ("max_question_length", "max_passage_length"):  # below 3 a tokenizer stops truncating, silently
        if getattr(data, key) < 3:
            problems.append(f"data.{key}: at least 3 tokens ([CLS], [SEP] and one word piece)")
    return problems


def _train_problems(cfg: RunConfig) -> list[str]:
    """Training, its hardware, and encoding."""
    train = cfg.train
    problems = []
    if train.batch_size < 1:
        problems.append("train.batch_size: must be >= 1")
    if train.epochs < 1:
        problems.append("train.epochs: must be >= 1 (checkpoint=pretrained evaluates the untrained encoder)")
    if train.max_steps != -1 and train.max_steps < 1:
        problems.append("train.max_steps: -1 (epochs decide) or >= 1")
    devices = train.devices
    if not (devices == "auto" or (isinstance(devices, int) and devices >= 1)
            or (isinstance(devices, list) and devices and all(isinstance(d, int) and d >= 0 for d in devices))):
        problems.append(f"train.devices={devices!r}: auto, a count >= 1, or a list of device ids")
    if train.accelerator not in ("auto", "cpu", "gpu", "cuda", "mps", "tpu"):
        problems.append(f"train.accelerator={train.accelerator!r}: one of auto, cpu, gpu, cuda, mps, tpu")
    if train.timeout_minutes is not None and train.timeout_minutes < 1:
        problems.append("train.timeout_minutes: null (torch's default) or >= 1")
    for key, value in (("train.precision", train.precision), ("encode.precision", cfg.encode.precision)):
        if str(value) not in PRECISIONS:
            problems.append(f"{key}={value!r}: one of {', '.join(PRECISIONS)}")
        elif str(value) in ("16-mixed", "16-true") and train.accelerator == "cpu":
            problems.append(f"{key}={value}: float16 needs a GPU; on the CPU use bf16-mixed or 32-true")
    if train.grad_cache_chunk_size is not None:
        if train.grad_cache_chunk_size < 1:
            problems.append("train.grad_cache_chunk_size: questions per chunk, >= 1 (or null for off)")
        if train.accumulate_grad_batches != 1:
            problems.append("train.grad_cache_chunk_size: gradient caching already makes the step's whole batch one "
                            "loss; use it with train.accumulate_grad_batches=1")
    if cfg.encode.part is not None and encode_part(cfg.encode.part) is None:
        problems.append(f"encode.part={cfg.encode.part!r}: expected i/n with 0 <= i < n (e.g. 3/8), or null")
    if cfg.encode.batch_size < 1 or cfg.encode.shard_size < 1:
        problems.append("encode.batch_size and encode.shard_size: must be >= 1")
    return problems


def _range_problems(cfg: RunConfig) -> list[str]:
    """The optimiser's and evaluation's ranges, and every float finite (NaN and inf pass the schema's types)."""
    optim = cfg.optim
    problems = []
    if optim.projection_lr is not None and optim.projection_lr < 0:
        problems.append("optim.projection_lr: null (= optim.lr) or >= 0")
    if optim.lr < 0 or optim.eps <= 0 or optim.max_grad_norm < 0:
        problems.append("optim: lr >= 0, eps > 0 and max_grad_norm >= 0 are required")
    if not 0 <= optim.warmup_ratio < 1:
        problems.append("optim.warmup_ratio: expected 0 <= ratio < 1")
    for key, value in (("eval.question_batch_size", cfg.eval.question_batch_size),
                       ("index.search_batch_size", cfg.index.search_batch_size)):
        if value < 1:
            problems.append(f"{key}: must be >= 1")
    if cfg.eval.max_questions is not None and cfg.eval.max_questions < 1:
        problems.append("eval.max_questions: null (all) or >= 1")
    problems += [f"{key}={value}: must be a finite number" for key, value in _floats(cfg) if not math.isfinite(value)]
    return problems


def _floats(node, prefix: str = ""):
    """(dotted key, value) of every float in the config."""
    for f in fields(node):
        value = getattr(node, f.name)
        if is_dataclass(value):
            yield from _floats(value, f"{prefix}{f.name}.")
        elif isinstance(value, float):
            yield f"{prefix}{f.name}", value
