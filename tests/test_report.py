import json

import pytest

from bprlab.report.results import write_results


def test_results_md_puts_paper_ours_and_delta_beside_the_command(tmp_path):
    table = tmp_path / "runs" / "main-nq"
    table.mkdir(parents=True)
    row = {"method": "bpr-linear", "top1": 40.0, "top5": 60.0, "top20": 78.0, "top100": 85.0, "bytes_per_passage": 96,
           "index_bytes": 2_000_000_000, "ms_per_query": 85.0, "scanned_fraction": 1.0, "run": "nq-bpr",
           "search": "binary_flat-l1000", "paper": {"top1": 41.1, "top20": 77.9, "top100": 85.7}}
    (table / "summary.json").write_text(json.dumps([row, {**row, "method": "bpr-hash", "paper": {}}]))
    (table / "table.json").write_text(json.dumps({"table": "main", "dataset": "nq", "note": "n",
                                                  "command": "bprlab reproduce experiments/tables/main.yaml --dataset nq"}))
    out = write_results(tmp_path / "runs", tmp_path / "experiments")
    text = out.read_text()
    assert "`bprlab reproduce experiments/tables/main.yaml --dataset nq`" in text
    assert "| bpr-linear | 41.10 | 40.0 | -1.1 | 60.0 | 77.90 | 78.0 | +0.1 | 85.70 | 85.0 | -0.7 |" in text
    assert "| bpr-hash |  | 40.0 |  | 60.0 |" in text  # blank where the paper gives no number
    plots = sorted(p.name for p in (tmp_path / "experiments" / "plots").glob("*.png"))
    assert plots == ["frontier_nq.png", "main-nq.png"]


def test_report_keeps_a_committed_results_md_when_no_table_is_found(tmp_path, capsys):
    from bprlab.cli.main import main

    (tmp_path / "experiments").mkdir()
    committed = tmp_path / "experiments" / "RESULTS.md"
    committed.write_text("# committed\n")
    code = main(["report", "--runs", str(tmp_path / "typo"), "--ablations", str(tmp_path / "none"),
                 "--out", str(tmp_path / "experiments")])
    assert code == 2 and committed.read_text() == "# committed\n"
    assert "no table summaries" in capsys.readouterr().err


def _ablation_table(folder, name, rows, claims=None, baseline="bpr", seconds=60.0, tests=None):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(rows))
    (folder / "table.json").write_text(json.dumps({"table": name, "note": f"note of {name}", "report": "ablations",
                                                   "command": f"bprlab reproduce {name}.yaml", "baseline": baseline,
                                                   "claims": claims or [], "claim_tests": tests or [],
                                                   "seconds": seconds, "units": 6}))


