"""SLURM's warning before the time limit, and the requeue that answers it.

The train scripts ask for `--signal=SIGUSR1@90 --requeue`. Requeueing a running job (`scontrol requeue`) ends it at
once (SIGTERM, then SIGKILL), so it is asked last, once the state to resume from is on disk:
- during training, the handler only notes the signal; the ranks agree at the next optimizer step, save last.ckpt
  and stop (bprlab.lit.requeue), and the CLI asks for the requeue as it exits (`requeue`);
- at any other moment (the stages after training, or before it starts) every stage resumes from what it has
  written, so the handler asks for the requeue at once.
Rank 0 asks; the others only note it. Without SLURM nothing is installed.

A W&B sweep trial (started by `wandb agent`, which sets WANDB_SWEEP_ID and the trial's WANDB_RUN_ID) is not requeued
with scontrol: the agent and its batch script own the job (experiments/slurm/sweep_agent.sbatch). It stops instead:
during training as above; outside it, `Requeued` is raised at once inside the CLI's stage (`stoppable`), on entering
the stage when the warning came before it, and after W&B's own calls return when it came during one (`deferred`).
The CLI then marks its W&B run preempting and exits with PREEMPTED_EXIT: W&B hands the same run to the next agent,
whose trial resumes from what this one wrote.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess

from bprlab.errors import Requeued

log = logging.getLogger(__name__)

# signalled: the warning came; training: a training step is running (the callback stops at its end); requeued:
# scontrol asked; stoppable: a sweep trial's stage may be stopped here by raising; stopped: Requeued raised
_state = {"signalled": False, "training": False, "requeued": False, "stoppable": False, "stopped": False}
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
    _state["signalled"] = True
    if _state["training"]:
        return
    if not sweep_trial():
        requeue()  # every stage resumes from what it has written
    elif _state["stoppable"]:
        stop_if_warned()


def stopping(message: str) -> Requeued:
    """The `Requeued` that ends this process's work for the warning: raise it; no other is raised after it."""
    _state["stopped"] = True
    return Requeued(message)


def stop_if_warned(message: str = "stopped by SLURM's warning before the time limit") -> None:
    """In a sweep trial warned outside a training step, raise `Requeued` (once: the CLI then marks the W&B run
    preempting). Nothing otherwise."""
    if _state["signalled"] and sweep_trial() and not _state["training"] and not _state["stopped"]:
        raise stopping(f"{message}; W&B hands this sweep trial to the next agent, which resumes it")


def answer_warning(message: str) -> None:
    """The warning came outside a training step: requeue this job now, or stop this sweep trial."""
    if sweep_trial():
        stop_if_warned(message)
    else:
        requeue()


@contextlib.contextmanager
def stoppable():
    """A stage of a sweep trial, where the warning stops it at once (the stages resume from what they have written;
    every write is atomic), or on entry when it came earlier (while the config was read, say)."""
    _state["stoppable"] = True
    try:
        stop_if_warned()
        yield
    finally:
        _state["stoppable"] = False


@contextlib.contextmanager
def deferred(then_stop: bool = True):
    """W&B's own calls, which an exception raised part-way through could leave half done: the warning is noted
    there, and the trial stops once they have returned (`then_stop`; not when the body raised: its error stands)."""
    was = _state["stoppable"]
    _state["stoppable"] = False
    try:
        yield
    finally:
        _state["stoppable"] = was
    if was and then_stop:
        stop_if_warned()


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
