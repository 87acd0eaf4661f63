"""`encode(cfg)`: the corpus through the passage encoder as Lightning predict, resumable shard by shard.

The corpus is cut into shards of `encode.shard_size` rows. Every rank encodes its share of the shards still
missing, each shard written atomically the moment it is complete, into `<out>.partial/` beside a plan.json that
records what the shards depend on (weights, corpus, representation, shard size, precision). A killed encode
(SIGKILL included) keeps its finished shards: the rerun, with any number of devices, encodes only the rest; a
plan that no longer matches the inputs starts over. When every shard is there, rank 0 writes manifest.json and
renames the folder into place.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytorch_lightning as pl

from bprlab.artifacts import atomic_dir, read_json, write_json
from bprlab.config.schema import RunConfig
from bprlab.config.validate import encode_part
from bprlab.core.hashing import pack_codes
from bprlab.data.collate import Collator
from bprlab.data.ordering import shard_rows
from bprlab.data.passage_store import PassageStore
from bprlab.data.paths import data_paths
from bprlab.errors import StageError
from bprlab.index.base import input_kind
from bprlab.index.build import MANIFEST, check_encoded
from bprlab.lit.callbacks import ShardWriter, shard_file
from bprlab.lit.datamodule import RetrieverDataModule
from bprlab.lit.train import load_module, make_trainer
from bprlab.runs import RunPaths
from bprlab.stamps import encode_stamp, weights_stamp

log = logging.getLogger(__name__)
PLAN = "plan.json"


def encode(cfg: RunConfig, force: bool = False, extra_callbacks: list | None = None) -> Path:
    """Write <run>/passages/<weights>-<emb|code>/; returns it. Skips when it exists for the same inputs."""
    paths = RunPaths(cfg)
    representation = input_kind(cfg.index)
    if representation == "text":
        log.info("index.kind=%s reads the passage texts: nothing to encode", cfg.index.kind.value)
        return paths.passages(representation)
    out = paths.passages(representation)
    checkpoint = paths.checkpoint()
    store = PassageStore.open(data_paths(cfg.data).passages)
    weights = weights_stamp(checkpoint, cfg)  # a checkpoint is hashed once
    stamp = encode_stamp(cfg, weights, representation, store)
    accepted = current_stamps(cfg, weights, representation, store)
    if not force and (out / MANIFEST).is_file() and read_json(out / MANIFEST).get("stamp") in accepted:
        log.info("%s is current", out)
        return out
    if representation == "code" and not force and codes_from_embeddings(
            paths.passages("emb"), out, stamp, current_stamps(cfg, weights, "emb", store)):
        return out
    rows = store.rows_digest()
    if not force and reuse_same_rows(paths, out, stamp, rows, accepted):
        return out
    staging = out.with_name(out.name + ".partial")
    part = encode_part(cfg.encode.part) if cfg.encode.part else None
    module = load_module(cfg, checkpoint)
    module.predict_representation = representation
    datamodule = RetrieverDataModule(cfg, Collator.from_config(module.cfg))  # the weights' own lengths
    plan = EncodePlan(staging, stamp, accepted, cfg.encode.shard_size, len(store), force, part)
    writer = ShardWriter(staging, cfg.encode.shard_size, len(store), workers=cfg.data.num_workers > 0)
    trainer = make_trainer(cfg, [plan, writer, *(extra_callbacks or [])], enable_checkpointing=False, inference_mode=True,
                           precision=cfg.encode.precision, use_distributed_sampler=False)
    trainer.predict(module, datamodule=datamodule, return_predictions=False)
    trainer.strategy.barrier()
    if part is not None:
        log.info("encode.part=%s done; run `bprlab encode` without it to merge once every part has finished",
                 cfg.encode.part)
        return staging
    if trainer.is_global_zero:
        write_json(staging / MANIFEST, {"stamp": stamp, "representation": representation, "rows_sha256": rows,
                                        "num_passages": len(store), "dim": module.model.dim})
        check_encoded(staging)
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)  # replace, then delete: a kill in between leaves a complete folder in one place
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    trainer.strategy.barrier()
    return out


class EncodePlan(pl.Callback):
    """Once the process group exists: rank 0 starts the staging folder over when its plan differs from this
    run's (or with --force); then every rank lists the shards still missing, in the same order. An array task
    (`encode.part`) never deletes: parts run at the same time, so a different plan there is an error."""

    def __init__(self, staging: Path, stamp: dict, accepted: list[dict], shard_size: int, num_passages: int,
                 force: bool, part: tuple[int, int] | None = None):
        self.staging, self.stamp, self.accepted, self.force, self.part = staging, stamp, accepted, force, part
        self.shard_size, self.num_passages = shard_size, num_passages

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.is_global_zero:
            current = (self.staging / PLAN).is_file() and read_json(self.staging / PLAN) in self.accepted
            if self.part is not None and (self.staging / PLAN).is_file() and not current:
                raise StageError(f"{self.staging}: holds shards of another encoding (plan.json differs); remove the "
                                 "folder, or run `bprlab encode` once without encode.part, before the array job")
            if (self.force and self.part is None) or not current:
                shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir(parents=True, exist_ok=True)
            if not (self.staging / PLAN).is_file() or not current:  # a plan of format 1 stays: parts share it
                write_json(self.staging / PLAN, self.stamp)
        trainer.strategy.barrier()
        todo = missing_shards(self.staging, self.shard_size, self.num_passages)
        if self.part is not None:
            todo = [shard for shard in todo if shard % self.part[1] == self.part[0]]  # by shard number: stable
        done = -(-self.num_passages // self.shard_size) - len(todo)
        if done and trainer.is_global_zero:
            log.info("resuming the encoding: %d shards done, %d to go", done, len(todo))
        trainer.datamodule.encode_shards = todo


def missing_shards(staging: Path, shard_size: int, num_rows: int) -> list[int]:
    """Shards without a complete file (a file whose rows are not exactly the shard's is encoded again)."""
    todo = []
    for shard in range(-(-num_rows // shard_size)):
        path = staging / shard_file(shard)
        try:
            with np.load(path) as data:
                rows = data["rows"]
            complete = np.array_equal(np.sort(rows), np.array(shard_rows(shard, shard_size, num_rows)))
        except (OSError, ValueError, KeyError, EOFError):  # absent, or not a readable npz
            complete = False
        if not complete:
            todo.append(shard)
    return todo


def current_stamps(cfg: RunConfig, weights: dict, representation: str, store) -> list[dict]:
    """The stamps under which an encoding of `representation` by `weights` is current: this format's, and
    format 1's (bprlab.stamps) where the weights and config can be one of then."""
    from bprlab.stamps import format1_encode_stamp as format1

    stamps = [encode_stamp(cfg, weights, representation, store)]
    old = format1(cfg, weights, representation, store)
    return stamps + ([old] if old is not None else [])


def codes_from_embeddings(emb_dir: Path, out: Path, stamp: dict, emb_stamps: list[dict]) -> bool:
    """Codes are sign(e) packed (`pack_codes`), so when the same weights have already encoded this corpus as
    float embeddings (current under one of `emb_stamps`), the codes are derived from them, bit for bit what the
    encoder would give, instead of running it again (a DPR run's binary rows reuse its float encoding). False
    when there is none to use."""
    if not (emb_dir / MANIFEST).is_file():
        return False
    manifest = read_json(emb_dir / MANIFEST)
    if manifest.get("stamp") not in emb_stamps:
        return False
    with atomic_dir(out) as tmp:
        for shard in sorted(emb_dir.glob("*.npz")):
            with np.load(shard) as data:
                np.savez(tmp / shard.name, rows=data["rows"], values=pack_codes(data["values"]))
        write_json(tmp / MANIFEST, {**manifest, "stamp": stamp, "representation": "code", "derived_from": emb_dir.name})
    log.info("%s: codes = sign of the embeddings in %s (no encoder pass)", out, emb_dir)
    return True


def reuse_same_rows(paths: RunPaths, out: Path, stamp: dict, rows: str, stamps: list[dict]) -> bool:
    """Another encoding in this run of the same passages (the same rows, by `PassageStore.rows_digest`) by the same
    weights, representation, shard size and precision (one of `stamps` but for the corpus file), from another
    file (a BEIR folder exported from the run's own corpus): its shards are this encoding's too, so they are
    linked (or copied) instead of encoding again. False when there is none."""
    wanted = [{k: v for k, v in s.items() if k != "corpus"} for s in stamps]
    manifests = [*paths.root.glob(f"passages/*/{MANIFEST}"), *paths.root.glob(f"datasets/*/passages/*/{MANIFEST}")]
    for manifest_path in sorted(manifests):
        source = manifest_path.parent
        if source.resolve() == out.resolve():
            continue
        manifest = read_json(manifest_path)
        if manifest.get("rows_sha256") != rows or {k: v for k, v in manifest.get("stamp", {}).items()
                                                   if k != "corpus"} not in wanted:
            continue
        with atomic_dir(out) as tmp:
            for shard in sorted(source.glob("*.npz")):
                try:
                    os.link(shard, tmp / shard.name)
                except OSError:  # another file system
                    shutil.copy2(shard, tmp / shard.name)
            write_json(tmp / MANIFEST, {**manifest, "stamp": stamp, "reused_from": str(source.relative_to(paths.root))})
            check_encoded(tmp)
        log.info("%s: the same passages were encoded by these weights in %s: reused (no encoder pass)", out, source)
        return True
    return False
