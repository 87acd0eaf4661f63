"""Weights & Biases, optional and never global.

wandb is imported inside these functions only; a run is online when credentials exist, offline otherwise (upload
later with `wandb sync <run_dir>/wandb/offline-run-*`), and off with `logger=none` or `logger=csv`. Training
(Lightning's WandbLogger) and evaluation write to the same W&B run: its id is kept in the run directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Iterator

from bprlab import slurm
from bprlab.artifacts import fingerprint
from bprlab.config.enums import LoggerKind
from bprlab.config.loader import to_dict
from bprlab.config.schema import RunConfig
from bprlab.eval.metrics import LOGGED_NAMES
from bprlab.slurm import launch_rank

log = logging.getLogger(__name__)
RUN_ID_FILE = "wandb_run_id.txt"


def wandb_mode() -> str:
    """'online' with credentials (WANDB_API_KEY or a netrc entry for api.wandb.ai), else 'offline';
    an explicit WANDB_MODE always wins."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())
    return "online" if has_key else "offline"


def run_id(run_dir: Path, timeout: float = 300.0) -> str:
    """One W&B run per run directory, whatever the number of ranks: a W&B sweep agent's own id (WANDB_RUN_ID) wins;
    otherwise rank 0 draws the id once and writes it atomically (never over an existing one), and every other rank
    reads it, waiting for the file on a shared filesystem that shows it late (up to `timeout` seconds)."""
    if os.environ.get("WANDB_RUN_ID"):
        return os.environ["WANDB_RUN_ID"]
    path = Path(run_dir) / RUN_ID_FILE
    if launch_rank() != 0:
        return _wait_for(path, timeout)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(uuid.uuid4().hex[:12])  # W&B run ids are short lowercase alphanumerics
        try:
            os.link(tmp, path)  # atomic, and fails where another process has written one first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def _wait_for(path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        if time.monotonic() > deadline:
            from bprlab.errors import StageError

            raise StageError(f"{path}: rank 0 has not written the run's W&B id after {timeout:.0f} s (is rank 0 "
                             "running, and the run directory on a filesystem every node sees?)")
        time.sleep(0.5)


def init_kwargs(cfg: RunConfig, run_dir: Path) -> dict:
    """Everything wandb.init needs, shared by the training logger and the evaluation update."""
    return dict(
        project=cfg.wandb.project, entity=cfg.wandb.entity, group=cfg.wandb.group, name=cfg.name,
        id=run_id(run_dir), resume="allow", dir=str(run_dir), mode=wandb_mode(),
        # the seed as a tag and job type: W&B's grouped view (group = the run without its seed) shows mean and spread
        tags=[cfg.data.dataset.value, cfg.method.value, Path(cfg.model.name).name, f"seed-{cfg.seed}", *cfg.wandb.tags],
        job_type=f"seed-{cfg.seed}",
        # the config's hash beside it: runs of one config group on the dashboard, and train.json records the same
        config={**to_dict(cfg), "config_hash": fingerprint(to_dict(cfg))},
    )


def mark_preempted(cfg: RunConfig, run_dir: Path) -> None:
    """A sweep trial stopped by SLURM's warning (bprlab.slurm): its W&B run (the training's or the evaluation's,
    left open by `finish_run`, or reopened) is marked preempting and ends with PREEMPTED_EXIT, the two things W&B's
    sweep controller reads to hand the same run id to the next agent rather than count the trial as failed. Rank 0
    only: the other ranks log nothing. A W&B error here is logged: the trial still exits with PREEMPTED_EXIT."""
    if cfg.logger is not LoggerKind.wandb or wandb_mode() == "disabled" or launch_rank() != 0:
        return
    import wandb

    try:
        run = wandb.run if wandb.run is not None else wandb.init(**init_kwargs(cfg, run_dir),
                                                                 reinit="finish_previous")
        run.mark_preempting()
        wandb.finish(exit_code=slurm.PREEMPTED_EXIT)
    except Exception as exc:  # noqa: BLE001 - whatever W&B raises, the trial must still stop as preempted
        log.warning("%s: could not mark the W&B run preempting (%s); W&B may count the trial as failed", run_dir, exc)


def finish_run(failed: bool = False) -> None:
    """wandb.finish() of the open run: with exit code 1 when an error stops the stage (a crashed run is not shown
    as finished), left open in a sweep trial stopped by SLURM's warning (for `mark_preempted`: a run ended as
    finished is not handed to another agent), else with exit code 0. The warning waits for the call."""
    import wandb

    if failed:
        with slurm.deferred(then_stop=False):  # the error stands: the warning does not replace it
            wandb.finish(exit_code=1)
    elif not (slurm.signalled() and slurm.sweep_trial()):
        with slurm.deferred():
            wandb.finish()


def lightning_logger(cfg: RunConfig, run_dir: Path):
    from pytorch_lightning.loggers import WandbLogger

    kwargs = init_kwargs(cfg, run_dir)
    mode = kwargs.pop("mode")
    save_dir = kwargs.pop("dir")
    return WandbLogger(save_dir=save_dir, offline=mode == "offline", **kwargs)


@contextlib.contextmanager
def evaluation_run(cfg: RunConfig, run_dir: Path) -> Iterator[object | None]:
    """The run's W&B run, reopened to receive evaluation results; None when W&B is not the logger."""
    if cfg.logger is not LoggerKind.wandb or wandb_mode() == "disabled":
        yield None
        return
    import wandb

    with slurm.deferred():  # the warning stops a sweep trial once the run is logged and left open
        run = wandb.init(**init_kwargs(cfg, run_dir), reinit="finish_previous")
        try:
            yield run
        except BaseException:
            finish_run(failed=True)
            raise
        finish_run()


def log_evaluation(cfg: RunConfig, run_dir: Path, metrics: dict, files: list[Path]) -> None:
    """Evaluation metrics into the run summary (as split/name) and metrics.json etc. as an artifact."""
    with evaluation_run(cfg, run_dir) as run:
        if run is None:
            return
        search = metrics.get("search", "search")
        logged = {LOGGED_NAMES[k]: v for k, v in metrics.items() if k in LOGGED_NAMES and v is not None}
        run.summary.update({**logged, "search/setting": search})
        run.log(logged)
        if cfg.wandb.log_artifacts:
            import wandb

            artifact = wandb.Artifact(f"{cfg.name}-{search}".replace("/", "_"), type="evaluation",
                                      metadata={k: v for k, v in metrics.items() if not isinstance(v, dict)})
            for path in files:
                artifact.add_file(str(path))
            run.log_artifact(artifact)
