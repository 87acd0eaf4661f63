"""What each stage's output depends on, read from the schema: one stamp per stage.

Every config key names the stage that reads it (bprlab.config.schema.key: prepare, train, encode, index, search,
eval or none). A stage's stamp is

    its own keys' values + its input files by content + the upstream stage's stamp

so a key that moves a stage's output moves that stage's stamp and every stamp downstream, and nothing upstream.
Keys marked `content` are paths: their files enter by content (a moved or copied file keeps its stamps), never
by name. Index and search keys enter only where the chosen index kind reads them (bprlab.config.index_kinds.reads).
Stage `none` (paths, logging, threads, devices, inference batch sizes) and `prepare` (it enters through the
prepared files' content) never enter a stamp.

Artifacts and their stamps:
    train.json, checkpoints/fingerprint.txt   train_stamp: train keys + the training and dev files
    passages/*/manifest.json ("stamp")        encode_stamp: encode keys + the corpus + the weights by content
                                              (a trained checkpoint's bytes; the untrained encoder's keys)
    index/*/index.json ("source")             index_stamp: the kind's index keys + the encoded passages' manifest
    reproduce's unit records                  unit_stamp: every stage's keys from the config + every data file

Format: stamps made before the stages were read from the schema (format 1: hand-kept key lists per stage) are
recognised by the format-1 functions at the end of this module, and upgraded in place where the artifact records
only its stamp (train.json, unit records); encodings and indexes of format 1 stay current as they are (an
encoding's stamp enters its index's).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from bprlab.artifacts import file_sha256, fingerprint, read_json
from bprlab.config.index_kinds import build_tag, reads, search_tag
from bprlab.config.keys import encoding_keys, holder, keys, value_of
from bprlab.config.loader import to_dict
from bprlab.config.schema import RunConfig
from bprlab.errors import ConfigError, StageError

FORMAT = 2
STAGES = ("train", "encode", "index", "search", "eval")  # in order: each stamp holds the ones before it


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def stage_values(cfg: RunConfig, stage: str) -> dict[str, Any]:
    """The values of the keys `stage` reads, by dotted name: paths (content keys) left to the files' content, index
    and search keys only where the index kind reads them."""
    if stage not in STAGES:
        raise ValueError(f"no stamp for stage {stage!r} (stamped stages: {', '.join(STAGES)})")
    kind_reads = reads(cfg.index)
    values = {}
    for key in keys():
        if key.stage != stage or key.content:
            continue
        section, _, leaf = key.name.partition(".")
        if section == "index" and leaf not in kind_reads:
            continue
        values[key.name] = _plain(value_of(cfg, key.name))
    return values


def stage_stamp(cfg: RunConfig, stage: str, files: dict | None = None, upstream: Any = "config") -> str:
    """`stage`'s stamp: its keys, `files` (name -> content digest) and the upstream stamp. `upstream` "config":
    the previous stage's stamp from this config (what a stage will be, before its inputs exist); else the recorded
    stamp of what was read (a checkpoint's content, an encoding's manifest)."""
    position = STAGES.index(stage)
    if upstream == "config":
        upstream = stage_stamp(cfg, STAGES[position - 1]) if position else None
    return fingerprint({"format": FORMAT, "stage": stage, "keys": stage_values(cfg, stage), "upstream": upstream},
                       files or {})


def training_files(cfg: RunConfig) -> dict[str, str]:
    """The training and dev files by content (none for an evaluation-only dataset)."""
    from bprlab.data.paths import data_paths

    try:
        paths = data_paths(cfg.data)
    except ConfigError:  # a dataset without training files configured (an evaluation-only folder)
        return {}
    return {name: file_sha256(path) for name, path in (("train", paths.train), ("dev", paths.dev))
            if path is not None and Path(path).is_file()}


def evaluation_files(cfg: RunConfig) -> dict[str, str]:
    """The questions (and qrels) scored and the corpus searched, by content."""
    from bprlab.data.passage_store import PassageStore
    from bprlab.data.paths import data_paths

    paths = data_paths(cfg.data)
    files = {name: file_sha256(path) for name, path in (("test", paths.test), ("qrels", paths.qrels))
             if path is not None and Path(path).is_file()}
    files["passages"] = PassageStore.open(paths.passages).fingerprint()
    return files


def train_stamp(cfg: RunConfig) -> str:
    """What decides the trained weights. Evaluation inputs (test file, corpus, a BEIR folder), search, encoding
    and logging are not part of it, so evaluating a run on other data never retrains it."""
    return stage_stamp(cfg, "train", training_files(cfg))


def weights_stamp(checkpoint: Path | None, cfg: RunConfig) -> dict:
    """The weights by content: a checkpoint's name, size and hash (a moved or copied run keeps its encodings, a
    retrained one does not), or, for the untrained encoder, what decides how it encodes passages: the encoding
    keys but the question length, and the passage text's token type they resolve to (the method decides it where
    model.passage_text_token_type is null)."""
    if checkpoint is None:
        from bprlab.core.inputs import passage_token_type

        keys = {name: _plain(value_of(cfg, name)) for name in encoding_keys() if name != "data.max_question_length"}
        return {"format": FORMAT, "pretrained": {**keys, "passage_token_type": passage_token_type(cfg)}}
    return {"checkpoint": checkpoint.name, "bytes": checkpoint.stat().st_size, "sha256": file_sha256(checkpoint)}


def encode_stamp(cfg: RunConfig, weights: dict, representation: str, store) -> dict:
    """An encoding's stamp (kept readable in its manifest): the weights (by content: `checkpoint`, which names
    them, is not needed beside them), what is written (emb | code), the corpus by content, and the encode keys."""
    keys = {name: value for name, value in stage_values(cfg, "encode").items() if name != "checkpoint"}
    return {"format": FORMAT, "weights": weights, "representation": representation,
            "corpus": store.fingerprint(), "num_passages": len(store), "keys": keys}


def index_stamp(cfg: RunConfig, manifest: dict, layout: int) -> str:
    """An index's stamp: the kind's index keys over the encoding it was built from (its manifest), and the
    index folder's `layout` version."""
    return stage_stamp(cfg, "index", {"layout": str(layout)}, upstream=manifest)


