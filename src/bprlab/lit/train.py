"""`train(cfg)`: fit DPR or BPR, resuming from last.ckpt when a previous run stopped part-way."""

from __future__ import annotations

import logging
import os
import time
import zipfile
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from bprlab import slurm
from bprlab.artifacts import read_json, write_json, write_text
from bprlab.config.enums import Method
from bprlab.config.loader import to_dict
from bprlab.config.schema import RunConfig
from bprlab.data.collate import Collator
from bprlab.errors import ConfigError, Requeued, StageError
from bprlab.lit.callbacks import (
    RandomState,
    ResumeCheckpoint,
    ResumeHistory,
    SameConfigOnEveryRank,
    SelectionCheckpoint,
)
from bprlab.lit.datamodule import RetrieverDataModule
from bprlab.lit.loggers import make_logger
from bprlab.lit.modules import RetrieverModule, module_class
from bprlab.lit.requeue import RequeueOnSignal
from bprlab.runs import RunPaths
from bprlab.stamps import train_stamp

log = logging.getLogger(__name__)


def check_allocation(cfg: RunConfig, env=None) -> None:
    """Under SLURM (tasks started by srun), the ranks Lightning expects (train.devices per node x train.num_nodes)
    must be the tasks SLURM started: a sweep trial asking for 8 devices in a 1-task allocation is one line here,
    before any work, instead of Lightning's error (or a hang) on every rank. SLURM_NTASKS is always there;
    SLURM_NNODES too; SLURM_NTASKS_PER_NODE only where sbatch was given --ntasks-per-node."""
    env = os.environ if env is None else env
    if not env.get("SLURM_NTASKS") or env.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return  # not under srun: Lightning's own launcher starts the ranks
    devices = cfg.train.devices
    count = len(devices) if isinstance(devices, list) else devices
    if count == "auto" or not str(count).isdigit():
        return
    count, nodes, tasks = int(count), cfg.train.num_nodes, int(env["SLURM_NTASKS"])
    per_node = env.get("SLURM_NTASKS_PER_NODE", "")
    wrong = count * nodes != tasks or (env.get("SLURM_NNODES", "").isdigit() and int(env["SLURM_NNODES"]) != nodes) \
        or (per_node.isdigit() and int(per_node) != count)
    if wrong:
        raise ConfigError(f"config: train.devices={devices} x train.num_nodes={nodes} ranks, but SLURM started "
                          f"{tasks} tasks on {env.get('SLURM_NNODES', '?')} node(s): ask sbatch for "
                          "--ntasks-per-node=train.devices and --nodes=train.num_nodes, or set them to match")


def make_trainer(cfg: RunConfig, callbacks: list, logger=False, **overrides) -> pl.Trainer:
    train = cfg.train
    if train.accelerator in ("gpu", "cuda"):  # a config asks for hardware this machine lacks: say it in one line
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"config: train.accelerator={train.accelerator} but no CUDA device is visible here; "
                              "use train.accelerator=cpu (or auto)")
    strategy = train.strategy
    if strategy == "ddp" and train.timeout_minutes:  # a rank that died makes the others fail after this, not hang
        from datetime import timedelta

        from pytorch_lightning.strategies import DDPStrategy

        strategy = DDPStrategy(timeout=timedelta(minutes=train.timeout_minutes))
    options = dict(
        accelerator=train.accelerator, devices=train.devices, num_nodes=train.num_nodes, strategy=strategy,
        precision=train.precision, max_epochs=train.epochs, max_steps=train.max_steps,
        # with gradient caching the module clips and steps itself (manual optimisation)
        gradient_clip_val=None if train.grad_cache_chunk_size else cfg.optim.max_grad_norm,
        gradient_clip_algorithm=None if train.grad_cache_chunk_size else "norm",
        accumulate_grad_batches=train.accumulate_grad_batches, check_val_every_n_epoch=train.val_every_n_epochs,
        val_check_interval=train.val_check_interval, log_every_n_steps=train.log_every_n_steps,
        reload_dataloaders_every_n_epochs=1, deterministic=train.deterministic, callbacks=callbacks, logger=logger,
        default_root_dir=str(RunPaths(cfg).root), num_sanity_val_steps=0,
        # one epoch cut short by max_steps: the progress bar counts to max_steps, not to the epoch's length
        limit_train_batches=train.max_steps * train.accumulate_grad_batches
        if train.max_steps > 0 and train.epochs == 1 else None,
    )
    if _under_srun():  # SLURM started the ranks: its warning before the time limit is ours (bprlab.lit.requeue)
        from lightning_fabric.plugins.environments import SLURMEnvironment

        options["plugins"] = [SLURMEnvironment(auto_requeue=False)]
    options.update(overrides)
    return pl.Trainer(**options)


