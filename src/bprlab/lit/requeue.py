"""Requeue that continues: SLURM's warning before the time limit handled at a step boundary.

The sbatch scripts ask SLURM for SIGUSR1 90 s before the limit (`--signal=SIGUSR1@90`) and for `--requeue`.
Lightning's own handler (SLURMEnvironment(auto_requeue=True)) saves a checkpoint inside the signal handler, wherever
each rank happens to be: a save is a collective (a barrier), so ranks signalled mid-step can pair it with the
gradients' all-reduce, and a state saved between a step's forward and its optimizer step does not resume exactly.
Here the handler only notes the signal; after each optimizer step the ranks agree whether any of them was
signalled (a max-reduce of one number), and if so, all at the same step, last.ckpt is saved (the state that
resumes bit for bit), rank 0 asks `scontrol requeue <job>`, and training stops without finishing the run: no
train.json, so the requeued job (same run folder, same W&B run id) resumes from last.ckpt at the next step.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)


def slurm_job() -> str | None:
    """The id `scontrol requeue` takes: <array job>_<task> for an array task, else the job id; None outside SLURM."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class RequeueOnSignal(pl.Callback):
    def __init__(self, checkpoint: Path, signum: int = signal.SIGUSR1):
        self.checkpoint, self.signum = Path(checkpoint), signum
        self.signalled = False  # set by the handler, read at the next step boundary
        self.requeued = False
        self._previous = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self._previous = signal.signal(self.signum, self._note)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None

    def _note(self, signum, frame) -> None:  # a signal handler: nothing but a flag (no I/O, no collective)
        self.signalled = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        flag = torch.tensor(1.0 if self.signalled else 0.0, device=pl_module.device)
        if trainer.world_size > 1:  # every rank takes the same branch at the same step
            flag = trainer.strategy.reduce(flag, reduce_op="max")
        if float(flag) == 0.0:
            return
        trainer.save_checkpoint(self.checkpoint, weights_only=False)  # all ranks call; rank 0 writes
        job = slurm_job()
        if trainer.is_global_zero and job is not None:
            try:
                result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            except FileNotFoundError:  # no SLURM client on this node
                result = subprocess.CompletedProcess([], 127, "", "scontrol not found")
            if result.returncode == 0:
                log.info("SLURM job %s requeued at step %d: it resumes from %s", job, trainer.global_step,
                         self.checkpoint)
            else:
                log.warning("scontrol requeue %s failed (%s): resubmit the job; it resumes from %s", job,
                            (result.stderr or result.stdout).strip(), self.checkpoint)
        self.requeued = True
        trainer.should_stop = True
