"""SLURM's warning before the time limit, during training: stop at a step boundary that resumes exactly.

Lightning's own handler (SLURMEnvironment(auto_requeue=True)) saves a checkpoint inside the signal handler, wherever
each rank happens to be: a save is a collective (a barrier), so ranks signalled mid-step can pair it with the
gradients' all-reduce, and a state saved between a step's forward and its optimizer step does not resume exactly.
Here the handler (bprlab.slurm) only notes the signal; after each optimizer step the ranks agree whether any of them
was signalled (a max-reduce of one number), and if so, all at the same step, last.ckpt is saved (the state that
resumes bit for bit) and every rank raises `Requeued` at the same point: training ends there (no validation, no
other checkpoint written after it, no train.json), and the CLI asks SLURM to requeue the job as it exits (a W&B
sweep trial is handed back to W&B instead: bprlab.slurm). The requeued job (same run folder, same W&B run id)
resumes from last.ckpt at the next step.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch

from bprlab import slurm


class RequeueOnSignal(pl.Callback):
    def __init__(self, checkpoint: Path):
        self.checkpoint = Path(checkpoint)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            slurm.install()
            slurm.training(True)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            slurm.training(False)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        slurm.training(False)  # Lightning calls no teardown when fit raises (as it does for a requeue)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        accumulating = getattr(trainer.fit_loop.epoch_loop, "_should_accumulate", None)
        if accumulating is not None and accumulating():  # mid-accumulation: the gradients so far are in no checkpoint
            return
        flag = torch.tensor(1.0 if slurm.signalled() else 0.0, device=trainer.strategy.root_device)
        if trainer.world_size > 1:  # every rank takes the same branch at the same step
            flag = trainer.strategy.reduce(flag, reduce_op="max")
        if float(flag) == 0.0:
            return
        trainer.save_checkpoint(self.checkpoint, weights_only=False)  # all ranks call; rank 0 writes
        raise slurm.stopping(f"{self.checkpoint.parent.parent}: stopped at step {trainer.global_step} for a requeue "
                             f"(SLURM's warning before the time limit); the job resumes from {self.checkpoint}")