def test_ablations_md_opens_with_the_claims_and_counts_the_time(tmp_path):
    from bprlab.report.ablations import write_ablations

    comparison = {"baseline_value": 90.0, "value": 85.0, "effect": -5.0, "ci_questions": [-7.0, -3.0],
                  "ci_seeds": [-6.5, -3.5], "ci": [-7.5, -2.5], "p": 0.0001, "p_holm": 0.0003, "significant": True,
                  "test": "t, seeds and questions", "se": 1.2, "df": 40.0, "var_seeds": 1.0, "var_questions": 0.44,
                  "training_noise": "measured", "seed_pairs": 3, "clusters": 300, "cluster_unit": "paragraph",
                  "metric": "top20", "p_questions": {"p": 1e-5, "exact": True, "floor": 0.0}}
    interval = {"mean": 85.0, "low": 84.0, "high": 86.0, "n": 3, "over": "seeds and questions"}
    rows = [{"method": "bpr", "top20": 90.0, "seeds": [42, 43, 44], "intervals": {"top20": {**interval, "mean": 90.0}},
             "bytes_per_passage": 48, "index_bytes": 1, "run": "a", "search": "s"},
            {"method": "bpr-no-rerank", "top20": 85.0, "seeds": [42, 43, 44], "intervals": {"top20": interval},
             "vs_baseline": {"top20": comparison}, "bytes_per_passage": 48, "index_bytes": 1, "run": "a",
             "search": "t"}]
    claims = [{"claim": "reranking helps", "source": "§4", "row": "bpr-no-rerank", "metric": "top20",
               "expect": "lower", "reading": "l = 1000"}]
    _ablation_table(tmp_path / "ablations" / "abl-search", "abl-search", rows, claims, tests=[comparison])
    _ablation_table(tmp_path / "ablations" / "abl-other", "abl-other", rows[:1], seconds=120.0)
    text = write_ablations(tmp_path / "ablations", tmp_path / "experiments").read_text()
    claims_at, first_table = text.index("## The paper's claims"), text.index("## abl-")
    assert claims_at < first_table
    assert ("| reranking helps | §4 | bpr-no-rerank − bpr, top20 (abl-search) | Δ < 0 | 3 seed pairs; 300 paragraphs; "
            "read at l = 1000 | -5.0 | [-7.5, -2.5] | 0.0001 | 0.0001 | ") in text and "**holds** |" in text
    assert "correction runs over the 1 primary claims" in text
    assert "| abl-other | 6 | 0.03 | 0.00 |" in text and "| **total** | | **0.05** | **0.00** |" in text  # hours
    assert "| bpr-no-rerank | - | 48 | 1 | 85.0 ± 1.0* |" in text and "`bprlab reproduce abl-search.yaml`" in text


def test_learning_curves_come_from_the_csv_log_in_step_order(tmp_path):
    from bprlab.report.curves import plot_curves, read_curve

    logs = tmp_path / "run" / "logs"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text(
        "epoch,step,train/loss,val/avg_rank,val/top1,val/top20,val/top5\n"
        "0,9,1.5,,,,\n0,24,,17.6,34.0,75.0,52.5\n0,49,,11.3,40.5,81.0,61.5\n"
        "0,24,,17.0,35.0,76.0,53.0\n")  # a resumed run logs step 24 again: the last value counts
    curve = read_curve(tmp_path / "run")
    assert curve["step"] == [25, 50] and curve["val/avg_rank"] == [17.0, 11.3] and curve["val/top5"] == [53.0, 61.5]
    assert read_curve(tmp_path / "nothing") is None
    path = plot_curves({"dpr": curve}, "t", tmp_path / "plots" / "curves.png")
    assert path.is_file() and path.stat().st_size > 1000


def test_validation_logs_the_gold_ranks_as_top_k_in_the_pool():
    import torch

    from bprlab.core.scoring import average_rank, gold_ranks

    question = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    passage = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.9]])
    gold = torch.tensor([0, 2, 0])
    ranks = gold_ranks(question, passage, gold)  # q0: nothing above; q1: passage 1 (1.0 > 0.9); q2: 2 above
    assert ranks.tolist() == [0, 1, 1]
    assert average_rank(question, passage, gold).item() == ranks.float().mean().item()


