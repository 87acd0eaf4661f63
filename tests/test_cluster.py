"""The cluster path as users run it, rehearsed on the CPU: ranks started as srun starts them (bprlab.cli.standin),
one W&B run per run folder whatever the number of ranks."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from bprlab.cli.standin import srun, wait
from bprlab.tracking import RUN_ID_FILE, run_id


def test_a_rank_other_than_zero_waits_for_the_id_rank_zero_writes(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.setenv("SLURM_PROCID", "1")
    threading.Timer(1.0, lambda: (tmp_path / RUN_ID_FILE).write_text("abc123def456")).start()
    start = time.monotonic()
    assert run_id(tmp_path) == "abc123def456" and time.monotonic() - start >= 0.9
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert run_id(tmp_path) == "abc123def456"  # rank 0 never replaces an existing id
    monkeypatch.setenv("WANDB_RUN_ID", "from-the-agent")
    assert run_id(tmp_path) == "from-the-agent"


def test_the_id_is_drawn_once_when_rank_zero_processes_race(tmp_path):
    """Two processes that both believe they are rank 0 (two jobs on one folder): one id, never overwritten."""
    import subprocess
    import sys

    code = f"from bprlab.tracking import run_id; print(run_id({str(tmp_path)!r}))"
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_RUN_ID", "SLURM_PROCID", "RANK", "LOCAL_RANK")}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(4)]
    ids = {p.communicate()[0].strip() for p in procs}
    assert len(ids) == 1 and ids == {(tmp_path / RUN_ID_FILE).read_text()}


def test_ranks_started_as_srun_starts_them_train_one_run(tiny_overrides, tmp_path):
    """Two tasks with SLURM's environment: Lightning's SLURM environment gives world size 2, one train.json with
    the global batch of both ranks, and one W&B run (offline) for the run folder."""
    args = ["train", "-", *tiny_overrides, "name=standin", "method=bpr", "train.devices=2", "train.strategy=ddp",
            "train.accelerator=cpu", "logger=wandb"]
    exp = tmp_path / "exp.yaml"
    exp.write_text("method: bpr\n")
    args[1] = str(exp)
    tasks = srun(2, args, logs=tmp_path / "logs", env={"WANDB_MODE": "offline"}, job_id=31337)
    codes = wait(tasks, timeout=300)
    assert codes == [0, 0], "\n".join(t.log.read_text()[-2000:] for t in tasks)
    run_dir = tmp_path / "runs" / "standin"
    summary = json.loads((run_dir / "train.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 8
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs  # one W&B run, not one per rank
    assert runs[0].name.endswith((run_dir / RUN_ID_FILE).read_text())


@pytest.mark.parametrize("ranks", [2, 3])
def test_encode_with_more_ranks_than_shards(tiny_overrides, tmp_path, ranks):
    """An 8-passage corpus is one shard: the ranks without one predict nothing and wait; the encoding is whole."""
    from bprlab.config import load_config
    from bprlab.index.build import read_encoded
    from bprlab.runs import RunPaths

    exp = tmp_path / "exp.yaml"
    exp.write_text("method: dpr\n")
    args = ["encode", str(exp), *tiny_overrides, "name=wide", "checkpoint=pretrained", "index.kind=flat",
            f"train.devices={ranks}", "train.strategy=ddp", "train.accelerator=cpu"]
    tasks = srun(ranks, args, logs=tmp_path / "logs", job_id=4000 + ranks)
    codes = wait(tasks, timeout=300)
    assert codes == [0] * ranks, "\n".join(t.log.read_text()[-2000:] for t in tasks)
    cfg = load_config(exp, [a for a in args[2:]])
    values, manifest = read_encoded(RunPaths(cfg).passages("emb"))
    assert values.shape == (8, 32) and manifest["num_passages"] == 8


@pytest.mark.parametrize("devices, nodes, env, message", [
    (8, 1, {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "sweep"},
     "train.devices=8 x train.num_nodes=1 ranks, but SLURM started 1 tasks"),
    (2, 2, {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NAME": "train"}, "SLURM started 2 tasks"),
    (8, 2, {"SLURM_NTASKS": "16", "SLURM_NTASKS_PER_NODE": "8(x2)", "SLURM_JOB_NAME": "train"}, None),
    (8, 1, {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "interactive"}, None),  # salloc + a launcher: not srun's tasks
    (8, 1, {}, None),
])
def test_a_trial_asking_for_other_ranks_than_slurm_started_is_one_line(devices, nodes, env, message):
    from bprlab.config import load_config
    from bprlab.errors import ConfigError
    from bprlab.lit.train import check_allocation

    cfg = load_config(None, [f"train.devices={devices}", f"train.num_nodes={nodes}"])
    if message is None:
        check_allocation(cfg, env)
    else:
        with pytest.raises(ConfigError, match=message):
            check_allocation(cfg, env)
