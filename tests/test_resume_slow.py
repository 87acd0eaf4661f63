"""Slow tier: a real `bprlab train` process killed with SIGKILL mid-run, then rerun: it resumes from last.ckpt
and beta keeps following sqrt(1 + gamma * step) of the global step, not of the steps since the restart."""

import csv
import math
import signal
import subprocess
import sys
import time

import pytest
import torch


@pytest.mark.slow
def test_sigkilled_training_resumes_with_beta_continuing(tiny_overrides, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: killed\nmethod: bpr\n")
    command = [sys.executable, "-m", "bprlab.cli.main", "train", str(exp), *tiny_overrides,
               "train.epochs=30", "hash.gamma=0.5", "logger=csv"]
    run_dir = tmp_path / "runs" / "killed"
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                if torch.load(last, map_location="cpu", weights_only=False)["global_step"] >= 6:
                    break
            except Exception:  # caught between write and rename: look again
                pass
        time.sleep(0.2)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert not (run_dir / "train.json").exists()

    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    summary = (run_dir / "train.json").read_text()
    assert "last.ckpt" in summary and '"global_step": 60' in summary
    with open(run_dir / "logs" / "metrics.csv") as handle:
        betas = [(int(r["step"]), float(r["train/beta"])) for r in csv.DictReader(handle) if r.get("train/beta")]
    after = [(s, b) for s, b in betas if s > killed_at]
    assert after, "steps after the restart were logged"
    for step, beta in after:
        assert beta == pytest.approx(math.sqrt(1 + 0.5 * step), rel=1e-5)