def test_what_changed_lists_the_verdicts_that_moved_and_what_differs(tmp_path):
    from bprlab.report.study_diff import PREVIOUS, VERDICTS, changes_markdown

    base = {"table": "abl-loss", "exercised": True, "ci": [-1.0, 2.0], "p_holm": 0.5, "row_value": 90.0,
            "baseline_value": 91.0, "effect": -1.0}
    previous = {"study": "the first study", "commit": "abc1234", "readings": [
        {**base, "claim": "kept", "row": "r", "baseline": "b", "metric": "top20", "verdict": "not shown"},
        {**base, "claim": "moved metric", "row": "r", "baseline": "b", "metric": "top20", "verdict": "not shown",
         "exercised": False},
        {**base, "claim": "retrained", "row": "r", "baseline": "b", "metric": "top20", "verdict": "holds"},
        {**base, "claim": "dropped", "row": "r", "baseline": "b", "metric": "top20", "verdict": "holds"}]}

    def reading(claim, metric, verdict, baseline="b", value=90.0, exercised=None):
        test = {"effect": -3.0, "ci": [-5.0, -1.0], "value": value, "baseline_value": 91.0}
        extra = {} if exercised is None else {"exercised": exercised}
        return {"claim": claim, "table": "abl-loss", "row": "r", "baseline": baseline, "metric": metric,
                "primary": True, "test": test, "verdict": verdict, "p_holm": 0.01, **extra}

    now = [reading("kept", "top20", "not shown"), {**reading("moved metric", "hamming@20", "holds"), "reading": "l = 20"},
           reading("retrained", "top20", "not shown", value=88.0), reading("new", "top20", "holds", baseline="g25"),
           {**reading("secondary", "top20", "holds"), "primary": False}]
    text = changes_markdown(previous, now)
    assert "against the first study, commit abc1234" in text and "| kept |" not in text
    assert ("| moved metric | r − b, top20 -1.0 [-1.0, +2.0]: **not shown** | r − b, hamming@20 -3.0 [-5.0, -1.0]: "
            "**holds** | read on hamming@20 (was top20); mechanism now exercised: read at l = 20 |") in text
    assert "| retrained |" in text and "the same reading on retrained models (row 90.0 → 88.0)" in text
    assert "| dropped | r − b, top20 -1.0 [-1.0, +2.0]: **holds** | not in the study | no longer read |" in text
    assert "| new | not in the study | r − g25, top20 -3.0 [-5.0, -1.0]: **holds** | a claim this study adds |" in text
    assert "secondary" not in text
    assert changes_markdown({"readings": []}, []).endswith("No verdict moved.")
    # the report writes its own verdicts, reads a previous study's, and refuses a damaged one
    from bprlab.errors import StageError
    from bprlab.report.study_diff import read_previous, write_verdicts

    assert read_previous(tmp_path) is None
    written = json.loads(write_verdicts(tmp_path, now).read_text())["readings"]
    assert [r["claim"] for r in written] == ["kept", "moved metric", "retrained", "new"] and (tmp_path / VERDICTS).is_file()
    (tmp_path / PREVIOUS).write_text(json.dumps({"readings": [{"claim": "x"}]}))
    with pytest.raises(StageError, match="previous_study.json: expected"):
        read_previous(tmp_path)


