"""Slow tier: `bprlab train` and `bprlab encode` as real commands in 2 DDP processes (gloo, CPU), and an encode
killed with SIGKILL and rerun."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bprlab.bench.corpus import write_corpus

DDP = ["train.accelerator=cpu", "train.devices=2", "train.strategy=ddp"]
ONE = ["train.accelerator=cpu", "train.devices=1", "train.strategy=auto"]


def bprlab(command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`bprlab <command> exp.yaml <args>` in a fresh process (exp.yaml: an empty experiment in cwd)."""
    (cwd / "exp.yaml").write_text("{}\n")
    return subprocess.run([sys.executable, "-m", "bprlab.cli.main", command, str(cwd / "exp.yaml"), *args],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def check(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def data_overrides(files: dict) -> list[str]:
    return ["data.dataset=custom", f"data.train_file={files['train']}", f"data.dev_file={files['dev']}",
            f"data.test_file={files['test']}", f"data.passages_file={files['passages']}"]


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "data", 400, num_questions=40, seed=1, words=30)


@pytest.mark.slow
def test_two_process_training_and_encoding(tiny_bert, corpus, tmp_path):
    base = [f"model.name={tiny_bert}", *data_overrides(corpus), f"runs_root={tmp_path / 'runs'}", "logger=csv",
            "train.batch_size=4", "train.select_from_epoch=0", "data.val_hard_negatives=1",
            "data.val_other_negatives=0", "data.max_question_length=32", "data.max_passage_length=48",
            "encode.batch_size=16", "encode.shard_size=64", "index.num_candidates=50", "eval.top_k=[1,5,20]"]
    # lr 0: the weights stay the pretrained ones, so one process and two must see the same validation average rank
    frozen = [*base, "optim.lr=0.0", "train.max_steps=2", "train.val_check_interval=2"]
    two = json.loads(check(bprlab("train", *frozen, "name=ddp-val", *DDP, cwd=tmp_path)) and
                     (tmp_path / "runs" / "ddp-val" / "train.json").read_text())
    one = json.loads(check(bprlab("train", *frozen, "name=one-val", *ONE, cwd=tmp_path)) and
                     (tmp_path / "runs" / "one-val" / "train.json").read_text())
    assert two["world_size"] == 2 and two["global_batch_size"] == 8 and one["global_batch_size"] == 4
    assert two["best_val_avg_rank"] == pytest.approx(one["best_val_avg_rank"], abs=1e-6)
    # rank 0 alone wrote the run's files: one train.json, one metrics file, checkpoints once
    run = tmp_path / "runs" / "ddp-val"
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.suffix == ".ckpt")[-1] == "last.ckpt"
    assert len(list(run.rglob("metrics.csv"))) == 1
    # resume: a 2-process run killed (the whole process group) after a few steps continues from last.ckpt
    trained = [*base, "train.val_check_interval=2", "name=ddp-train", "train.max_steps=8",
               "train.checkpoint_every_n_steps=1", *DDP]
    (tmp_path / "exp.yaml").write_text("{}\n")
    proc = subprocess.Popen([sys.executable, "-m", "bprlab.cli.main", "train", str(tmp_path / "exp.yaml"), *trained],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                            start_new_session=True)
    last = tmp_path / "runs" / "ddp-train" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not _step_at_least(last, 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _step_at_least(last, 2), "training ended before it could be killed"
    summary = json.loads(check(bprlab("train", *trained, cwd=tmp_path)) and
                         (tmp_path / "runs" / "ddp-train" / "train.json").read_text())
    assert summary["global_step"] == 8 and summary["resumed_from"].endswith("last.ckpt")
    # 2-rank encoding equals 1-rank encoding of the same weights, row for row
    for name, devices in (("enc2", DDP), ("enc1", ONE)):
        check(bprlab("encode", *base, f"name={name}", "checkpoint=pretrained", *devices, cwd=tmp_path))
    from bprlab.index.build import read_encoded

    two_codes, _ = read_encoded(tmp_path / "runs" / "enc2" / "passages" / "pretrained-code")
    one_codes, _ = read_encoded(tmp_path / "runs" / "enc1" / "passages" / "pretrained-code")
    assert np.array_equal(two_codes, one_codes) and len(one_codes) == 400


@pytest.mark.slow
def test_encode_killed_with_sigkill_reruns_only_missing_shards(tiny_bert, tmp_path):
    files = write_corpus(tmp_path / "data", 6000, num_questions=10, seed=2, words=60)
    args = [f"model.name={tiny_bert}", *data_overrides(files), f"runs_root={tmp_path / 'runs'}",
            "checkpoint=pretrained", "encode.batch_size=16", "encode.shard_size=500", "data.max_passage_length=128",
            "data.max_question_length=64",
            *ONE]
    staging = tmp_path / "runs" / "killed" / "passages" / "pretrained-code.partial"
    (tmp_path / "exp.yaml").write_text("{}\n")
    proc = subprocess.Popen([sys.executable, "-m", "bprlab.cli.main", "encode", str(tmp_path / "exp.yaml"), *args,
                             "name=killed"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(staging.glob("shard-*.npz"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in staging.glob("shard-*.npz"))
    assert 2 <= len(done_before) < 12, "the encode finished before it could be killed: make the corpus larger"
    rerun = check(bprlab("encode", *args, "name=killed", cwd=tmp_path))
    assert f"{len(done_before)} shards done" in rerun.stderr
    check(bprlab("encode", *args, "name=fresh", cwd=tmp_path))
    from bprlab.index.build import read_encoded

    resumed, _ = read_encoded(tmp_path / "runs" / "killed" / "passages" / "pretrained-code")
    fresh, _ = read_encoded(tmp_path / "runs" / "fresh" / "passages" / "pretrained-code")
    assert np.array_equal(resumed, fresh) and len(fresh) == 6000


def _step_at_least(checkpoint: Path, step: int) -> bool:
    try:
        import torch

        return torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"] >= step
    except Exception:  # not written yet, or being replaced
        return False
