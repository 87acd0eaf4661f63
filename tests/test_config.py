from pathlib import Path

import pytest

from bprlab.config import load_config
from bprlab.config.enums import Estimator, IndexKind, Method
from bprlab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p for p in (REPO / "experiments").rglob("*.yaml")
                     if "tables" not in p.relative_to(REPO / "experiments").parts)
# table files; `_*.yaml` hold settings other tables extend, not rows
TABLES = sorted(p for p in (REPO / "experiments" / "tables").rglob("*.yaml") if not p.name.startswith("_"))


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


def test_each_folder_key_is_refused_away_from_a_folder():
    """FOLDER_KEYS (what reproduce drops to find a twin's training data) are the keys only a folder reads."""
    from bprlab.config.schema import FOLDER_KEYS

    values = {"path": "data/squad-beir", "split": "dev", "ignore_identical_ids": "false"}
    assert set(FOLDER_KEYS) == set(values)
    for key, value in values.items():
        with pytest.raises(ConfigError, match=f"data.{key}"):
            load_config(None, ["data.dataset=squad", f"data.{key}={value}"])


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_committed_experiment_validates(path):
    load_config(path)


@pytest.mark.parametrize("dataset", ["squad", "nq", "trivia"])
@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.name)
def test_every_table_row_validates(path, dataset):
    from bprlab.cli.reproduce import plan_units
    from bprlab.tables import read_table

    table = read_table(path, dataset)
    names = {}
    for unit in plan_units(table, []):
        names.setdefault(unit.cfg.name, set()).add(unit.row.method)
    if table.dataset:
        assert all(cfg_name.startswith(dataset) for cfg_name in names)  # rows of one dataset only


def test_search_only_ablations_share_the_trained_model():
    """Rows that change only the search reuse the bpr run; training ablations get their own run."""
    from bprlab.stamps import train_stamp

    for dataset in ("squad", "nq", "trivia"):
        base = load_config(REPO / "experiments" / dataset / "bpr.yaml")
        for name in ("no_rerank", "no_candidates", "candidates_100", "gamma_0.1", "margin_0.1"):
            cfg = load_config(REPO / "experiments" / dataset / "ablations" / f"{name}.yaml")
            assert cfg.name == base.name and train_stamp(cfg) == train_stamp(base)
        for name in ("ste", "no_rerank_loss", "code_64", "margin_2"):
            cfg = load_config(REPO / "experiments" / dataset / "ablations" / f"{name}.yaml")
            assert cfg.name != base.name and train_stamp(cfg) != train_stamp(base)


def test_a_rows_seeds_share_a_wandb_group_and_carry_their_seed(tmp_path):
    from bprlab.cli.reproduce import plan_units
    from bprlab.tables import read_table
    from bprlab.tracking import init_kwargs

    table = read_table(REPO / "experiments" / "tables" / "search.yaml", "squad")
    units = plan_units(table, [f"runs_root={tmp_path}"], seeds=2)
    assert [(u.row.method, u.seed, u.cfg.name) for u in units[:2]] == [
        ("bpr-linear", 42, "squad-bpr"), ("bpr-linear", 43, "squad-bpr-seed43")]
    assert {u.cfg.wandb.group for u in units} == {"squad-bpr"}  # the row's model without its seed
    kwargs = init_kwargs(units[1].cfg, tmp_path)
    assert "seed-43" in kwargs["tags"] and kwargs["job_type"] == "seed-43" and "table-search" in kwargs["tags"]
    mine = plan_units(table, [f"runs_root={tmp_path}", "wandb.group=mine"], seeds=2)
    assert {u.cfg.wandb.group for u in mine} == {"mine"}  # an explicit group still wins


@pytest.mark.parametrize("override, key", [
    ("train.epochs=0", "train.epochs"), ("train.epochs=-1", "train.epochs"), ("train.max_steps=-2", "train.max_steps"),
    ("optim.lr=-1", "optim"), ("train.devices=0", "train.devices"), ("encode.batch_size=0", "encode.batch_size"),
    ("eval.question_batch_size=0", "eval.question_batch_size"), ("index.search_batch_size=0", "index.search_batch_size"),
    ("data.num_workers=-1", "data.num_workers"), ("eval.max_questions=-1", "eval.max_questions"),
    ("train.precision=foo", "train.precision"), ("train.accelerator=gpux", "train.accelerator"),
    ("index.threads=0", "index.threads"), ("encode.part=3/2", "encode.part"),
    ("index.hnsw_m=0", "index.hnsw_m"), ("index.hnsw_ef_search=0", "index.hnsw_ef_search"),
    ("index.pq_subquantizers=0", "index.pq_subquantizers"), ("index.pq_bits=0", "index.pq_bits"),
    ("index.train_size=0", "index.train_size"),
    ("data.max_question_length=0", "data.max_question_length"), ("data.max_passage_length=2", "data.max_passage_length"),
    ("hash.gamma=-1", "hash.gamma"), ("optim.lr=nan", "optim.lr=nan: must be a finite number"),
    ("optim.warmup_ratio=inf", "optim.warmup_ratio=inf"), ("loss.margin=-inf", "loss.margin=-inf"),
])
def test_out_of_range_values_fail_before_anything_loads(override, key):
    from bprlab.config import load_config
    from bprlab.errors import ConfigError

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_a_key_given_twice_in_a_yaml_file_is_named(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  batch_size: 8\n  epochs: 2\n  batch_size: 16\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: not valid YAML: .*'batch_size' appears twice .*line 4"):
        load_config(path, [])


def test_every_key_names_the_stage_that_reads_it_and_says_what_it_does():
    from dataclasses import fields, is_dataclass

    from bprlab.config.keys import keys
    from bprlab.config.schema import STAGES, RunConfig

    listed = list(keys())
    assert {k.stage for k in listed} <= set(STAGES) and all(len(k.help) > 10 for k in listed)

    def leaves(node, prefix=""):
        for f in fields(node):
            default = f.default_factory() if callable(f.default_factory) else f.default
            yield from leaves(default, f"{prefix}{f.name}.") if is_dataclass(default) else [f"{prefix}{f.name}"]

    assert [k.name for k in listed] == list(leaves(RunConfig()))  # every leaf, once, in schema order


def test_the_config_command_offers_every_stage_a_key_can_name():
    # the parser lists the stages itself (importing the schema would load omegaconf for --help): they must agree
    from bprlab.cli.parser import build_parser
    from bprlab.config.schema import STAGES

    config = build_parser()._subparsers._group_actions[0].choices["config"]
    stage = next(a for a in config._actions if a.dest == "stage")
    assert tuple(stage.choices) == STAGES


def test_config_command_prints_each_key_with_its_stage_and_explains_one(capsys):
    from bprlab.cli.main import main

    assert main(["config", str(REPO / "experiments/squad/bpr.yaml"), "index.num_candidates=100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("index.num_candidates "))
    assert row.split()[1:3] == ["100", "search"] and "Hamming candidates" in row
    assert any(line.split()[:3] == ["data.squad.seed", "13", "prepare"] for line in lines)
    assert main(["config", "--stage", "train", "method=dpr"]) == 0
    out = capsys.readouterr().out
    assert "method  " in out and "dpr" in out and "index." not in out
    assert main(["config", "--explain", "hash.gamma"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["hash.gamma: float, default 0.1",
                                                        "stage: train (decides the trained weights)"]
    assert main(["config", "--explain", "gamma"]) == 2
    assert "no key 'gamma'; did you mean hash.gamma?" in capsys.readouterr().err
