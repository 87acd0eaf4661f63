"""Table files with seeds and a baseline, `bprlab reproduce` over (row, seed) units (recorded, resumed, redone
when an input changes), and the documents `bprlab report` writes from them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bprlab.errors import ConfigError, StageError
from bprlab.tables import read_table

REPO = Path(__file__).resolve().parents[1]


def _table(tmp_path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


ROWS = f"""rows:
  - method: bpr
    experiment: {REPO}/experiments/squad/bpr.yaml
  - method: no-rerank
    experiment: {REPO}/experiments/squad/bpr.yaml
    overrides: [index.rerank=false]
  - method: zero-shot
    experiment: {REPO}/experiments/squad/zero_shot.yaml
"""


def test_seeds_baseline_and_extends(tmp_path):
    from bprlab.cli.reproduce import plan_units

    _table(tmp_path, "seeds: 3\nreport: ablations\noverrides: [train.max_steps=7, runs_root=r]\n", "_base.yaml")
    path = _table(tmp_path, f"extends: _base.yaml\nbaseline: bpr\noverrides: [train.max_steps=9]\n{ROWS}")
    table = read_table(path)
    assert (table.seeds, table.baseline, table.report) == (3, "bpr", "ablations")
    assert table.overrides == ["train.max_steps=7", "runs_root=r", "train.max_steps=9"]  # the table's own last
    units = plan_units(table, [])
    assert [(u.row.method, u.seed) for u in units] == [("bpr", 42), ("bpr", 43), ("bpr", 44), ("no-rerank", 42),
                                                         ("no-rerank", 43), ("no-rerank", 44), ("zero-shot", 42)]
    assert {u.cfg.train.max_steps for u in units} == {9} and units[4].cfg.name == "squad-bpr-seed43"
    assert [u.seed for u in plan_units(table, [], seeds=1)] == [42, 42, 42]  # --seeds wins; untrained rows run once
    listed = read_table(_table(tmp_path, f"seeds: [7, 1]\n{ROWS}", "l.yaml"))
    assert [u.seed for u in plan_units(listed, [])][:2] == [7, 1]
    assert plan_units(listed, [])[0].cfg.name == "squad-bpr-seed7"  # not the configured seed (42): a run of its own


def test_a_twin_on_an_evaluation_folder_names_the_files_its_trained_rows_train_on(tmp_path):
    """A trained row evaluated on a BEIR folder is trained on its experiment's squad files: its config names them,
    so the unit's stamp follows their content (a run retrained on other data never leaves the twin's record
    looking current), and its run trains on them where it is missing."""
    from bprlab.cli.reproduce import plan_units
    from bprlab.stamps import training_files

    squad = tmp_path / "data" / "squad"
    squad.mkdir(parents=True)
    train, dev = squad / "biencoder-squad-train.json", squad / "biencoder-squad-dev.json"
    train.write_text("[]")
    dev.write_text("[]")
    table = read_table(_table(tmp_path, ROWS))
    twin = [f"data.root={tmp_path / 'data'}", "data.dataset=beir", f"data.path={tmp_path / 'beir'}"]
    units = {u.row.method: u for u in plan_units(table, twin)}
    assert (units["bpr"].cfg.data.train_file, units["bpr"].cfg.data.dev_file) == (str(train), str(dev))
    assert units["zero-shot"].cfg.data.train_file is None  # trains nothing: no training data to name
    before = training_files(units["bpr"].cfg)
    assert set(before) == {"train", "dev"}
    train.write_text('[{"question": "other"}]')
    assert training_files(units["bpr"].cfg)["train"] != before["train"]


def test_a_row_runs_its_own_seeds(tmp_path):
    """The seeds a claim's power analysis asks for, on its rows only; --seeds still wins over every row."""
    from bprlab.cli.reproduce import in_seed_order, plan_units

    rows = ROWS.replace("    overrides: [index.rerank=false]\n", "    overrides: [index.rerank=false]\n    seeds: 5\n")
    rows = rows.replace("experiments/squad/bpr.yaml\n  - method: no-rerank",
                        "experiments/squad/bpr.yaml\n    seeds: [42, 50]\n  - method: no-rerank")
    table = read_table(_table(tmp_path, f"seeds: 3\n{rows}"))
    planned = [(u.row.method, u.seed) for u in plan_units(table, [])]
    assert planned == [("bpr", 42), ("bpr", 50), *[("no-rerank", s) for s in range(42, 47)], ("zero-shot", 42)]
    assert {u.cfg.name for u in plan_units(table, []) if u.seed == 50} == {"squad-bpr-seed50"}
    assert [u.seed for u in plan_units(table, [], seeds=2)] == [42, 43, 42, 43, 42]
    ordered = [(u.row.method, u.seed) for u in in_seed_order(plan_units(table, []))]  # a stopped table is balanced
    assert ordered[:5] == [("bpr", 42), ("no-rerank", 42), ("zero-shot", 42), ("bpr", 50), ("no-rerank", 43)]
    with pytest.raises(ConfigError, match=r"rows\[1\].seeds: expected a number of seeds >= 1"):
        read_table(_table(tmp_path, f"seeds: 3\n{rows.replace('seeds: 5', 'seeds: 0')}", "bad.yaml"))


