"""The cluster path as users run it, rehearsed on the CPU: ranks started as srun starts them (bprlab.cli.standin),
one W&B run per run folder whatever the number of ranks, one config on every rank, a requeue that continues, a dead
rank that does not hang the job, every stage on more ranks than shards, and the sbatch scripts' own commands.

The default tier keeps the W&B id tests and one 2-rank stand-in run (against Lightning's launcher); the other tests
that start processes are marked `cluster`. `make cluster-check` runs every test here, one line each."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from bprlab.cli.standin import script_steps, srun, wait
from bprlab.tracking import RUN_ID_FILE, run_id

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "experiments" / "slurm"
cluster = pytest.mark.cluster


# --- the W&B run id, chosen once ---------------------------------------------------------------------------------

def test_a_rank_other_than_zero_waits_for_the_id_rank_zero_writes(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.setenv("SLURM_PROCID", "1")
    threading.Timer(1.0, lambda: (tmp_path / RUN_ID_FILE).write_text("abc123def456")).start()
    start = time.monotonic()
    assert run_id(tmp_path) == "abc123def456" and time.monotonic() - start >= 0.9
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert run_id(tmp_path) == "abc123def456"  # rank 0 never replaces an existing id
    monkeypatch.setenv("WANDB_RUN_ID", "from-the-agent")  # a sweep trial: the agent's id, on every rank
    assert run_id(tmp_path) == "from-the-agent"


def test_the_id_is_drawn_once_when_rank_zero_processes_race(tmp_path):
    """Processes that all believe they are rank 0 (two jobs on one folder): one id, never overwritten."""
    code = f"from bprlab.tracking import run_id; print(run_id({str(tmp_path)!r}))"
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_RUN_ID", "SLURM_PROCID", "RANK", "LOCAL_RANK")}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(4)]
    ids = {p.communicate()[0].strip() for p in procs}
    assert len(ids) == 1 and ids == {(tmp_path / RUN_ID_FILE).read_text()}


# --- SLURM's allocation against the trial's devices --------------------------------------------------------------

@pytest.mark.parametrize("devices, nodes, env, message", [
    # sweep_agent.sbatch: --ntasks=1, so SLURM sets no SLURM_NTASKS_PER_NODE
    (8, 1, {"SLURM_NTASKS": "1", "SLURM_NNODES": "1", "SLURM_JOB_NAME": "sweep"},
     "train.devices=8 x train.num_nodes=1 ranks, but SLURM started 1 tasks"),
    (2, 2, {"SLURM_NTASKS": "2", "SLURM_NNODES": "1", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NAME": "train"},
     "SLURM started 2 tasks on 1 node"),
    (2, 1, {"SLURM_NTASKS": "2", "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "train"},
     "SLURM started 2 tasks on 2 node"),
    (8, 2, {"SLURM_NTASKS": "16", "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "8",
            "SLURM_TASKS_PER_NODE": "8(x2)", "SLURM_JOB_NAME": "train"}, None),
    (1, 1, {"SLURM_NTASKS": "1", "SLURM_NNODES": "1", "SLURM_JOB_NAME": "sweep"}, None),
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


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_process_group_timeout_below_a_minute_is_refused(value):
    from bprlab.config import load_config
    from bprlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train.timeout_minutes: null \(torch's default\) or >= 1"):
        load_config(None, [f"train.timeout_minutes={value}"])


def test_the_sbatch_scripts_read_as_the_batch_shell_runs_them():
    train = script_steps(SLURM / "train_1node.sbatch", "exp.yaml", ["x=1"])
    assert (train.tasks, train.nodes) == (8, 1) and [s.srun for s in train.steps] == [True]
    assert train.steps[0].argv == ["train", "exp.yaml", "train.devices=8", "train.num_nodes=1", "train.strategy=ddp",
                                   "x=1"]
    assert script_steps(SLURM / "train_2nodes.sbatch", "e", []).tasks == 16
    array = script_steps(SLURM / "encode_array.sbatch", "e", [], array=(3, 16))
    assert "encode.part=3/16" in array.steps[0].argv and not array.steps[0].srun  # one task: no srun
    assert [s.argv[0] for s in script_steps(SLURM / "index_evaluate.sbatch", "e", []).steps] == ["index", "evaluate"]
    for script in SLURM.glob("train*.sbatch"):  # the signal the requeue handler waits for, and the requeue itself
        text = script.read_text()
        assert "#SBATCH --signal=SIGUSR1@90" in text and "#SBATCH --requeue" in text
    agent = (SLURM / "sweep_agent.sbatch").read_text()  # the agent's shell gets the warning and passes it on
    assert "#SBATCH --signal=B:SIGUSR1@180" in agent and "#SBATCH --requeue" in agent
    assert "wandb agent --forward-signals --count 1" in agent


# --- processes started as srun starts them ------------------------------------------------------------------------

def _experiment(tmp_path: Path, method: str = "bpr") -> Path:
    path = tmp_path / f"{method}.yaml"
    path.write_text(f"method: {method}\n")
    return path


def _train_args(tmp_path, tiny_overrides, name, steps: int, *extra) -> list[str]:
    """Two ranks on the tiny data: 8 questions, 4 per rank, so every step is an epoch (no validation: nothing to
    select here)."""
    return ["train", str(_experiment(tmp_path)), *tiny_overrides, f"name={name}", "train.devices=2",
            "train.strategy=ddp", "train.accelerator=cpu", "train.epochs=1000", f"train.max_steps={steps}",
            "train.val_check_interval=null", "train.val_every_n_epochs=100000", *extra]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)


def _logs(tasks) -> str:
    return "\n".join(f"--- rank {t.rank}\n{t.log.read_text()[-3000:]}" for t in tasks)


def _records(offline_run: Path) -> list:
    """The protobuf Records of an offline W&B run file (run-<id>.wandb: W&B's record log, a LevelDB-style log: 7-byte
    header, 32 KiB blocks, each chunk crc32 + length + type)."""
    from wandb.proto import wandb_internal_pb2

    data = next(offline_run.glob("run-*.wandb")).read_bytes()
    position, pending, records = 7, b"", []
    while position + 7 <= len(data):
        block_left = 32768 - (position % 32768)
        if block_left < 7:  # a block's tail too short for a header is padding
            position += block_left
            continue
        length, kind = struct.unpack("<HB", data[position + 4: position + 7])
        chunk = data[position + 7: position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4) and pending:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _history_steps(offline_run: Path) -> list[int]:
    """`trainer/global_step` of every history row in an offline W&B run."""
    steps = []
    for record in _records(offline_run):
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            if "trainer/global_step" in items:
                steps.append(int(float(items["trainer/global_step"])))
    return steps


def _ending(offline_run: Path) -> tuple[bool, int | None]:
    """Whether an offline W&B session was marked preempting, and the exit code it ended with."""
    kinds = [(r.WhichOneof("record_type"), r) for r in _records(offline_run)]
    exits = [r.exit.exit_code for kind, r in kinds if kind == "exit"]
    return any(kind == "preempting" for kind, _ in kinds), exits[-1] if exits else None


def test_ranks_started_as_srun_starts_them_train_what_lightnings_launcher_trains(tiny_overrides, tmp_path):
    """Two tasks with SLURM's environment: Lightning takes its SLURM environment (world size 2 from two processes
    no launcher of ours started), one train.json with both ranks' global batch, one W&B run for the folder, and the
    weights of the same job started through Lightning's own launcher."""
    args = _train_args(tmp_path, tiny_overrides, "standin", 6, "logger=wandb")
    tasks = srun(2, args, logs=tmp_path / "logs", env={"WANDB_MODE": "offline"}, job_id=31337)
    assert wait(tasks, timeout=300) == [0, 0], _logs(tasks)
    launched = subprocess.run([sys.executable, "-m", "bprlab.cli.main",
                               *_train_args(tmp_path, tiny_overrides, "launched", 6, "logger=wandb")],
                              capture_output=True, text=True, timeout=300,
                              env={**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")},
                                   "WANDB_MODE": "offline"})
    assert launched.returncode == 0, launched.stderr[-3000:]
    runs = tmp_path / "runs"
    summary = json.loads((runs / "standin" / "train.json").read_text())
    assert (summary["world_size"], summary["global_batch_size"], summary["global_step"]) == (2, 8, 6)
    assert summary["config_hash"]  # every rank's config hashed and compared when the process group formed
    assert _same_weights(_weights(runs / "standin"), _weights(runs / "launched"))
    for name in ("standin", "launched"):  # one W&B run per folder, not one per rank, however the ranks started
        offline = sorted((runs / name / "wandb").glob("offline-run-*"))
        assert len(offline) == 1 and offline[0].name.endswith((runs / name / RUN_ID_FILE).read_text()), offline
        assert _history_steps(offline[0]) == sorted(_history_steps(offline[0]))


