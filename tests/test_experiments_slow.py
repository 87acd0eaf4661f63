"""Slow tier: every committed experiment runs end to end for one training step on the tiny model and data
(the spirit of Lightning's fast_dev_run, but with checkpoints, so encode/index/evaluate run too)."""

from pathlib import Path

import pytest

from bprlab.cli import stages
from bprlab.config import load_config

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p for p in (REPO / "experiments").rglob("*.yaml")
                     if "tables" not in p.relative_to(REPO / "experiments").parts and p.name != "base.yaml")
# 8 passages: quantisers small enough to train on them, candidates and buckets to match; each experiment gets the
# ones its index kind reads (a key the kind ignores is a config error)
TINY_INDEX = {"num_candidates": 8, "hash_bits": 4, "pq_bits": 2, "code_bits": 8}


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(REPO / "experiments")))
def test_experiment_runs_one_step(path, tiny_overrides):
    from bprlab.config.index_kinds import reads

    common = [*tiny_overrides, "train.max_steps=1", "train.val_check_interval=1", "train.strategy=auto",
              "data.num_workers=0", "encode.batch_size=8"]
    used = reads(load_config(path, common).index)
    cfg = load_config(path, [*common, *(f"index.{k}={v}" for k, v in TINY_INDEX.items() if k in used)])
    metrics = stages.run(cfg)
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 100
    assert metrics["bytes_per_passage"] > 0 and metrics["num_questions"] == 8
