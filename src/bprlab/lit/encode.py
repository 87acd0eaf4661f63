"""`encode(cfg)`: the corpus through the passage encoder as Lightning predict, one shard set per rank."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from bprlab.artifacts import read_json, write_json
from bprlab.config.schema import RunConfig
from bprlab.index.base import input_kind
from bprlab.index.build import MANIFEST, check_encoded
from bprlab.lit.callbacks import ShardWriter
from bprlab.lit.datamodule import RetrieverDataModule
from bprlab.lit.train import load_module, make_collator, make_trainer
from bprlab.runs import RunPaths

log = logging.getLogger(__name__)


def encode(cfg: RunConfig, force: bool = False) -> Path:
    """Write <run>/passages/<weights>-<emb|code>/; returns it. Skips when it exists for the same weights."""
    paths = RunPaths(cfg)
    representation = input_kind(cfg.index)
    out = paths.passages(representation)
    checkpoint = paths.checkpoint()
    weights = _weights_stamp(checkpoint, cfg)
    if not force and (out / MANIFEST).is_file() and read_json(out / MANIFEST).get("weights") == weights:
        log.info("%s is current", out)
        return out
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    module = load_module(cfg, checkpoint)
    module.predict_representation = representation
    datamodule = RetrieverDataModule(cfg, make_collator(module.cfg))
    trainer = make_trainer(cfg, [ShardWriter(staging, cfg.encode.shard_size)], enable_checkpointing=False,
                           inference_mode=True)
    trainer.predict(module, datamodule=datamodule, return_predictions=False)
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        num_passages = len(datamodule.store)
        write_json(staging / MANIFEST, {"weights": weights, "representation": representation,
                                        "num_passages": num_passages, "dim": module.model.dim})
        check_encoded(staging)
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    trainer.strategy.barrier()
    return out


def _weights_stamp(checkpoint: Path | None, cfg: RunConfig) -> dict:
    if checkpoint is None:
        return {"pretrained": cfg.model.name, "projection_dim": cfg.model.projection_dim}
    stat = checkpoint.stat()
    return {"checkpoint": str(checkpoint.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