@cluster
def test_a_rank_started_with_another_config_stops_every_rank(tiny_overrides, tmp_path):
    """A sweep's parameters reaching rank 0 only: both ranks stop with the key that differs, nothing is trained."""
    base = _train_args(tmp_path, tiny_overrides, "mixed", 2)
    tasks = srun(2, [base, [*base, "optim.lr=0.5"]], logs=tmp_path / "logs", job_id=5151)
    assert wait(tasks, timeout=300) == [2, 2], _logs(tasks)
    assert "its config differs from rank 0's at optim.lr" in tasks[1].log.read_text()
    assert "config differs from rank 0's" in tasks[0].log.read_text()
    assert not (tmp_path / "runs" / "mixed" / "train.json").exists()


def _fake_scontrol(tmp_path: Path) -> tuple[dict, Path]:
    """A `scontrol` on PATH that records what it was asked (SLURM would requeue the job and stop its tasks)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "scontrol.log"
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {record}\n")
    (bin_dir / "scontrol").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, record


def _when(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@cluster
def test_a_requeued_job_continues_its_run_and_its_wandb_history(tiny_overrides, tiny_data, tmp_path):
    """SIGUSR1 (sbatch --signal=SIGUSR1@90) reaches both ranks mid-training: they stop together at a step
    boundary, last.ckpt is saved, `scontrol requeue <job>` is asked, no train.json; the job started again resumes
    at the next step, with the same W&B run, and ends with the weights of a job never interrupted. The 40 steps are
    one epoch (80 questions, 1 per rank and step), so the stop is part-way through it, as a requeue on a real
    dataset is: each rank must go on with its own share of that epoch's order."""
    env, requeues = _fake_scontrol(tmp_path)
    env["WANDB_MODE"] = "offline"
    one_epoch = tmp_path / "train-x10.json"
    one_epoch.write_text(json.dumps(json.loads(Path(tiny_data["train"]).read_text()) * 10))
    long = (f"data.train_file={one_epoch}", "train.batch_size=1", "train.epochs=1")
    args = _train_args(tmp_path, tiny_overrides, "requeued", 40, *long, "train.checkpoint_every_n_steps=1",
                       "logger=wandb")
    run = tmp_path / "runs" / "requeued"
    tasks = srun(2, args, logs=tmp_path / "logs", env=env, job_id=777)
    assert _when(lambda: (run / "checkpoints" / "last.ckpt").is_file(), 240), _logs(tasks)
    for task in tasks:
        task.process.send_signal(signal.SIGUSR1)
    assert wait(tasks, timeout=240) == [0, 0], _logs(tasks)
    assert requeues.read_text().split() == ["requeue", "777"]  # asked once, by rank 0, as it exited
    assert "stopped at step" in tasks[0].log.read_text()
    assert not (run / "train.json").exists()
    stopped_at = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    assert 0 < stopped_at < 40
    tasks = srun(2, args, logs=tmp_path / "logs-requeued", env={**env, "SLURM_RESTART_COUNT": "1"}, job_id=777)
    assert wait(tasks, timeout=300) == [0, 0], _logs(tasks)
    assert "resuming from" in tasks[0].log.read_text()
    summary = json.loads((run / "train.json").read_text())
    assert summary["global_step"] == 40 and summary["resumes"] == [{"step": stopped_at, "epoch": 0, "world_size": 2}]
    whole = srun(2, _train_args(tmp_path, tiny_overrides, "whole", 40, *long), logs=tmp_path / "logs-whole",
                 job_id=778)
    assert wait(whole, timeout=300) == [0, 0], _logs(whole)
    assert _same_weights(_weights(run), _weights(tmp_path / "runs" / "whole"))
    segments = sorted((run / "wandb").glob("offline-run-*"))
    run_id_text = (run / RUN_ID_FILE).read_text()
    assert len(segments) == 2 and all(s.name.endswith(run_id_text) for s in segments)  # one run, two sessions
    history = [step for segment in segments for step in _history_steps(segment)]
    assert history and history == sorted(history) and history[-1] <= 40
    assert min(_history_steps(segments[1])) > max(_history_steps(segments[0]))  # continued, not from step 0


