"""Load a run config: schema <- `extends:` files <- experiment YAML <- command-line `key=value`.

Every layer is merged into the typed schema, so an unknown key or a value of the wrong type fails at once with
the file (or the command-line argument) and the dotted key named.
"""

from __future__ import annotations

import copy
import math
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Iterable, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bprlab.config.schema import REMOVED_KEYS, CandidateLoss, DataConfig, DatasetName, Estimator, Method, RunConfig
from bprlab.errors import ConfigError

EXTENDS = "extends"
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true")


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Resolve an experiment file plus overrides into a validated `RunConfig`."""
    cfg = OmegaConf.structured(RunConfig)
    if path is not None:
        for layer_path, layer in _layers(Path(path), chain=()):
            cfg = _merge(cfg, layer, source=str(layer_path))
    cfg = _merge(cfg, parse_overrides(overrides), source="command line")
    try:
        run = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:  # e.g. a missing mandatory value
        raise ConfigError(f"config: {exc.full_key or ''}: {_reason(exc)}") from None
    validate(run)
    return run


def to_dict(cfg: RunConfig) -> dict:
    """Plain, YAML-safe dict of a config (enums as their names)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def from_dict(data: dict, source: str = "saved config") -> RunConfig:
    """A saved config (a checkpoint's) as a RunConfig."""
    cfg = _merge(OmegaConf.structured(RunConfig), OmegaConf.create(without_removed(data)), source=source)
    return OmegaConf.to_object(cfg)


def without_removed(data: dict) -> dict:
    """`data` without the keys the schema has since dropped (schema.REMOVED_KEYS) where they hold the only value
    they ever had, so that configs saved before (checkpoints, a run's config.yaml) still load; any other value of
    such a key stays, and is refused as unknown."""
    data = copy.deepcopy(data)
    for name, value in REMOVED_KEYS.items():
        *path, leaf = name.split(".")
        node = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and node[leaf] == value:
            del node[leaf]
    return data


def parse_overrides(overrides: Iterable[str]) -> DictConfig:
    """`a.b=1 c=[1,2]` -> DictConfig; values are parsed as YAML scalars/lists. A scalar for a whole section
    (`data=beir`) is an error, not something a later `data.path=...` silently replaces."""
    merged = OmegaConf.create({})
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"command line: '{item}': expected key=value (e.g. train.max_steps=100)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"command line: '{item}': value is not valid YAML ({exc})") from None
        section = _section_keys(key)
        if section is not None and not isinstance(value, dict):
            raise ConfigError(f"command line: '{item}': {key} is a section; set its keys one by one, e.g. "
                              f"{key}.{section[0]}=...")
        OmegaConf.update(merged, key, value, force_add=True)
    return merged


def _section_keys(dotted: str) -> list[str] | None:
    """The keys of the schema section `dotted` names (`data`, `data.squad`, ...), or None for a plain key."""
    node = RunConfig()
    for part in dotted.split("."):
        if not is_dataclass(node) or part not in {f.name for f in fields(node)}:
            return None
        node = getattr(node, part)
    return [f.name for f in fields(node)] if is_dataclass(node) else None


class UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML keeps the last one without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one mapping (line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _layers(path: Path, chain: tuple[Path, ...]) -> list[tuple[Path, DictConfig]]:
    """The file and, first, everything it extends (depth first, in order)."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: `extends` cycle: {' -> '.join(str(p) for p in (*chain, path))}")
    if not path.is_file():
        where = f" (extended from {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}: config file not found{where}")
    try:
        raw = yaml.load(path.read_text(), Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(raw).__name__}")
    parents = raw.pop(EXTENDS, None) or []
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ConfigError(f"{path}: key '{EXTENDS}': expected a path or a list of paths")
    layers: list[tuple[Path, DictConfig]] = []
    for parent in parents:
        layers += _layers(path.parent / parent, chain=(*chain, path))
    layers.append((path, OmegaConf.create(without_removed(raw))))
    return layers


def _merge(cfg: DictConfig, layer: DictConfig, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, layer)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: key '{exc.full_key}': {_reason(exc)}") from None


def _reason(exc: OmegaConfBaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _check_ranges(cfg: RunConfig, problems: list[str]) -> None:
    """Values out of range fail here, before any model loads, instead of deep inside a library."""
    train = cfg.train
    if train.epochs < 1:
        problems.append("train.epochs: must be >= 1 (checkpoint=pretrained evaluates the untrained encoder)")
    if train.max_steps != -1 and train.max_steps < 1:
        problems.append("train.max_steps: -1 (epochs decide) or >= 1")
    if cfg.optim.projection_lr is not None and cfg.optim.projection_lr < 0:
        problems.append("optim.projection_lr: null (= optim.lr) or >= 0")
    if cfg.optim.lr < 0 or cfg.optim.eps <= 0 or cfg.optim.max_grad_norm < 0:
        problems.append("optim: lr >= 0, eps > 0 and max_grad_norm >= 0 are required")
    devices = train.devices
    if not (devices == "auto" or (isinstance(devices, int) and devices >= 1)
            or (isinstance(devices, list) and devices and all(isinstance(d, int) and d >= 0 for d in devices))):
        problems.append(f"train.devices={devices!r}: auto, a count >= 1, or a list of device ids")
    if train.accelerator not in ("auto", "cpu", "gpu", "cuda", "mps", "tpu"):
        problems.append(f"train.accelerator={train.accelerator!r}: one of auto, cpu, gpu, cuda, mps, tpu")

    for key, value in (("eval.question_batch_size", cfg.eval.question_batch_size),
                       ("index.search_batch_size", cfg.index.search_batch_size)):
        if value < 1:
            problems.append(f"{key}: must be >= 1")
    if cfg.eval.max_questions is not None and cfg.eval.max_questions < 1:
        problems.append("eval.max_questions: null (all) or >= 1")
    if cfg.train.timeout_minutes is not None and cfg.train.timeout_minutes < 1:
        problems.append("train.timeout_minutes: null (torch's default) or >= 1")
    if cfg.data.num_workers < 0:
        problems.append("data.num_workers: must be >= 0")
    for key in ("max_question_length", "max_passage_length"):  # below 3 a tokenizer stops truncating, silently
        if getattr(cfg.data, key) < 3:
            problems.append(f"data.{key}: at least 3 tokens ([CLS], [SEP] and one word piece)")
    if cfg.hash.gamma < 0:
        problems.append("hash.gamma: must be >= 0 (beta = sqrt(1 + gamma * step) needs 1 + gamma * step >= 0)")
    problems += [f"{key}={value}: must be a finite number" for key, value in _floats(cfg) if not math.isfinite(value)]


def _floats(node, prefix: str = ""):
    """(dotted key, value) of every float in the config (NaN and inf pass the schema's types)."""
    for f in fields(node):
        value = getattr(node, f.name)
        if is_dataclass(value):
            yield from _floats(value, f"{prefix}{f.name}.")
        elif isinstance(value, float):
            yield f"{prefix}{f.name}", value


def _data_problems(cfg: RunConfig) -> list[str]:
    """Data keys the chosen dataset kind does not read, set away from their default."""
    data, defaults = cfg.data, DataConfig()
    kind = data.dataset.value
    problems = []
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
    return problems


def encode_part(text: str) -> tuple[int, int] | None:
    """`i/n` -> (i, n), or None when malformed."""
    first, sep, second = str(text).partition("/")
    if not (sep and first.strip().isdigit() and second.strip().isdigit()):
        return None
    index, count = int(first), int(second)
    return (index, count) if 0 <= index < count else None


def validate(cfg: RunConfig) -> None:
    """Combinations the schema's types cannot express."""
    problems: list[str] = []
    if cfg.loss.candidate_weight < 0 or cfg.loss.rerank_weight < 0:
        problems.append("loss.*_weight: weights must be >= 0")
    if cfg.method is Method.bpr and cfg.loss.candidate_weight == 0 and cfg.loss.rerank_weight == 0:
        problems.append("loss: candidate_weight and rerank_weight are both 0: nothing to train")
    if cfg.hash.estimator is Estimator.fixed and cfg.hash.fixed_beta <= 0:
        problems.append("hash.fixed_beta: must be > 0")
    if cfg.loss.candidate_kind is CandidateLoss.margin and cfg.loss.margin < 0:
        problems.append("loss.margin: must be >= 0")
    if cfg.model.passage_text_token_type not in (None, 0, 1):
        problems.append("model.passage_text_token_type: expected 0, 1 or null")
    if cfg.model.projection_dim is not None and cfg.model.projection_dim <= 0:
        problems.append("model.projection_dim: must be positive")
    from bprlab.config.index_kinds import config_problems, kind_of  # the one place that knows each index kind

    kind = kind_of(cfg.index)
    binary, input_kind = kind.binary, kind.input
    problems += config_problems(cfg.index)
    problems += _data_problems(cfg)
    if binary and input_kind == "code" and (cfg.model.projection_dim or 8) % 8:
        problems.append("model.projection_dim: binary codes are packed in bytes: use a multiple of 8")
    if cfg.index.code_bits is not None and (cfg.index.code_bits <= 0 or cfg.index.code_bits % 8):
        problems.append("index.code_bits: a positive multiple of 8")
    if not 1 <= cfg.index.hash_bits <= 64:
        problems.append("index.hash_bits: faiss hash tables key on 1..64 bits")
    if cfg.index.hash_flips < 0 or cfg.index.hash_tables < 1:
        problems.append("index.hash_flips >= 0 and index.hash_tables >= 1 are required")
    if cfg.index.threads is not None and cfg.index.threads < 1:
        problems.append("index.threads: a positive number of threads, or null for every core")
    if cfg.index.num_candidates < 1:
        problems.append("index.num_candidates: must be >= 1")
    if str(cfg.checkpoint) not in ("best", "last", "pretrained") and not str(cfg.checkpoint).endswith(".ckpt"):
        problems.append(f"checkpoint={cfg.checkpoint!r}: best, last, pretrained or the path of a .ckpt file")
    if cfg.data.dataset.folder and not cfg.data.path:
        problems.append(f"data.dataset={cfg.data.dataset.value} reads a folder: set data.path")
    if cfg.index.hnsw_m < 2 or cfg.index.hnsw_ef_construction < 1 or cfg.index.hnsw_ef_search < 1:
        problems.append("index.hnsw_m >= 2 (faiss divides by log M), index.hnsw_ef_construction >= 1 and "
                        "index.hnsw_ef_search >= 1 are required")
    if cfg.index.pq_subquantizers is not None and cfg.index.pq_subquantizers < 1:
        problems.append("index.pq_subquantizers: null (= dimension / 8) or >= 1")
    if not 1 <= cfg.index.pq_bits <= 16:
        problems.append("index.pq_bits: 1 to 16 bits per sub-quantiser code")
    if cfg.index.train_size is not None and cfg.index.train_size < 1:
        problems.append("index.train_size: null (every passage) or >= 1")
    if not 0 <= cfg.index.rabitq_query_bits <= 8:
        problems.append("index.rabitq_query_bits: 0 (float question) to 8")
    if not cfg.eval.top_k or min(cfg.eval.top_k) < 1:
        problems.append("eval.top_k: a non-empty list of positive integers")
    elif binary and cfg.index.candidate_generation:
        if cfg.index.num_candidates < max(cfg.eval.top_k):
            problems.append(
                f"index.num_candidates={cfg.index.num_candidates} is below max(eval.top_k)={max(cfg.eval.top_k)}"
            )
    if cfg.data.num_hard_negatives < 0 or cfg.data.num_other_negatives < 0:
        problems.append("data.num_*_negatives: must be >= 0")
    if cfg.train.batch_size < 1:
        problems.append("train.batch_size: must be >= 1")
    for key, value in (("train.precision", cfg.train.precision), ("encode.precision", cfg.encode.precision)):
        if str(value) not in PRECISIONS:
            problems.append(f"{key}={value!r}: one of {', '.join(PRECISIONS)}")
        elif str(value) in ("16-mixed", "16-true") and cfg.train.accelerator == "cpu":
            problems.append(f"{key}={value}: float16 needs a GPU; on the CPU use bf16-mixed or 32-true")
    if cfg.encode.part is not None and encode_part(cfg.encode.part) is None:
        problems.append(f"encode.part={cfg.encode.part!r}: expected i/n with 0 <= i < n (e.g. 3/8), or null")
    if cfg.encode.batch_size < 1 or cfg.encode.shard_size < 1:
        problems.append("encode.batch_size and encode.shard_size: must be >= 1")
    if cfg.train.grad_cache_chunk_size is not None:
        if cfg.train.grad_cache_chunk_size < 1:
            problems.append("train.grad_cache_chunk_size: questions per chunk, >= 1 (or null for off)")
        if cfg.train.accumulate_grad_batches != 1:
            problems.append("train.grad_cache_chunk_size: gradient caching already makes the step's whole batch one "
                            "loss; use it with train.accumulate_grad_batches=1")
    _check_ranges(cfg, problems)
    if not 0 <= cfg.optim.warmup_ratio < 1:
        problems.append("optim.warmup_ratio: expected 0 <= ratio < 1")
    if problems:
        raise ConfigError("config: " + "; ".join(problems))
