"""Stamps of format 1, frozen: how artifacts were stamped before each stage's keys were read from the schema
(bprlab.stamps). Used only to recognise artifacts made then, so that they stay current: never extended (a new
key enters the format-2 stamps through the schema), and removable once no artifact of format 1 is left.

Format 1 kept one list per stage: the training stamp was the whole config but for the sections named below, with
the data keys listed below and the keys added after runs existed left out at their defaults; an encoding named
its untrained weights by model name and projection size (pooling and normalisation where not the default); an
index hashed the manifest with the kind's folder tag; a table unit hashed the config with search by its tag.
"""

from __future__ import annotations

from pathlib import Path

from bprlab.artifacts import file_sha256, fingerprint
from bprlab.config.index_kinds import build_tag, search_tag
from bprlab.config.loader import to_dict
from bprlab.config.schema import RunConfig

_NOT_TRAINING = ("name", "runs_root", "checkpoint", "logger", "encode", "index", "eval", "wandb")
_TRAINING_DATA = ("num_hard_negatives", "num_other_negatives", "shuffle_negatives", "strip_question_mark",
                  "max_question_length", "max_passage_length", "val_hard_negatives", "val_other_negatives",
                  "max_val_questions")
_ADDED_AT_DEFAULT = {("model", "pooling"): "cls", ("model", "normalize"): False, ("optim", "projection_lr"): None,
                     ("model", "same_projection_init"): False}
_INDEX_LAYOUT = 2
# every key of the schema when format 1 was frozen, by section; keys added since are left out while at their
# defaults (a format-1 artifact was made without them) and keys removed since go back at the value they always had
_KEYS = {
    "": "name method seed runs_root checkpoint logger",
    "data": "dataset root path split ignore_identical_ids train_file dev_file test_file passages_file answer_match "
            "num_hard_negatives num_other_negatives shuffle_negatives strip_question_mark max_question_length "
            "max_passage_length num_workers val_hard_negatives val_other_negatives max_val_questions",
    "data.squad": "source words_per_passage dev_articles test_articles bm25_depth hard_negatives other_negatives seed",
    "model": "name projection_dim pooling same_projection_init normalize passage_text_token_type",
    "hash": "estimator gamma fixed_beta",
    "loss": "candidate_weight rerank_weight candidate_kind margin",
    "optim": "lr eps weight_decay warmup_ratio warmup_steps max_grad_norm projection_lr",
    "train": "batch_size epochs max_steps accelerator devices num_nodes strategy precision part "
             "accumulate_grad_batches grad_cache_chunk_size select_from_epoch val_every_n_epochs val_check_interval "
             "checkpoint_every_n_steps log_every_n_steps resume deterministic",
    "encode": "batch_size shard_size precision part",
    "index": "kind num_candidates rerank candidate_generation hash_bits hash_flips hash_tables search_batch_size "
             "backend device threads code_bits rotation pq_subquantizers pq_bits rabitq_query_bits rescore hnsw_m "
             "hnsw_ef_construction hnsw_ef_search factory train_size name",
    "eval": "top_k question_batch_size max_questions",
    "wandb": "project entity group tags log_artifacts",
}
_REMOVED = {"train.part": None}


def _config(cfg: RunConfig) -> dict | None:
    """The config as format 1 saw it; None where a key added since is set away from its default (no format-1
    artifact was made with it)."""
    from bprlab.config.keys import keys, value_of

    frozen = {f"{section}.{leaf}".lstrip(".") for section, leaves in _KEYS.items() for leaf in leaves.split()}
    config = to_dict(cfg)
    for key in keys():
        if key.name not in frozen:
            value = value_of(cfg, key.name)
            if value != getattr(key.default, "value", key.default):
                return None
            *path, leaf = key.name.split(".")
            node = config
            for part in path:
                node = node[part]
            node.pop(leaf)
    for name, value in _REMOVED.items():
        *path, leaf = name.split(".")
        node = config
        for part in path:
            node = node[part]
        node[leaf] = value
    return config


def train_stamp(cfg: RunConfig, files: dict[str, str]) -> str | None:
    config = _config(cfg)
    if config is None:
        return None
    for key in _NOT_TRAINING:
        config.pop(key)
    config["train"].pop("resume")
    config["data"] = {key: config["data"][key] for key in _TRAINING_DATA}
    for (section, key), default in _ADDED_AT_DEFAULT.items():
        if config[section].get(key, default) == default:
            config[section].pop(key, None)
    return fingerprint(config, files)


def weights_stamp(checkpoint: Path | None, cfg: RunConfig) -> dict | None:
    if _config(cfg) is None:
        return None
    if checkpoint is None:
        stamp = {"pretrained": cfg.model.name, "projection_dim": cfg.model.projection_dim}
        if cfg.model.pooling.value != "cls" or cfg.model.normalize:
            stamp.update(pooling=cfg.model.pooling.value, normalize=cfg.model.normalize)
        return stamp
    return {"checkpoint": checkpoint.name, "bytes": checkpoint.stat().st_size, "sha256": file_sha256(checkpoint)}


def encode_stamp(cfg: RunConfig, checkpoint: Path | None, representation: str, store) -> dict | None:
    weights = weights_stamp(checkpoint, cfg)
    if weights is None:
        return None
    return {"weights": weights, "representation": representation, "corpus": store.fingerprint(),
            "num_passages": len(store), "shard_size": cfg.encode.shard_size, "precision": cfg.encode.precision}


def index_stamp(cfg: RunConfig, manifest: dict) -> str | None:
    if _config(cfg) is None:
        return None
    return fingerprint(manifest, build_tag(cfg.index), _INDEX_LAYOUT)


def unit_stamp(cfg: RunConfig, evaluation: dict[str, str], training: dict[str, str]) -> str | None:
    config = _config(cfg)
    if config is None:
        return None
    for key in ("logger", "wandb", "runs_root"):
        config.pop(key)
    config["index"] = {"search": search_tag(cfg.index), "train_size": cfg.index.train_size}
    config["encode"] = {"precision": cfg.encode.precision}
    config["eval"] = {"top_k": cfg.eval.top_k, "max_questions": cfg.eval.max_questions}
    for key in ("root", "path", "train_file", "dev_file", "test_file", "passages_file", "num_workers"):
        config["data"].pop(key)
    files = {name: evaluation[name] for name in ("test", "qrels") if name in evaluation}
    files.update({name: training[name] for name in ("train", "dev") if name in training})
    files["passages"] = evaluation["passages"]
    return fingerprint(config, files)