# --- a W&B sweep trial on SLURM: preempted, handed to the next agent, resumed ---------------------------------------

def _fresh_state() -> dict:
    return {"signalled": False, "training": False, "requeued": False, "stoppable": False, "stopped": False}


@pytest.fixture
def warning_state(monkeypatch, tmp_path):
    """bprlab.slurm's per-process state, fresh, with a fake scontrol and a SLURM job around the test; SIGUSR1's
    handler in this process as it was before."""
    from bprlab import slurm

    monkeypatch.setattr(slurm, "_state", _fresh_state())
    env, record = _fake_scontrol(tmp_path)
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("SLURM_JOB_ID", "321")
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_PROCID", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    handler = signal.getsignal(signal.SIGUSR1)
    yield slurm, record
    signal.signal(signal.SIGUSR1, handler)


def test_the_warning_outside_training_requeues_a_job_but_stops_a_sweep_trial(warning_state, monkeypatch):
    """A job asks scontrol at once (its stages resume); a trial an agent started raises Requeued instead, so that the
    CLI can mark its W&B run preempting, and never requeues the agent's job itself; a second signal is not
    answered twice."""
    from bprlab.errors import Requeued

    slurm, record = warning_state
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    slurm._handler(signal.SIGUSR1, None)
    assert record.read_text().split() == ["requeue", "321"]
    record.unlink()
    monkeypatch.setattr(slurm, "_state", _fresh_state())
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep1")
    monkeypatch.setenv("WANDB_RUN_ID", "run1")
    slurm._handler(signal.SIGUSR1, None)  # before any stage (the config being read): only noted
    with pytest.raises(Requeued, match="W&B hands this sweep trial to the next agent"):
        with slurm.stoppable():  # ... and the stage stops on entry
            pytest.fail("the stage ran after the warning")
    monkeypatch.setattr(slurm, "_state", _fresh_state())
    with slurm.stoppable():
        with pytest.raises(Requeued):
            slurm._handler(signal.SIGUSR1, None)
        slurm._handler(signal.SIGUSR1, None)  # the same warning again, while the first is being answered: no raise
    assert not record.exists() and slurm.signalled()


