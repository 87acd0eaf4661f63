"""`bprlab sweep <sweep.yaml> [--count N]`: a W&B sweep with credentials, the local agent without.

Online: the sweep is created on W&B and an agent starts here; the command that adds agents on other nodes is
printed (a SLURM array example is in the README). Offline: trials are planned from the same YAML (bprlab.sweeps),
each runs as `bprlab run ... --trial` in a subprocess, logs an offline W&B run (upload later with `wandb sync`),
and lands in runs/sweeps/<sweep>/results.jsonl. A finished trial is never run again, so after a kill the same
command carries on; the interrupted trial resumes its training from last.ckpt.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bprlab.artifacts import read_json
from bprlab.config import load_config
from bprlab.errors import ConfigError, StageError
from bprlab.runs import RunPaths
from bprlab.sweeps import ResultsTable, Sweep, read_sweep, trial_args, trial_identity, trial_name, trials, write_plan
from bprlab.tracking import wandb_mode

log = logging.getLogger("bprlab")
KEPT_METRICS = ("top1", "top5", "top20", "top50", "top100", "bytes_per_passage", "index_bytes", "ms_per_query",
                "scanned_fraction", "code_bits", "num_questions")


def check_parameter_keys(sweep: Sweep) -> None:
    """Every swept key exists in the config schema and accepts the sweep's values (fails before any run)."""
    for key, spec in sweep.parameters.items():
        values = spec.get("values") or [spec.get("value", spec.get("min"))]
        for value in values:
            try:
                load_config(sweep.experiment, [*sweep.base_args, *trial_args({key: value})])
            except ConfigError as exc:
                raise ConfigError(f"{sweep.path}: parameters.{key}: {exc}") from None


def sweep(path: str, count: int | None, seed: int = 0, local: bool = False, create_only: bool = False) -> None:
    if count is not None and count < 1:
        raise ConfigError(f"--count {count}: at least 1 trial (leave it out to run a whole grid)")
    spec = read_sweep(path)
    check_parameter_keys(spec)
    if not local and wandb_mode() == "online":
        run_on_wandb(spec, count, create_only)
    elif create_only:
        raise StageError("--create-only needs W&B credentials (WANDB_API_KEY or `wandb login`)")
    else:
        run_locally(spec, count, seed)


def run_on_wandb(spec: Sweep, count: int | None, create_only: bool = False) -> None:
    import wandb

    base = load_config(spec.experiment, spec.base_args)
    sweep_id = wandb.sweep(sweep=spec.raw, project=base.wandb.project, entity=base.wandb.entity)
    target = "/".join(p for p in (base.wandb.entity, base.wandb.project, sweep_id) if p)
    print(f"\nW&B sweep {target} created. Add agents on other nodes with:\n  wandb agent {target}\n"
          f"(SLURM: `sbatch --array=0-7 experiments/slurm/sweep_agent.sbatch {target}`, one trial per task)\n")
    if create_only:
        return
    executable = shutil.which("wandb") or "wandb"
    subprocess.run([executable, "agent", *(["--count", str(count)] if count else []), target], check=True)


def run_locally(spec: Sweep, count: int | None, seed: int) -> ResultsTable:
    plan = trials(spec, count, seed)
    base = load_config(spec.experiment, spec.base_args)
    folder = Path(base.runs_root) / "sweeps" / spec.name
    write_plan(folder, spec, plan)
    table = ResultsTable(folder, spec.metric["name"])
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    for number, params in enumerate(plan, start=1):
        overrides = [*spec.base_args, *trial_args(params)]
        cfg = load_config(spec.experiment, [*overrides, *trial_overrides(spec.name)])
        cfg.name = trial_name(cfg.name, trial_args(params))
        identity = trial_identity(spec, params)
        if table.finished(cfg.name, identity):
            log.info("trial %d/%d %s: finished earlier, skipped", number, len(plan), cfg.name)
            continue
        log.info("trial %d/%d %s: %s", number, len(plan), cfg.name, " ".join(trial_args(params)))
        command = [sys.executable, "-m", "bprlab.cli.main", "run", str(spec.experiment), *spec.base_args,
                   *trial_overrides(spec.name), "--trial", *trial_args(params)]
        if subprocess.run(command, env=env).returncode != 0:
            raise StageError(f"{spec.path}: trial {number} ({cfg.name}) failed; rerun the same command to resume")
        paths = RunPaths(cfg)
        metrics = read_json(paths.eval / "metrics.json")
        table.add({"run": cfg.name, "trial": number, "params": params, "identity": identity,
                   "metrics": {k: metrics.get(k) for k in KEPT_METRICS},
                   "wandb": sorted(str(p) for p in (paths.root / "wandb").glob("offline-run-*"))})
    print(f"\n{table.markdown()}\nresults: {table.path}")
    return table


def trial_overrides(sweep_name: str) -> list[str]:
    return ["logger=wandb", f"wandb.group={sweep_name}"]
