"""The stage commands: each reads the run directory, does one thing, and records config + provenance.

The run's config.yaml is written when training or an index has been built, never before: it is what
`Retriever.from_run` reads, so it must name weights and an index the run holds (a `run` that stops at its index
stage leaves the last good config; an encoding records its own inputs in its manifest)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bprlab.config.enums import Checkpoint, DatasetName
from bprlab.config.schema import RunConfig
from bprlab.errors import ConfigError, StageError
from bprlab.runs import NAMED_CHECKPOINTS, RunPaths

log = logging.getLogger("bprlab")


def prepare(cfg: RunConfig, force: bool = False) -> None:
    from bprlab.data.passage_store import PassageStore
    from bprlab.data.paths import data_paths
    from bprlab.data.squad import prepare_squad

    paths = data_paths(cfg.data)
    if cfg.data.dataset is DatasetName.squad:
        manifest = prepare_squad(cfg.data.squad, paths.passages.parent, force=force)
        log.info("squad: %s", json.dumps(manifest["counts"]))
    for path in (paths.train, paths.dev, paths.test, paths.passages, paths.qrels):  # those configured
        if path is not None and not Path(path).is_file():
            hint = f"; run `make data DATASET={cfg.data.dataset.value}`" if cfg.data.dataset.value in ("nq", "trivia") else ""
            raise StageError(f"{path}: not found{hint}")
    store = PassageStore.open(paths.passages)
    log.info("passage store: %d passages", len(store))


def train(cfg: RunConfig, force: bool = False) -> None:
    from bprlab.lit.train import train as fit

    if cfg.checkpoint == Checkpoint.pretrained:
        log.info("checkpoint=pretrained: nothing to train for %s", cfg.name)
        return
    if str(cfg.checkpoint) not in NAMED_CHECKPOINTS:
        log.info("checkpoint=%s: using those weights, nothing to train", cfg.checkpoint)
        return
    if cfg.data.dataset.folder and not cfg.data.train_file:
        RunPaths(cfg).checkpoint()  # the run must already be trained (a clear error otherwise)
        log.info("data.dataset=%s is evaluated, not trained on: using the weights already trained in %s",
                 cfg.data.dataset.value, RunPaths(cfg).root)
        return
    from bprlab.data.paths import data_paths

    data_paths(cfg.data).training()  # before any weights load: a dataset without training files says so at once
    paths = RunPaths(cfg)
    before = _stamp(paths.train_summary)
    summary = fit(cfg, force=force)
    if _stamp(paths.train_summary) != before or not (paths.data_root / "config.yaml").is_file():
        paths.record()  # new weights; a run already trained keeps the config of its last index
    log.info("trained %s: %s", cfg.name, json.dumps(summary))


def _stamp(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.is_file() else None


def encode(cfg: RunConfig, force: bool = False) -> None:
    from bprlab.lit.encode import encode as run_encode

    log.info("encoded passages: %s", run_encode(cfg, force=force))  # its manifest records what encoded them


def _is_rank_zero() -> bool:
    """Under DDP or SLURM every rank runs the command; the single-process stages run on rank 0 only."""
    from pytorch_lightning.utilities import rank_zero_only

    return rank_zero_only.rank == 0


def index(cfg: RunConfig, force: bool = False) -> None:
    from bprlab.index.build import build_index

    if not _is_rank_zero():
        return
    built = build_index(cfg, force=force)
    RunPaths(cfg).record()
    log.info("index: %s", built)


def evaluate(cfg: RunConfig, force: bool = False, inputs_current: bool = False) -> dict | None:
    from bprlab.eval.retrieval import evaluate as run_evaluate

    if cfg.data.dataset.folder and not inputs_current:  # an evaluation-only folder: made on first use
        prepare(cfg)
        encode(cfg, force=force)
        index(cfg, force=force)
    if not _is_rank_zero():
        return None
    metrics = run_evaluate(cfg)
    paths = RunPaths(cfg)
    from bprlab.tracking import log_evaluation

    log_evaluation(cfg, paths.root, metrics, [paths.eval / "metrics.json"])
    log.info("%s %s: %s", cfg.name, metrics["search"],
             " ".join(f"{k}={metrics[k]:.1f}" for k in metrics if k.startswith(("top", "ndcg", "mrr", "recall", "hamming@"))))
    return metrics


def run(cfg: RunConfig, force: bool = False) -> dict | None:
    if cfg.encode.part:  # a part leaves the encoding unfinished by design: index would find nothing to read
        raise ConfigError(f"encode.part={cfg.encode.part} encodes one part of the corpus (an array job of `bprlab "
                          "encode`); `bprlab run` needs the whole encoding: run the parts with `bprlab encode`, then "
                          "`bprlab run` without encode.part")
    if _is_rank_zero():  # other ranks wait for rank 0 when the process group forms in `train`
        prepare(cfg)
    train(cfg, force=force)
    encode(cfg, force=force)
    index(cfg, force=force)
    return evaluate(cfg, inputs_current=True)  # run has just brought encoding and index up to date
