"""Experiment loggers. W&B is optional and never global: imported lazily, offline without credentials."""

from __future__ import annotations

import os
from pathlib import Path

from bprlab.config.loader import to_dict
from bprlab.config.schema import LoggerKind, RunConfig


def wandb_mode() -> str:
    """'online' with credentials (WANDB_API_KEY or a ~/.netrc entry), else 'offline'; WANDB_MODE wins."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())
    return "online" if has_key else "offline"


def make_logger(cfg: RunConfig, run_dir: Path):
    if cfg.logger is LoggerKind.none:
        return False
    if cfg.logger is LoggerKind.csv:
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="logs", version="")
    from pytorch_lightning.loggers import WandbLogger

    logger = WandbLogger(project=os.environ.get("WANDB_PROJECT", "bprlab"), name=cfg.name, save_dir=str(run_dir),
                         offline=wandb_mode() == "offline",
                         tags=[cfg.data.dataset.value, cfg.method.value, cfg.model.name])
    logger.log_hyperparams(to_dict(cfg))
    return logger