def test_inside_a_stage_a_job_still_requeues_and_an_error_during_wandbs_call_stands(warning_state, monkeypatch):
    from bprlab.errors import Requeued

    slurm, record = warning_state
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    with slurm.stoppable():  # a plain job: scontrol at once, as outside any stage; nothing raised
        slurm._handler(signal.SIGUSR1, None)
    assert record.read_text().split() == ["requeue", "321"]
    monkeypatch.setattr(slurm, "_state", _fresh_state())
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep1")
    monkeypatch.setenv("WANDB_RUN_ID", "run1")
    with pytest.raises(ValueError, match="the stage.s own error"):
        with slurm.stoppable():
            with slurm.deferred():
                slurm._handler(signal.SIGUSR1, None)  # inside W&B's call: only noted
                raise ValueError("the stage's own error")  # ... and the stop does not replace it
    with pytest.raises(Requeued):  # the warning is still pending for the next stage of this trial
        with slurm.stoppable():
            pass


def test_during_training_the_warning_is_only_noted(warning_state, monkeypatch):
    slurm, record = warning_state
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep1")
    monkeypatch.setenv("WANDB_RUN_ID", "run1")
    slurm.training(True)
    slurm._handler(signal.SIGUSR1, None)  # the training callback stops at the next step boundary
    assert slurm.signalled() and not record.exists()