@pytest.mark.parametrize("text, message", [
    ("baseline: nope\n", "baseline: 'nope' is not a row"),
    ("seeds: 0\n", "seeds: expected a number of seeds >= 1"),
    ("seeds: -2\n", "seeds: expected a number of seeds >= 1"),
    ("seeds: [1, 2, 1]\n", "seeds: 1 listed more than once"),
    ("seeds: [1, x]\n", "seeds: expected a number of seeds or a non-empty list"),
    ("seed: 3\n", "unknown key"),
    ("report: other\n", "report: expected one of"),
    ("extends: missing.yaml\n", "missing.yaml: table file not found"),
    ("overrides: train.max_steps=3\n", "overrides: expected a list"),
    ("baseline: bpr\nreport: ablations\nclaims: [{claim: c, row: ghost, metric: top20, expect: lower}]\n",
     "claims\\[0\\]: row 'ghost'"),
    ("baseline: bpr\nreport: ablations\nclaims: [{claim: c, row: no-rerank, metric: top20, expect: maybe}]\n",
     "claims\\[0\\]: give either expect"),
    ("baseline: bpr\nreport: ablations\nclaims: [{claim: c, row: no-rerank, expect: lower}]\n",
     "claims\\[0\\]: a claim names its primary metric"),
    ("baseline: bpr\nreport: ablations\nclaims: [{claim: c, row: no-rerank, metric: top20, "
     "margin: {top20: {miss_ratio: 1.1}, recall@100: {points: 2}}}]\n", "margin for 'recall@100', which the claim"),
    ("baseline: bpr\nreport: ablations\nclaims: [{claim: c, row: no-rerank, metric: top20, "
     "margin: {ndcg@10: {points: 2}}}]\n", "starting with its primary metric 'top20'"),
    ("baseline: bpr\nreport: ablations\nclaims: [{claim: c, row: no-rerank, metric: top20, at_most: 2.5}]\n",
     "now states `margin"),
    ("baseline: bpr\nreport: ablations\nclaims: [{claim: c, row: no-rerank, metric: top20, expect: lower, "
     "paper_effect: 1.4}]\n", "needs the training noise measured"),
    ("baseline: bpr\nreport: ablations\nclaims: [{claim: c, row: no-rerank, baseline: ghost, metric: top20, "
     "expect: lower}]\n", "claims\\[0\\]: baseline 'ghost' is not a row"),
    ("baseline: bpr\nreport: ablations\nclaims: [{claim: c, row: no-rerank, baseline: no-rerank, metric: top20, "
     "expect: lower}]\n", "row 'no-rerank' is not a row of this table other than its baseline"),
    ("budget: {step: 75, rows: {bpr: t/bpr, no-rerank: t/nr}, gap: [bpr, ghost]}\n",
     "budget: gap: expected two of the rows named in budget.rows"),
    ("budget: {step: 75, rows: {bpr: t/bpr}, gaps: [bpr, bpr]}\n", "budget: unknown key\\(s\\) gaps"),
])
def test_bad_table_files_are_one_clear_error(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        read_table(_table(tmp_path, text + ROWS))


def test_a_repeated_row_name_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="method bpr appears more than once"):
        read_table(_table(tmp_path, ROWS + f"  - method: bpr\n    experiment: {REPO}/experiments/squad/bpr.yaml\n"))