def _under_srun() -> bool:
    from lightning_fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def checkpoint_callbacks(cfg: RunConfig, paths: RunPaths) -> tuple[pl.Callback, SelectionCheckpoint]:
    last = ResumeCheckpoint(dirpath=paths.checkpoints, filename="step{step}", save_top_k=0, save_last=True,
                            every_n_train_steps=cfg.train.checkpoint_every_n_steps, auto_insert_metric_name=False)
    best = SelectionCheckpoint(start_epoch=cfg.train.select_from_epoch, dirpath=paths.checkpoints,
                               filename="best-epoch{epoch}-step{step}", monitor="val/avg_rank", mode="min",
                               save_top_k=1, auto_insert_metric_name=False,
                               save_weights_only=True)  # the selected model: weights, no optimizer state (1/3 the size)
    return last, best


FINGERPRINT_FILE = "fingerprint.txt"


def _format1_stamp(cfg: RunConfig) -> str | None:
    from bprlab.stamps import format1_train_stamp as format1
    from bprlab.stamps import training_files

    return format1(cfg, training_files(cfg))


def _trained_with(paths: RunPaths, stamp: str, cfg: RunConfig) -> dict | None:
    """train.json when it records this training config (a stamp of format 1 is upgraded in place)."""
    if not paths.train_summary.is_file():
        return None
    summary = read_json(paths.train_summary)
    if summary.get("fingerprint") == stamp:
        return summary
    format1 = _format1_stamp(cfg)
    if format1 is not None and summary.get("fingerprint") == format1:
        if rank_zero_only.rank == 0:
            write_json(paths.train_summary, {**summary, "fingerprint": stamp})
            if (paths.checkpoints / FINGERPRINT_FILE).is_file():
                write_text(paths.checkpoints / FINGERPRINT_FILE, stamp)
        return {**summary, "fingerprint": stamp}
    return None


def train(cfg: RunConfig, force: bool = False, extra_callbacks: list | None = None,
          trainer_options: dict | None = None) -> dict:
    """Fit the model; returns (and writes to train.json) which checkpoints the later stages can use.

    Skipped when train.json records the same training config. Otherwise resumes from last.ckpt when that was
    written under the same training config; checkpoints of a different config are moved aside, never mixed.
    """
    paths = RunPaths(cfg)
    stamp = train_stamp(cfg)
    trained = None if force else _trained_with(paths, stamp, cfg)
    if trained is not None:
        log.info("%s is already trained with this config (use --force to retrain)", paths.root)
        return trained
    check_allocation(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    module = module_class(cfg.method)(to_dict(cfg))
    datamodule = RetrieverDataModule(cfg, Collator.from_config(cfg))
    datamodule.setup("fit")  # every training input read and checked before anything of the run is touched
    if rank_zero_only.rank == 0:  # every DDP/SLURM rank runs this script; one of them tidies up
        _set_aside_stale(paths, stamp, force, _format1_stamp(cfg))
    last, best = checkpoint_callbacks(cfg, paths)
    logger = make_logger(cfg, paths.root)
    requeue = RequeueOnSignal(paths.last_checkpoint) if _under_srun() else None
    same_config = SameConfigOnEveryRank(to_dict(cfg))
    history = ResumeHistory()
    callbacks = [last, best, RandomState(), history, same_config,
                 *([pl.callbacks.LearningRateMonitor("step")] if logger else []), *([requeue] if requeue else []),
                 *(extra_callbacks or [])]
    trainer = make_trainer(cfg, callbacks, logger=logger, **(trainer_options or {}))  # options: tests' plugins
    resume = _resume_point(paths, cfg)
    try:
        _fit(trainer, module, datamodule, resume, cfg)
        # last.ckpt is the final state whatever the step-based saving cadence was (all ranks call; rank 0 writes)
        trainer.save_checkpoint(paths.last_checkpoint, weights_only=False)  # full state: resumable
    except BaseException as exc:
        _finish_logger(trainer, failed=not isinstance(exc, Requeued))
        raise
    _finish_logger(trainer)
    summary = {
        "last_checkpoint": paths.last_checkpoint.name,  # names inside checkpoints/: the run dir may move
        "best_checkpoint": Path(best.best_model_path).name if best.best_model_path else None,
        "best_val_avg_rank": float(best.best_model_score) if best.best_model_score is not None else None,
        "global_step": trainer.global_step,
        "world_size": trainer.world_size,
        "global_batch_size": cfg.train.batch_size * trainer.world_size,  # questions per optimizer step
        "epochs": trainer.current_epoch,
        "resumed_from": str(resume) if resume else None,
        "resumes": history.resumes,  # the resumes behind these weights, in order (ResumeHistory); [] for one go
        "config_hash": same_config.hash,  # the same on every rank (checked when the process group formed)
        "fingerprint": stamp,
    }
    if trainer.is_global_zero:
        write_json(paths.train_summary, summary)
    trainer.strategy.barrier()  # later stages on every rank read train.json
    if not cfg.train.keep_resume_state:  # finished and recorded: a kill before this line leaves a resumable file
        trainer.save_checkpoint(paths.last_checkpoint, weights_only=True)
    if slurm.signalled():  # SLURM's warning came after the last step: training is done, the rest resumes
        slurm.answer_warning(f"{paths.root}: trained, then stopped by SLURM's warning before the time limit")
    return summary


def _resume_point(paths: RunPaths, cfg: RunConfig) -> Path | None:
    """last.ckpt when training resumes from it; a damaged one is an error, not a silent restart."""
    resume = paths.last_checkpoint if cfg.train.resume and paths.last_checkpoint.is_file() else None
    if resume and not zipfile.is_zipfile(resume):  # torch writes zip archives: a truncated or zero-byte file is not
        raise _damaged(resume, "truncated or empty")
    if resume and _weights_only(resume):
        raise StageError(f"{resume}: the weights of a finished run without its optimizer state "
                         "(train.keep_resume_state=false), and train.json is missing, so training cannot resume from "
                         "it; start over with `bprlab train <experiment.yaml> --force`")
    if resume:
        log.info("resuming from %s", resume)
    return resume


def _damaged(checkpoint: Path, why: str) -> StageError:
    return StageError(f"{checkpoint}: damaged ({why}), so training cannot resume from it; move it aside to resume "
                      "from nothing, or start over with `bprlab train <experiment.yaml> --force`")


def _weights_only(checkpoint: Path) -> bool:
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=False)  # mapped: not read in full
    except Exception as exc:  # noqa: BLE001 - a zip whose records are damaged fails in many ways
        raise _damaged(checkpoint, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}") from None
    return "optimizer_states" not in state


