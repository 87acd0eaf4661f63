"""A local stand-in for `srun`: N `bprlab` processes on this machine, started at once with the environment SLURM
gives each task of a job step, so that Lightning takes them for a SLURM job (SLURMEnvironment: world size from
SLURM_NTASKS, rank from SLURM_PROCID, node from SLURM_NODEID) exactly as on a cluster, where no launcher of ours
starts ranks.

It rehearses the cluster path on the CPU (gloo): the tests start ranks with it, and `make cluster-check` runs the
commands of experiments/slurm/*.sbatch through it (`script_steps` reads them as sbatch would run them). What it
cannot rehearse (NCCL, GPUs, nodes that are other machines, a shared filesystem's delays) is listed in
experiments/slurm/README.md.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Task:
    rank: int
    process: subprocess.Popen
    log: Path


def slurm_environment(rank: int, ntasks: int, job_id: int, nodes: int = 1, job_name: str = "bprlab-standin",
                      array: tuple[int, int] | None = None) -> dict[str, str]:
    """What slurmstepd exports to task `rank` of a step of `ntasks` tasks spread evenly over `nodes` nodes (all of
    them this machine: localhost), and, for an array task, its index and the array's size (the variables Lightning
    and our code read; a real step has more)."""
    per_node = ntasks // nodes
    env = {
        "SLURM_JOB_ID": str(job_id), "SLURM_JOBID": str(job_id), "SLURM_JOB_NAME": job_name,
        "SLURM_NTASKS": str(ntasks), "SLURM_NPROCS": str(ntasks),
        "SLURM_NTASKS_PER_NODE": str(per_node),  # set where sbatch was given --ntasks-per-node: a plain number
        "SLURM_TASKS_PER_NODE": str(per_node) if nodes == 1 else f"{per_node}(x{nodes})",
        "SLURM_NNODES": str(nodes), "SLURM_JOB_NUM_NODES": str(nodes), "SLURM_NODEID": str(rank // per_node),
        "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank % per_node), "SLURM_NODELIST": "localhost",
        "SLURM_JOB_NODELIST": "localhost", "SLURM_STEP_NODELIST": "localhost", "SLURM_STEP_NUM_TASKS": str(ntasks),
        "SLURM_CPUS_PER_TASK": "1",
    }
    if array is not None:
        env.update(SLURM_ARRAY_JOB_ID=str(job_id), SLURM_ARRAY_TASK_ID=str(array[0]),
                   SLURM_ARRAY_TASK_COUNT=str(array[1]), SLURM_ARRAY_TASK_MIN="0",
                   SLURM_ARRAY_TASK_MAX=str(array[1] - 1))
    return env


def srun(ntasks: int, argv: list[str] | list[list[str]], job_id: int = 4242, logs: Path | None = None,
         env: dict | None = None, cwd: Path | None = None, nodes: int = 1,
         array: tuple[int, int] | None = None) -> list[Task]:
    """Start `ntasks` copies of `python -m bprlab.cli.main ARGV` (argv without the leading `bprlab`; or one argv
    per task), one per task, with SLURM's per-task environment; returns them running. `logs` gets one file per
    rank (appended to, as sbatch's --open-mode=append does across a requeue)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "LOCAL_RANK", "WORLD_SIZE",
                                                                      "MASTER_", "NODE_RANK", "GROUP_RANK"))}
    base.update(env or {})
    base.setdefault("OMP_NUM_THREADS", "1")  # ranks share this machine's cores
    per_task = argv if argv and isinstance(argv[0], list) else [argv] * ntasks
    tasks = []
    for rank in range(ntasks):
        log = (logs or Path(cwd or ".")) / f"rank{rank}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as handle:
            process = subprocess.Popen([sys.executable, "-m", "bprlab.cli.main", *per_task[rank]], cwd=cwd,
                                       stdout=handle, stderr=subprocess.STDOUT,
                                       env={**base, **slurm_environment(rank, ntasks, job_id, nodes, array=array)})
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


@dataclass
class Step:
    """One command of an sbatch script: its arguments after `bprlab`, and whether srun starts it (on every task
    of the allocation) or the batch shell runs it once."""

    argv: list[str]
    srun: bool


@dataclass
class Script:
    path: Path
    directives: dict[str, str] = field(default_factory=dict)  # #SBATCH --key=value
    steps: list[Step] = field(default_factory=list)

    @property
    def tasks(self) -> int:
        """The tasks an `srun` step starts: --ntasks, else --ntasks-per-node x --nodes."""
        if "ntasks" in self.directives:
            return int(self.directives["ntasks"])
        return int(self.directives.get("ntasks-per-node", 1)) * int(self.directives.get("nodes", 1))

    @property
    def nodes(self) -> int:
        return int(self.directives.get("nodes", 1))


def script_steps(path: Path, experiment: str, overrides: list[str], array: tuple[int, int] | None = None) -> Script:
    """The `bprlab` commands of an sbatch script as the batch shell would run them for EXPERIMENT and OVERRIDES
    ("$EXP" and "$@"), the array task's variables substituted; lines continued with a backslash joined."""
    text = Path(path).read_text(encoding="utf-8")
    script = Script(Path(path))
    for match in re.finditer(r"^#SBATCH\s+--([\w-]+)(?:[= ](\S+))?", text, re.M):
        script.directives[match.group(1)] = match.group(2) or ""
    body = re.sub(r"\\\n\s*", " ", text)
    variables = {"EXP": experiment}
    if array is not None:
        variables.update(SLURM_ARRAY_TASK_ID=str(array[0]), SLURM_ARRAY_TASK_COUNT=str(array[1]))
    for line in body.splitlines():
        words = line.strip().split()
        if not words or words[0].startswith("#") or "bprlab" not in words[:2]:
            continue
        launched = words[0] == "srun"
        expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), line.strip())
        argv = [word for word in shlex.split(expanded)[1 + launched:] if word != "$@"]
        script.steps.append(Step([*argv, *overrides], launched))  # "$@" ends every command of the scripts
    return script