@pytest.mark.parametrize("seeds", ["0", "-1", "two"])
def test_bad_seed_counts_stop_before_anything_runs(tmp_path, seeds):
    path = _table(tmp_path, ROWS)
    result = subprocess.run([sys.executable, "-m", "bprlab.cli.main", "reproduce", str(path), "--seeds", seeds,
                             f"runs_root={tmp_path / 'runs'}"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--seeds: expected a whole number >= 1" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_reproduce_records_units_resumes_and_redoes_what_changed(tiny_overrides, tiny_data, tmp_path, monkeypatch):
    from bprlab.cli import reproduce as rep
    from bprlab.cli import stages

    path = _table(tmp_path, f"baseline: bpr\n{ROWS}")
    overrides = [*tiny_overrides, "train.max_steps=-1", "train.val_check_interval=null", "train.epochs=1"]
    out = tmp_path / "table"
    rows = rep.reproduce(str(path), overrides, seeds=2, out=str(out))
    assert [r["method"] for r in rows] == ["bpr", "no-rerank", "zero-shot"] and rows[0]["seeds"] == [42, 43]
    records = sorted(p.relative_to(out).as_posix() for p in (out / "units").rglob("*.json"))
    assert records == ["units/bpr/seed42.json", "units/bpr/seed43.json", "units/no-rerank/seed42.json",
                       "units/no-rerank/seed43.json", "units/zero-shot/seed42.json"]
    unit = json.loads((out / "units" / "bpr" / "seed43.json").read_text())
    assert unit["run"] == "squad-bpr-seed43" and len(unit["outcomes"]["first_hit"]) == 8
    assert unit["training"] == {"global_step": 2, "world_size": 1, "resumes": []}  # how its model was trained
    assert json.loads((out / "units" / "zero-shot" / "seed42.json").read_text())["training"] is None
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary[0]["per_seed"]) == {"42", "43"}
    assert summary[0]["intervals"]["top1"]["over"] == "seeds and questions"
    assert summary[2]["intervals"]["top1"]["over"] == "questions only" and summary[0]["cluster_unit"] == "question"
    assert set(summary[1]["vs_baseline"]) == {"top1", "top5"} and "p_holm" in summary[1]["vs_baseline"]["top1"]
    text = (out / "summary.md").read_text()
    assert "Against `bpr`" in text and " ± " in text and "the question sample only" in text

    assert len(unit["outcomes"]["hamming_first"]) == 8 and "hamming@10" not in unit["metrics"]  # 8 passages < 10
    assert "hamming_first" not in json.loads((out / "units" / "zero-shot" / "seed42.json").read_text())["outcomes"]

    ran = []
    real_run = stages.run
    monkeypatch.setattr(stages, "run", lambda cfg, **kw: ran.append(cfg.name) or real_run(cfg, **kw))
    assert rep.reproduce(str(path), overrides, seeds=2, out=str(out)) == rows  # every unit recorded: nothing runs
    assert ran == []
    # a binary row's record made before the candidate stage was measured: --records-only takes it as it is, a
    # plain run evaluates it again
    old = out / "units" / "bpr" / "seed42.json"
    record = json.loads(old.read_text())
    del record["outcomes"]["hamming_first"]
    old.write_text(json.dumps(record))
    rep.reproduce(str(path), overrides, seeds=2, out=str(out), records_only=True)
    assert ran == []
    rep.reproduce(str(path), overrides, seeds=2, out=str(out))
    assert ran == ["squad-bpr"] and "hamming_first" in json.loads(old.read_text())["outcomes"]
    ran.clear()
    (out / "units" / "zero-shot" / "seed42.json").unlink()
    with pytest.raises(StageError, match="not recorded; --records-only runs nothing"):
        rep.reproduce(str(path), overrides, seeds=2, out=str(out), records_only=True)
    assert ran == []
    with open(tiny_data["test"], "a") as handle:  # an input changes: every unit that reads it runs again
        handle.write("Where is the Louvre?\t['Paris']\n")
    rep.reproduce(str(path), overrides, seeds=2, out=str(out))
    assert sorted(ran) == ["squad-bpr", "squad-bpr", "squad-bpr-seed43", "squad-bpr-seed43", "squad-zero-shot"]


def test_rows_run_alone_and_the_summary_waits_for_the_rest(tiny_overrides, tmp_path, capsys):
    from bprlab.cli import reproduce as rep

    path = _table(tmp_path, f"baseline: bpr\n{ROWS}")
    overrides = [*tiny_overrides, "train.max_steps=-1", "train.val_check_interval=null", "train.epochs=1"]
    out = tmp_path / "table"
    with pytest.raises(ConfigError, match="--rows: ghost not a row"):
        rep.reproduce(str(path), overrides, out=str(out), rows=["ghost"])
    assert rep.reproduce(str(path), overrides, out=str(out), rows=["zero-shot"]) == []
    assert "the summary waits for 2 unit(s) of other rows: bpr seed 42, no-rerank seed 42" in capsys.readouterr().out
    assert [p.parent.name for p in (out / "units").rglob("*.json")] == ["zero-shot"]
    assert not (out / "summary.json").exists()
    rows = rep.reproduce(str(path), overrides, out=str(out), rows=["bpr", "no-rerank"])
    assert [r["method"] for r in rows] == ["bpr", "no-rerank", "zero-shot"] and (out / "summary.json").is_file()


def test_a_damaged_unit_record_runs_again_and_a_file_as_out_stops_first(tiny_overrides, tmp_path, monkeypatch):
    from bprlab.cli import reproduce as rep
    from bprlab.cli import stages

    zero_shot = f"rows:\n  - method: zero-shot\n    experiment: {REPO}/experiments/squad/zero_shot.yaml\n"
    path = _table(tmp_path, zero_shot)
    taken = tmp_path / "taken"
    taken.write_text("x")
    ran = []
    real_run = stages.run
    monkeypatch.setattr(stages, "run", lambda cfg, **kw: ran.append(cfg.name) or real_run(cfg, **kw))
    with pytest.raises(ConfigError, match="--out .*taken: a file, not a folder"):
        rep.reproduce(str(path), tiny_overrides, out=str(taken))
    assert ran == [] and taken.read_text() == "x"
    out = tmp_path / "table"
    first = rep.reproduce(str(path), tiny_overrides, out=str(out))
    record = out / "units" / "zero-shot" / "seed42.json"
    for damage in ("[]", "{trunc", '{"fingerprint": "x"}'):
        record.write_text(damage)
        with pytest.raises(StageError, match="damaged or unfinished; --records-only runs nothing"):
            rep.reproduce(str(path), tiny_overrides, out=str(out), records_only=True)
        ran.clear()
        again = rep.reproduce(str(path), tiny_overrides, out=str(out))  # unfinished: it runs again
        assert [(r["method"], r["top1"]) for r in again] == [(r["method"], r["top1"]) for r in first]
        assert ran == ["squad-zero-shot"] and json.loads(record.read_text())["method"] == "zero-shot"


def test_a_units_fingerprint_holds_what_moves_its_numbers_only(tiny_overrides):
    from bprlab.config import load_config
    from bprlab.stamps import unit_stamp

    def stamp(*extra):
        return unit_stamp(load_config(None, [*tiny_overrides, *extra]))

    flat = stamp("index.kind=flat")
    assert stamp("index.kind=flat", "index.threads=1", "index.search_batch_size=7", "eval.question_batch_size=3",
                 "logger=wandb", "wandb.group=g") == flat
    assert stamp("index.kind=binary_flat", "index.backend=faiss", "index.device=cpu") == \
        stamp("index.kind=binary_flat")  # the implementation that searches moves no number
    binary = stamp("index.kind=binary_flat")
    assert binary != flat and stamp("index.kind=binary_flat", "index.num_candidates=4", "eval.top_k=[1,2]") != binary
    assert stamp("index.kind=flat", "seed=7") != flat and stamp("index.kind=flat", "optim.lr=0.1") != flat


def test_a_unit_recorded_under_stamp_format1_is_current_and_upgraded(tiny_overrides, tmp_path, monkeypatch):
    """A committed record of format 1 (no "format", the format-1 stamp) is the unit's record: nothing runs; its
    stamp is upgraded in place, numbers untouched."""
    from bprlab.cli import reproduce as rep
    from bprlab.cli import stages
    from bprlab.stamps import FORMAT, evaluation_files, training_files
    from bprlab.stamps import format1_unit_stamp as format1

    path = _table(tmp_path, f"rows:\n  - method: zero-shot\n    experiment: {REPO}/experiments/squad/zero_shot.yaml\n")
    out = tmp_path / "table"
    first = rep.reproduce(str(path), tiny_overrides, out=str(out))
    record_path = out / "units" / "zero-shot" / "seed42.json"
    record = json.loads(record_path.read_text())
    assert record["format"] == FORMAT
    cfg = rep.plan_units(read_table(path), tiny_overrides)[0].cfg
    old = {k: v for k, v in record.items() if k != "format"}
    old["fingerprint"] = format1(cfg, evaluation_files(cfg), training_files(cfg))
    record_path.write_text(json.dumps(old))
    monkeypatch.setattr(stages, "run", lambda cfg, **kw: pytest.fail("ran again"))
    assert rep.reproduce(str(path), tiny_overrides, out=str(out)) == first
    assert json.loads(record_path.read_text()) == record  # the same record, stamped as this format stamps it
    old["fingerprint"] = "0123456789abcdef"  # a format-1 record of other inputs is not current
    record_path.write_text(json.dumps(old))
    with pytest.raises(StageError, match="made from other inputs"):
        rep.reproduce(str(path), tiny_overrides, out=str(out), records_only=True)
