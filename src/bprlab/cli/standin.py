"""A local stand-in for `srun`: N `bprlab` processes on this machine, started at once with the environment SLURM
gives each task of a one-node job step, so that Lightning takes them for a SLURM job (SLURMEnvironment: world size
from SLURM_NTASKS, rank from SLURM_PROCID) exactly as on a cluster, where no launcher of ours starts ranks.

It rehearses the cluster path on the CPU (gloo): the tests start ranks with it, and `make cluster-check` runs the
commands of experiments/slurm/*.sbatch through it. What it cannot rehearse (NCCL, GPUs, several nodes, a shared
filesystem's delays) is listed in experiments/slurm/README.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Task:
    rank: int
    process: subprocess.Popen
    log: Path


def slurm_environment(rank: int, ntasks: int, job_id: int, job_name: str = "bprlab-standin") -> dict[str, str]:
    """What slurmstepd exports to task `rank` of a one-node step of `ntasks` tasks (the variables Lightning and our
    code read; a real step has more)."""
    return {
        "SLURM_JOB_ID": str(job_id), "SLURM_JOBID": str(job_id), "SLURM_JOB_NAME": job_name,
        "SLURM_NTASKS": str(ntasks), "SLURM_NPROCS": str(ntasks), "SLURM_NTASKS_PER_NODE": str(ntasks),
        "SLURM_TASKS_PER_NODE": str(ntasks), "SLURM_NNODES": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0",
        "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), "SLURM_NODELIST": "localhost",
        "SLURM_JOB_NODELIST": "localhost", "SLURM_STEP_NODELIST": "localhost", "SLURM_STEP_NUM_TASKS": str(ntasks),
        "SLURM_CPUS_PER_TASK": "1",
    }


def srun(ntasks: int, argv: list[str], job_id: int = 4242, logs: Path | None = None, env: dict | None = None,
         cwd: Path | None = None) -> list[Task]:
    """Start `ntasks` copies of `python -m bprlab.cli.main ARGV` (argv without the leading `bprlab`), one per task,
    with SLURM's per-task environment; returns them running. `logs` gets one file per rank."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "LOCAL_RANK", "WORLD_SIZE",
                                                                      "MASTER_", "NODE_RANK"))}
    base.update(env or {})
    base.setdefault("OMP_NUM_THREADS", "1")  # ranks share this machine's cores
    tasks = []
    for rank in range(ntasks):
        log = (logs or Path(cwd or ".")) / f"rank{rank}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(log, "w")
        process = subprocess.Popen([sys.executable, "-m", "bprlab.cli.main", *argv], cwd=cwd, stdout=handle,
                                   stderr=subprocess.STDOUT, env={**base, **slurm_environment(rank, ntasks, job_id)})
        handle.close()
        tasks.append(Task(rank, process, log))
    return tasks


def wait(tasks: list[Task], timeout: float) -> list[int]:
    """Every task's exit status; a task still running after `timeout` seconds is killed (status -9): a rank that
    hangs fails the step, as SLURM's time limit would."""
    codes = []
    for task in tasks:
        try:
            codes.append(task.process.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            task.process.kill()
            codes.append(task.process.wait())
    return codes