def _fake_agent(tmp_path: Path) -> tuple[Path, Path]:
    """`wandb` on PATH doing for one trial what `wandb agent [--forward-signals] --count 1 SWEEP` does, through
    wandb's own AgentProcess: WANDB_SWEEP_ID and the trial's WANDB_RUN_ID in the environment, the trial's command
    (FAKE_TRIAL, JSON) in its own process group, the agent's signals forwarded to it when asked. Returns its folder
    and its log (its arguments, then the trial's exit status)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "agent.log"
    (bin_dir / "wandb").write_text(f"""#!{sys.executable}
import json, os, sys, time
from wandb.wandb_agent import AgentProcess
with open({str(log)!r}, "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
os.environ["WANDB_SWEEP_ID"] = sys.argv[-1].rsplit("/", 1)[-1]
os.environ["WANDB_RUN_ID"] = "trialrun0001"
trial = AgentProcess(command=json.loads(os.environ["FAKE_TRIAL"]), env=dict(os.environ),
                     forward_signals="--forward-signals" in sys.argv)
while trial.poll() is None:
    time.sleep(0.1)
with open({str(log)!r}, "a") as f:
    f.write(f"trial exited {{trial.poll()}}\\n")
""")
    (bin_dir / "wandb").chmod(0o755)
    return bin_dir, log


@cluster
def test_a_preempted_sweep_trial_is_handed_back_to_wandb_and_resumed(tiny_overrides, tiny_data, tmp_path):
    """sweep_agent.sbatch as the batch shell runs it: SLURM's warning (to the shell: --signal=B:...) goes to the agent,
    which forwards it to the trial; the trial stops at a step boundary with last.ckpt saved, marks its W&B run
    preempting and ends it with a non-zero exit; the task then requeues itself. Started again (the requeued task, to
    which W&B hands the same run id), the trial resumes from last.ckpt and finishes; no requeue is asked."""
    from bprlab import slurm
    from bprlab.cli.standin import slurm_environment

    bin_dir, agent_log = _fake_agent(tmp_path)
    _, requeues = _fake_scontrol(tmp_path)
    one_epoch = tmp_path / "train-x10.json"
    one_epoch.write_text(json.dumps(json.loads(Path(tiny_data["train"]).read_text()) * 10))
    trial = [sys.executable, "-m", "bprlab.cli.main", "run", str(_experiment(tmp_path)), *tiny_overrides,
             "name=trial", f"data.train_file={one_epoch}", "train.batch_size=1", "train.epochs=1",
             "train.max_steps=40", "train.val_check_interval=null", "train.val_every_n_epochs=100000",
             "--trial", "hash.gamma=0.5"]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "WANDB_"))}
    env = {**base, **slurm_environment(0, 1, job_id=60, job_name="bprlab-sweep", array=(2, 8)),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
           "FAKE_TRIAL": json.dumps(trial)}
    script = ["bash", str(SLURM / "sweep_agent.sbatch"), "team/bprlab/sweep1"]
    run = tmp_path / "runs" / "trial-gamma0.5"
    with open(tmp_path / "task.log", "a") as out:
        task = subprocess.Popen(script, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        assert _when(lambda: (run / "checkpoints" / "last.ckpt").is_file(), 240), (tmp_path / "task.log").read_text()
        task.send_signal(signal.SIGUSR1)  # to the batch shell only, as --signal=B:SIGUSR1@180 sends it
        assert task.wait(timeout=240) == 0, (tmp_path / "task.log").read_text()
    log = agent_log.read_text().splitlines()
    assert log == ["agent --forward-signals --count 1 team/bprlab/sweep1", f"trial exited {slurm.PREEMPTED_EXIT}"]
    assert requeues.read_text().split() == ["requeue", "60_2"]  # the array task, once the agent had exited
    assert not (run / "train.json").exists()
    stopped_at = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    assert 0 < stopped_at < 40
    first = sorted((run / "wandb").glob("offline-run-*"))
    assert len(first) == 1 and first[0].name.endswith("trialrun0001")  # the agent's run id, not one of ours
    assert _ending(first[0]) == (True, slurm.PREEMPTED_EXIT)
    requeues.unlink()
    again = subprocess.run(script, env={**env, "SLURM_RESTART_COUNT": "1"}, cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and agent_log.read_text().splitlines()[-1] == "trial exited 0", again.stdout[-3000:]
    assert not requeues.exists()
    summary = json.loads((run / "train.json").read_text())
    assert summary["global_step"] == 40 and summary["resumes"] == [{"step": stopped_at, "epoch": 0, "world_size": 1}]
    assert json.loads(next(run.glob("eval/*/metrics.json")).read_text())["num_questions"] == 8
    later = [s for s in sorted((run / "wandb").glob("offline-run-*")) if s != first[0]]
    assert len(later) == 2 and all(s.name.endswith("trialrun0001") for s in later)  # training, then evaluation
    assert [_ending(s) for s in later] == [(False, 0), (False, 0)]
    assert min(_history_steps(later[0])) > max(_history_steps(first[0]))


@pytest.mark.parametrize("when", ["before the stage", "within the stage", "during W&B's calls",
                                  "before an error"])
def test_the_warning_outside_training_ends_a_sweep_trial_as_preempted(warning_state, monkeypatch, tmp_path, when):
    """bprlab's CLI in this process, as an agent starts a trial (`evaluate ... --trial`), with the stage replaced:
    the warning before the stage, inside it, or while the evaluation writes to W&B stops the trial (the stage goes
    no further than W&B's call of the moment) with exit status 138, and its one W&B session is marked preempting
    and ends with 138; no scontrol is asked. An error the stage raises after the warning stands: exit status 2,
    the W&B session ended as failed (exit code 1), not preempted."""
    from bprlab import tracking
    from bprlab.cli import main as cli
    from bprlab.cli import stages
    from bprlab.errors import StageError

    slurm, record = warning_state
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep1")
    monkeypatch.setenv("WANDB_RUN_ID", "trialrun0002")
    monkeypatch.setenv("WANDB_MODE", "offline")
    reached = []

    def stage(cfg, force=False):  # raise_signal: to this thread, so the handler runs before the next line does
        reached.append("started")
        if when == "within the stage":
            signal.raise_signal(signal.SIGUSR1)
        elif when in ("during W&B's calls", "before an error"):
            with tracking.evaluation_run(cfg, tmp_path / "runs" / cfg.name) as run:
                signal.raise_signal(signal.SIGUSR1)
                run.log({"test/top1": 50.0})
                reached.append("logged")
                if when == "before an error":
                    raise StageError("the stage's own error")
        reached.append("went on")

    monkeypatch.setattr(stages, "evaluate", stage)
    if when == "before the stage":  # the warning comes while the config is read
        import bprlab.config

        def load_config(*args, **kwargs):
            signal.raise_signal(signal.SIGUSR1)
            return original(*args, **kwargs)

        original = bprlab.config.load_config
        monkeypatch.setattr(bprlab.config, "load_config", load_config)
    argv = ["evaluate", str(_experiment(tmp_path)), f"runs_root={tmp_path / 'runs'}", "name=t", "logger=none",
            "--trial", "hash.gamma=0.5"]
    failing = when == "before an error"
    assert cli.main(argv) == (2 if failing else slurm.PREEMPTED_EXIT)
    expected = {"before the stage": [], "within the stage": ["started"],
                "during W&B's calls": ["started", "logged"], "before an error": ["started", "logged"]}[when]
    assert reached == expected and not record.exists()
    sessions = sorted((tmp_path / "runs" / "t-gamma0.5" / "wandb").glob("offline-run-*"))
    assert len(sessions) == 1 and sessions[0].name.endswith("trialrun0002")
    assert _ending(sessions[0]) == ((False, 1) if failing else (True, slurm.PREEMPTED_EXIT))


@cluster
def test_a_stuck_rank_fails_the_job_within_the_timeout_and_the_rerun_resumes(tiny_overrides, tmp_path):
    """Rank 1 stopped (SIGSTOP: it holds its connections, so the other waits in the next collective, as it would for
    a dead rank under NCCL): rank 0 exits non-zero on its own within train.timeout_minutes, last.ckpt still loads,
    and the job started again resumes from it."""
    args = _train_args(tmp_path, tiny_overrides, "stuck", 80, "train.checkpoint_every_n_steps=1",
                       "train.timeout_minutes=1")
    run = tmp_path / "runs" / "stuck"
    tasks = srun(2, args, logs=tmp_path / "logs", job_id=888)
    assert _when(lambda: (run / "checkpoints" / "last.ckpt").is_file(), 240), _logs(tasks)
    tasks[1].process.send_signal(signal.SIGSTOP)
    start = time.monotonic()
    try:
        code = wait(tasks[:1], timeout=150)[0]  # -9 only if wait had to kill it: it hung past the timeout
    finally:
        tasks[1].process.kill()
        tasks[1].process.wait()
    assert code not in (0, -9), _logs(tasks)
    assert 50 < time.monotonic() - start < 150  # the process group's timeout (1 minute), not the job's time limit
    step = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    assert 1 <= step < 80
    again = srun(2, args, logs=tmp_path / "logs-again", job_id=889)
    assert wait(again, timeout=300) == [0, 0], _logs(again)
    assert "resuming from" in again[0].log.read_text()
    assert json.loads((run / "train.json").read_text())["global_step"] == 80


@cluster
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_encode_on_more_ranks_than_shards(tiny_overrides, tmp_path, ranks):
    """An 8-passage corpus is one shard: ranks without one predict nothing and wait; the encoding is whole."""
    from bprlab.config import load_config
    from bprlab.index.build import read_encoded
    from bprlab.runs import RunPaths

    exp = _experiment(tmp_path, "dpr")
    args = ["encode", str(exp), *tiny_overrides, "name=wide", "checkpoint=pretrained", "index.kind=flat",
            f"train.devices={ranks}", "train.strategy=ddp", "train.accelerator=cpu"]
    tasks = srun(ranks, args, logs=tmp_path / "logs", job_id=4000 + ranks)
    assert wait(tasks, timeout=300) == [0] * ranks, _logs(tasks)
    values, manifest = read_encoded(RunPaths(load_config(exp, args[2:])).passages("emb"))
    assert values.shape == (8, 32) and manifest["num_passages"] == 8


def _rehearse(script: str, exp: Path, overrides: list[str], tmp_path: Path, per_node: int, array=None) -> None:
    """Run an sbatch script's commands as sbatch would: srun steps on every task (scaled to `per_node` tasks per
    node on this machine), the others once."""
    steps = script_steps(SLURM / script, str(exp), overrides, array=array)
    nodes = steps.nodes
    for step in steps.steps:
        ntasks = per_node * nodes if step.srun else 1
        argv = [*step.argv, f"train.devices={per_node if step.srun else 1}"]
        tasks = srun(ntasks, argv, logs=tmp_path / "logs" / script, nodes=nodes if step.srun else 1,
                     job_id=9000 + len(script), array=array)
        assert wait(tasks, timeout=300) == [0] * ntasks, f"{script}: {' '.join(argv)}\n{_logs(tasks)}"


@cluster
def test_the_pipeline_of_the_sbatch_scripts_runs_as_they_chain_it(tiny_overrides, tmp_path, monkeypatch):
    """train_1node -> encode_array (2 array tasks) -> encode_merge -> index_evaluate, each script's own commands
    with CPU / gloo overrides (2 tasks where the script asks for 8 GPUs), evaluation logged into the training's W&B
    run; and train_2nodes on 2 'nodes' of 1 task."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    exp = _experiment(tmp_path)
    cpu = [*tiny_overrides, "train.accelerator=cpu", "data.num_workers=0", "train.epochs=2", "train.max_steps=2",
           "train.val_check_interval=null", "encode.shard_size=4"]
    pipeline = [*cpu, "name=pipeline", "logger=wandb"]
    _rehearse("train_1node.sbatch", exp, pipeline, tmp_path, per_node=2)
    for task in range(2):
        _rehearse("encode_array.sbatch", exp, pipeline, tmp_path, per_node=1, array=(task, 2))
    _rehearse("encode_merge.sbatch", exp, pipeline, tmp_path, per_node=1)
    _rehearse("index_evaluate.sbatch", exp, pipeline, tmp_path, per_node=1)
    run = tmp_path / "runs" / "pipeline"
    assert json.loads((run / "train.json").read_text())["world_size"] == 2
    metrics = json.loads(next(run.glob("eval/*/metrics.json")).read_text())
    assert metrics["num_questions"] == 8 and 0 <= metrics["top1"] <= 100
    sessions = sorted((run / "wandb").glob("offline-run-*"))  # training (rank 0) and evaluation: one run id
    assert len(sessions) == 2 and {s.name.rsplit("-", 1)[1] for s in sessions} == {(run / RUN_ID_FILE).read_text()}
    _rehearse("train_2nodes.sbatch", exp, [*cpu, "name=two-nodes"], tmp_path, per_node=1)
    summary = json.loads((tmp_path / "runs" / "two-nodes" / "train.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 8


@cluster
def test_a_local_sweep_under_srun_runs_the_trials_it_runs_without(tiny_overrides, tmp_path):
    """The local agent started as a one-task SLURM job (the stand-in's environment) plans the same trials and gets
    the same results as started plainly: SLURM's environment changes nothing but who starts the process."""
    import yaml

    exp = _experiment(tmp_path)
    tables = {}
    for where in ("plain", "srun"):
        overrides = [o for o in tiny_overrides if not o.startswith("runs_root=")]
        sweep = tmp_path / f"{where}.yaml"
        sweep.write_text(yaml.safe_dump({
            "name": "s", "method": "grid", "metric": {"name": "test/top5", "goal": "maximize"},
            "parameters": {"hash.gamma": {"values": [0.1, 1.0]}},
            "command": ["${env}", "bprlab", "run", str(exp), *overrides, f"runs_root={tmp_path / where}",
                        "train.epochs=2", "train.max_steps=2", "--trial", "${args_no_hyphens}"]}))
        argv = ["sweep", str(sweep), "--local"]
        if where == "srun":
            tasks = srun(1, argv, logs=tmp_path / "logs", env={"WANDB_MODE": "offline"}, job_id=6060)
            assert wait(tasks, timeout=600) == [0], _logs(tasks)
        else:
            done = subprocess.run([sys.executable, "-m", "bprlab.cli.main", *argv], capture_output=True, text=True,
                                  env={**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")},
                                       "WANDB_MODE": "offline"}, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
        tables[where] = (tmp_path / where / "sweeps" / "s" / "results.md").read_text()
    assert tables["srun"] == tables["plain"] and tables["plain"].count("\n| ") >= 2