def _fit(trainer: pl.Trainer, module, datamodule, resume: Path | None, cfg: RunConfig) -> None:
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None,
                    weights_only=False)  # resuming our own last.ckpt: optimizer and loop state included
    except ValueError as exc:
        if "val_check_interval" not in str(exc):
            raise
        raise ConfigError(f"config: train.val_check_interval={cfg.train.val_check_interval}: "
                          f"{str(exc).splitlines()[0]}") from None


def load_module(cfg: RunConfig, checkpoint: Path | None) -> RetrieverModule:
    """The trained module (its own saved config decides the architecture), or the pretrained encoder."""
    from bprlab.core.encoder import load_checkpoint_weights

    cls = module_class(cfg.method)
    if checkpoint is None:
        return cls(to_dict(cfg))
    # weights_only: a checkpoint named by a user (checkpoint=<path>) cannot run code; a file that is not a
    # checkpoint, or a damaged one, is one clear error naming it
    state = load_checkpoint_weights(checkpoint)
    module = module_class(Method(state["hyper_parameters"]["config"]["method"]))(state["hyper_parameters"]["config"])
    module.load_state_dict(state["state_dict"])
    return module


def _set_aside_stale(paths: RunPaths, stamp: str, force: bool, format1: str | None = None) -> None:
    """Move checkpoints written under another training config (or all, with force) out of the way."""
    stamp_file = paths.checkpoints / FINGERPRINT_FILE
    current = stamp_file.is_file() and stamp_file.read_text() in (stamp, format1)
    stale = paths.checkpoints.is_dir() and (force or not current)
    if stale and any(paths.checkpoints.iterdir()):
        aside = paths.root / f"checkpoints.stale-{time.strftime('%Y%m%d-%H%M%S')}"
        for n in range(1, 1000):  # two set-asides within one second keep both
            if not aside.exists():
                break
            aside = aside.with_name(f"checkpoints.stale-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        log.warning("moving checkpoints of a different training config to %s", aside)
        paths.checkpoints.rename(aside)
        paths.train_summary.unlink(missing_ok=True)
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    write_text(stamp_file, stamp)


def _finish_logger(trainer: pl.Trainer, failed: bool = False) -> None:
    """The training's W&B run ended, as failed when an error stopped it (bprlab.tracking.finish_run)."""
    if any(type(logger).__name__ == "WandbLogger" for logger in trainer.loggers):
        from bprlab.tracking import finish_run

        finish_run(failed)
