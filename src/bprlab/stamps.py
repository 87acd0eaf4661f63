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
recognised by `bprlab.stamps_format1` and upgraded in place where the artifact records only its stamp (train.json,
unit records); encodings and indexes of format 1 stay current as they are (their stamp enters the index's own).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from bprlab.artifacts import file_sha256, fingerprint, read_json
from bprlab.config.index_kinds import reads
from bprlab.config.keys import encoding_keys, keys, value_of
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
    from bprlab.data.registry import data_paths

    try:
        paths = data_paths(cfg.data)
    except ConfigError:  # a dataset without training files configured (an evaluation-only folder)
        return {}
    return {name: file_sha256(path) for name, path in (("train", paths.train), ("dev", paths.dev))
            if path is not None and Path(path).is_file()}


def evaluation_files(cfg: RunConfig) -> dict[str, str]:
    """The questions (and qrels) scored and the corpus searched, by content."""
    from bprlab.data.passage_store import PassageStore
    from bprlab.data.registry import data_paths

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
    retrained one does not), or the untrained encoder's encoding keys."""
    if checkpoint is None:
        return {"format": FORMAT, "pretrained": {name: _plain(value_of(cfg, name)) for name in encoding_keys()}}
    return {"checkpoint": checkpoint.name, "bytes": checkpoint.stat().st_size, "sha256": file_sha256(checkpoint)}


def encode_stamp(cfg: RunConfig, weights: dict, representation: str, store) -> dict:
    """An encoding's stamp (kept readable in its manifest): the weights, what is written (emb | code), the
    corpus by content, and the encode keys."""
    return {"format": FORMAT, "weights": weights, "representation": representation,
            "corpus": store.fingerprint(), "num_passages": len(store), "keys": stage_values(cfg, "encode")}


def index_stamp(cfg: RunConfig, manifest: dict, layout: int) -> str:
    """An index's stamp: the kind's index keys over the encoding it was built from (its manifest), and the
    index folder's `layout` version."""
    return stage_stamp(cfg, "index", {"layout": str(layout)}, upstream=manifest)


def unit_stamp(cfg: RunConfig) -> str:
    """What a table unit's numbers depend on: every stage's keys from the config, and every data file read, by
    content. Computed after `prepare`, which builds the squad files."""
    return stage_stamp(cfg, "eval", {**evaluation_files(cfg), **{f"training.{k}": v for k, v in
                                                                  training_files(cfg).items()}})


def check_index_weights(index_dir: Path, checkpoint: Path | None, cfg: RunConfig) -> None:
    """An index records the weights that encoded its passages; searching it with other question weights (a run
    retrained since) would pair vectors of two models. Refused, naming the commands that rebuild it."""
    from bprlab.stamps_format1 import weights_stamp as format1_weights

    meta_path = Path(index_dir) / "index.json"
    if not meta_path.is_file():
        return  # no index yet: loading it says so
    weights = read_json(meta_path).get("weights")
    if weights and weights not in (weights_stamp(checkpoint, cfg), format1_weights(checkpoint, cfg)):
        raise StageError(f"{index_dir}: built from passages encoded with other weights than "
                         f"{checkpoint or 'the pretrained encoder'} (retrained since?): run `bprlab encode` and "
                         "`bprlab index` again, or `bprlab run`, which does both")
