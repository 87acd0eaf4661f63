"""Experiment loggers. W&B is optional and never global: imported lazily, offline without credentials."""

from __future__ import annotations

from pathlib import Path

from bprlab.config.enums import LoggerKind
from bprlab.config.schema import RunConfig


def make_logger(cfg: RunConfig, run_dir: Path):
    if cfg.logger is LoggerKind.none:
        return False
    if cfg.logger is LoggerKind.csv:
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="logs", version="")
    from bprlab.tracking import lightning_logger

    return lightning_logger(cfg, run_dir)