def unit_stamp(cfg: RunConfig, evaluation: dict[str, str] | None = None,
               training: dict[str, str] | None = None) -> str:
    """What a table unit's numbers depend on: every stage's keys from the config, and every data file read, by
    content (`evaluation_files`, `training_files`: computed here unless given). Computed after `prepare`, which
    builds the squad files."""
    evaluation = evaluation_files(cfg) if evaluation is None else evaluation
    training = training_files(cfg) if training is None else training
    return stage_stamp(cfg, "eval", {**evaluation, **{f"training.{k}": v for k, v in training.items()}})


def check_index_weights(index_dir: Path, checkpoint: Path | None, cfg: RunConfig) -> None:
    """An index records the weights that encoded its passages; searching it with other question weights (a run
    retrained since) would pair vectors of two models. Refused, naming the commands that rebuild it."""
    meta_path = Path(index_dir) / "index.json"
    if not meta_path.is_file():
        return  # no index yet: loading it says so
    weights = read_json(meta_path).get("weights")
    if weights and weights != weights_stamp(checkpoint, cfg):  # a checkpoint's stamp is the same in format 1
        raise StageError(f"{index_dir}: built from passages encoded with other weights than "
                         f"{checkpoint or 'the pretrained encoder'} (retrained since?): run `bprlab encode` and "
                         "`bprlab index` again, or `bprlab run`, which does both")


# --- Format 1, frozen -----------------------------------------------------------------------------------------
# How artifacts were stamped before each stage's keys were read from the schema, kept only to recognise artifacts
# made then so that they stay current: never extended (a new key enters format 2 through the schema), removable
# once no artifact of format 1 is left. Format 1 kept one list per stage: the training stamp was the whole config
# but the sections named below, with the data keys listed below and the keys added after runs existed left out at
# their defaults; an encoding named its untrained weights by model name and projection size (pooling and
# normalisation where not the default); an index hashed the manifest with the kind's folder tag; a table unit
# hashed the config with search by its tag.

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
    """The config as format 1 saw it, keys added since left out; None where one of those that moves a number (a
    stamped stage's) is set away from its default: no format-1 artifact was made with it."""
    frozen = {f"{section}.{leaf}".lstrip(".") for section, leaves in _KEYS.items() for leaf in leaves.split()}
    config = to_dict(cfg)
    for key in keys():
        if key.name not in frozen:
            moved = value_of(cfg, key.name) != getattr(key.default, "value", key.default)
            if moved and key.stage in STAGES:  # a content key too: a file format 1 never read
                return None
            node, leaf = holder(config, key.name)
            node.pop(leaf)
    for name, value in _REMOVED.items():
        node, leaf = holder(config, name)
        node[leaf] = value
    return config


def format1_train_stamp(cfg: RunConfig, files: dict[str, str]) -> str | None:
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


def format1_encode_stamp(cfg: RunConfig, weights: dict, representation: str, store) -> dict | None:
    """For trained weights only (a checkpoint's stamp is the same in both formats): format 1 named the untrained
    encoder by model name and projection size alone, missing the passage length and token type that also decide
    its passages, so its encodings of the untrained encoder are made again (cheaply: no training)."""
    if "checkpoint" not in weights or _config(cfg) is None:
        return None
    return {"weights": weights, "representation": representation, "corpus": store.fingerprint(),
            "num_passages": len(store), "shard_size": cfg.encode.shard_size, "precision": cfg.encode.precision}


def format1_index_stamp(cfg: RunConfig, manifest: dict) -> str | None:
    if _config(cfg) is None:
        return None
    return fingerprint(manifest, build_tag(cfg.index), _INDEX_LAYOUT)


def format1_unit_stamp(cfg: RunConfig, evaluation: dict[str, str], training: dict[str, str]) -> str | None:
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
