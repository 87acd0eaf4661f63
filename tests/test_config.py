from pathlib import Path

import pytest
import yaml

from bprlab.config import load_config
from bprlab.config.schema import Estimator, IndexKind, Method
from bprlab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((REPO / "experiments").rglob("*.yaml"))
TABLES = sorted((REPO / "experiments" / "tables").glob("*.yaml"))


def test_schema_defaults_are_the_paper_recipe():
    cfg = load_config(None)
    assert cfg.method is Method.bpr and cfg.hash.gamma == 0.1 and cfg.hash.estimator is Estimator.scaled_tanh
    assert (cfg.optim.lr, cfg.optim.eps, cfg.optim.max_grad_norm, cfg.optim.warmup_ratio) == (2e-5, 1e-6, 2.0, 0.06)
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.data.max_passage_length) == (16, 40, 256)
    assert (cfg.loss.margin, cfg.loss.candidate_weight, cfg.loss.rerank_weight) == (0.1, 1.0, 1.0)
    assert cfg.index.num_candidates == 1000 and cfg.eval.top_k == [1, 5, 20, 50, 100]


def test_extends_chain_then_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 3\n  batch_size: 8\n")
    (tmp_path / "exp.yaml").write_text("extends: base.yaml\ntrain:\n  epochs: 5\nhash:\n  estimator: ste\n")
    cfg = load_config(tmp_path / "exp.yaml", ["train.batch_size=2", "index.kind=binary_hash"])
    assert (cfg.train.epochs, cfg.train.batch_size) == (5, 2)
    assert cfg.hash.estimator is Estimator.ste and cfg.index.kind is IndexKind.binary_hash


@pytest.mark.parametrize("text, needle", [
    ("train:\n  epochz: 3\n", "key 'train.epochz'"),
    ("train:\n  epochs: many\n", "key 'train.epochs'"),
    ("hash:\n  estimator: magic\n", "key 'hash.estimator'"),
    ("- a list\n", "expected a mapping"),
    ("extends: missing.yaml\n", "config file not found"),
])
def test_bad_files_name_the_file_and_key(tmp_path, text, needle):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value) and ("missing.yaml" in str(err.value) or str(path) in str(err.value))


def test_bad_overrides_name_the_key():
    with pytest.raises(ConfigError, match="command line: key 'loss.marginn'"):
        load_config(None, ["loss.marginn=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["loss.margin"])


def test_extends_cycle_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize("overrides, needle", [
    (["loss.candidate_weight=0", "loss.rerank_weight=0"], "nothing to train"),
    (["index.num_candidates=50"], "below max(eval.top_k)"),
    (["index.hash_bits=65"], "index.hash_bits"),
    (["model.projection_dim=100"], "multiple of 8"),
])
def test_invalid_combinations_fail_in_the_schema(overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert needle in str(err.value)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_committed_experiment_validates(path):
    if path.parent.name == "tables":
        pytest.skip("table files are checked below")
    load_config(path)


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.name)
def test_every_table_row_validates(path):
    from bprlab.cli.reproduce import read_table

    _, rows, _ = read_table(path)
    for row in rows:
        load_config(path.parent / row["experiment"], row.get("overrides", []))
