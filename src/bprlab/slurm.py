"""SLURM's warning before the time limit, and the requeue that answers it.

The train scripts ask for `--signal=SIGUSR1@90 --requeue`. Requeueing a running job (`scontrol requeue`) ends it at
once (SIGTERM, then SIGKILL), so it is asked last, once the state to resume from is on disk:
- during training, the handler only notes the signal; the ranks agree at the next optimizer step, save last.ckpt
  and stop (bprlab.lit.requeue), and the CLI asks for the requeue as it exits (`requeue`);
- at any other moment (the stages after training, or before it starts) every stage resumes from what it has
  written, so the handler asks for the requeue at once.
Rank 0 asks; the others only note it. Without SLURM nothing is installed.

A W&B sweep trial (started by `wandb agent`, which sets WANDB_SWEEP_ID and the trial's WANDB_RUN_ID) is not requeued
with scontrol: the agent and its batch script own the job (experiments/slurm/sweep_agent.sbatch). It stops as above,
raising `Requeued` outside training too, and the CLI marks its W&B run preempting and exits with PREEMPTED_EXIT: W&B
hands the same run to the next agent, whose trial resumes from what this one wrote.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess

from bprlab.errors import Requeued

log = logging.getLogger(__name__)

_state = {"signalled": False, "training": False, "requeued": False}
PREEMPTED_EXIT = 128 + signal.SIGUSR1  # a sweep trial stopped by the warning: non-zero, as a signal's death reads


def job_id() -> str | None:
    """The id `scontrol requeue` takes: <array job>_<task> for an array task, else the job id; None outside SLURM."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def launch_rank() -> int:
    """This process's global rank as the launcher sets it (Lightning's launcher, srun, torchrun), before any process
    group exists."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def install() -> None:
    """Under a SLURM job: SIGUSR1 noted (and answered as the module docstring says) instead of its default action,
    which would end the process without a requeue."""
    if job_id() is not None:
        signal.signal(signal.SIGUSR1, _handler)


def sweep_trial() -> bool:
    """A W&B sweep agent started this process: W&B, not scontrol, requeues it."""
    return bool(os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"))


def _handler(signum, frame) -> None:
    first = not _state["signalled"]  # one answer: a second signal must not interrupt the first one's
    _state["signalled"] = True
    if not _state["training"] and first:  # outside training every stage resumes from what it has written
        answer_warning("stopped by SLURM's warning before the time limit")


def answer_warning(message: str) -> None:
    """The warning came outside a training step: requeue this job now, or, in a sweep trial, stop it (`Requeued`;
    the CLI then marks its W&B run preempting)."""
    if sweep_trial():
        raise Requeued(f"{message}; W&B hands this sweep trial to the next agent, which resumes it")
    requeue()


def signalled() -> bool:
    return _state["signalled"]


def training(active: bool) -> None:
    """Training is running (the requeue waits for its next step boundary) or not."""
    _state["training"] = active


def requeue() -> None:
    """`scontrol requeue <job>` from rank 0, once per process; SLURM then ends this job and runs it again."""
    job = job_id()
    if _state["requeued"] or job is None or launch_rank() != 0:
        return
    _state["requeued"] = True
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    except FileNotFoundError:  # no SLURM client on this node
        result = subprocess.CompletedProcess([], 127, "", "scontrol not found")
    if result.returncode == 0:
        log.info("SLURM job %s requeued: it runs again and resumes", job)
    else:
        log.warning("scontrol requeue %s failed (%s): resubmit the job; it resumes where it stopped", job,
                    (result.stderr or result.stdout).strip())