@pytest.mark.parametrize("name, text, message", [
    ("summary.json", "{}", "summary.json: not a table summary"), ("summary.json", "[]", "summary.json: not a table summary"),
    ("summary.json", '[{"top1": 3}]', "summary.json: not a table summary"),
    ("summary.json", "{trunc", "summary.json: damaged"), ("table.json", "[]", "table.json: not a table's record"),
    ("table.json", '{"claims": 3}', "table.json: not a table's record"),
])
def test_a_damaged_summary_is_one_error_naming_it_and_the_command_that_rebuilds_it(tmp_path, capsys, name, text,
                                                                                  message):
    from bprlab.cli.main import main

    rows = [{"method": "bpr", "top20": 90.0}]
    _ablation_table(tmp_path / "ablations" / "abl-x", "abl-x", rows)
    (tmp_path / "ablations" / "abl-x" / name).write_text(text)
    out = tmp_path / "experiments"
    assert main(["report", "--runs", str(tmp_path / "none"), "--ablations", str(tmp_path / "ablations"),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "--records-only" in err and "bprlab train" not in err and "Traceback" not in err
    assert not (out / "ABLATIONS.md").exists()


def test_report_checks_its_output_before_reading_anything(tmp_path, capsys):
    from bprlab.cli.main import main

    taken = tmp_path / "taken"
    taken.write_text("x")
    assert main(["report", "--runs", str(tmp_path), "--ablations", str(tmp_path), "--out", str(taken)]) == 2
    assert "--out" in capsys.readouterr().err and taken.read_text() == "x"


def _curve_row(method, top, ranks):
    return {"method": method, "seeds": [42], "top1": top[0], "top5": top[1], "top20": top[2],
            "curve": {"step": [25, 75, 300], "val/avg_rank": ranks}}


def test_where_a_curve_flattens_is_read_by_the_declared_rule_and_a_steady_fall_is_not_flat():
    from bprlab.report.curve_note import flattening

    steps = list(range(25, 325, 25))
    settling = [20, 16, 14, 13, 12.5, 10, 10.2, 9.8, 10.1, 9.9, 10.0, 10.1]
    # end level mean(9.9, 10.0, 10.1) = 10.0; second differences of the second half 0.7, -0.5, 0.3, 0.0: median 0.4,
    # noise 0.4 / (0.6745 sqrt 6) = 0.24, band ±0.73: 12.5 at step 125 is out, 10 at step 150 and after are in
    line = flattening({"method": "m", "curve": {"step": steps, "val/avg_rank": settling}}, 75)
    assert "settles at 10.0" in line and "flat from step 150, after the budget" in line and "±0.7" in line
    assert "at 75 steps (14.0) 60% of its fall from step 25 (20.0)" in line
    assert "at or before the budget" in flattening({"method": "m", "curve": {"step": steps, "val/avg_rank": settling}},
                                                   150)
    level = [10.0, 10.2, *settling[7:], 10.0, 10.2, 9.8, 10.1, 10.0]  # no fall beyond the noise: no share of it
    assert "% of its fall" not in flattening({"method": "m", "curve": {"step": steps, "val/avg_rank": level}}, 75)
    falling = [30 - 2 * i for i in range(12)]  # neighbouring changes of 2 are trend, not noise
    assert "not yet flat" in flattening({"method": "m", "curve": {"step": steps, "val/avg_rank": falling}}, 75)
    assert flattening({"method": "m", "curve": {"step": steps[:5], "val/avg_rank": settling[:5]}}, 75) is None


def test_the_curve_note_reads_each_row_against_its_budget_model_and_the_declared_gap():
    from bprlab.report.curve_note import curve_note

    table = {"budget": {"step": 75, "rows": {"dpr-300": "abl-a/dpr", "bpr-300": "abl-b/bpr", "bpr-128-300": "abl-c/b128"},
                        "gap": ["dpr-300", "bpr-300"]},
             "rows": [_curve_row("dpr-300", (60.0, 85.0, 95.0), [17.0, 9.5, 8.0]),
                      _curve_row("bpr-300", (50.0, 77.0, 91.0), [20.0, 15.0, 13.0]),
                      _curve_row("bpr-128-300", (30.0, 55.0, 75.0), [40.0, 30.0, 20.0])]}
    budget_model = {"top1": 55.0, "top5": 80.0, "top20": 93.0}
    tables = [{"run_name": "abl-a", "rows": [{"method": "dpr", "per_seed": {"42": budget_model}}]},
              {"run_name": "abl-b", "rows": [{"method": "bpr", "per_seed": {"42": {"top1": 48.0, "top5": 77.5,
                                                                                      "top20": 90.0}}}]},
              {"run_name": "abl-c", "rows": [{"method": "b128", "per_seed": {"43": budget_model}}]}]
    note = curve_note(table, tables)
    assert "- dpr-300 (seed 42) against abl-a/dpr at 75 steps: test top-1 / 5 / 20 +5.0 / +5.0 / +2.0 points." in note
    assert "- bpr-128-300: abl-c/b128 has no seed 42; no comparison." in note
    # the declared pair, not whichever rows came first: 93 - 90 = +3.0 at the budget, 95 - 91 = +4.0 after
    assert "top-20 gap dpr-300 − bpr-300: +3.0 at 75 steps, +4.0 after the longer run: the budget understates" in note
    table["budget"]["gap"] = ["bpr-300", "dpr-300"]
    assert ("top-20 gap bpr-300 − dpr-300: -3.0 at 75 steps, -4.0 after the longer run: the budget understates the "
            "lead of dpr-300") in curve_note(table, tables)
