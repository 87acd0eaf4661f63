"""Intervals, paired randomization tests and Holm's correction (bprlab.eval.stats), the aggregation of a table's
seeds and rows (bprlab.eval.aggregate), and the claims' verdicts (bprlab.eval.claims)."""

import numpy as np
import pytest

from bprlab.errors import StageError
from bprlab.eval.aggregate import aggregate_row, compare_rows
from bprlab.eval.claims import verdict
from bprlab.eval.outcomes import first_hits, outcome_vector
from bprlab.eval.stats import bootstrap_interval, holm, paired_randomization_test, seed_interval


def test_randomization_p_values_match_hand_counts():
    # 5 questions all +1: of the 2^5 sign flips, only all-plus and all-minus reach |mean| = 1 -> p = 2/32
    assert paired_randomization_test(np.ones(5), np.zeros(5)) == pytest.approx(2 / 32)
    # differences (+1, +1, +1, -1): |sum| >= 2 in 10 of the 16 flips -> p = 10/16
    assert paired_randomization_test(np.array([1, 1, 1, 0.]), np.array([0, 0, 0, 1.])) == pytest.approx(10 / 16)


def test_identical_rows_give_p_one_and_a_clear_difference_a_small_p():
    rng = np.random.default_rng(3)
    x = (rng.random(400) < 0.5).astype(float)
    assert paired_randomization_test(x, x.copy()) == 1.0
    y = np.where(rng.random(400) < 0.3, 0.0, x)  # y loses 30% of x's hits
    assert paired_randomization_test(x, y) < 1e-3
    assert paired_randomization_test(x, y) == paired_randomization_test(x, y)  # seeded: a report regenerates exactly


def test_holm_adjusts_in_step_down_order():
    # sorted p 0.01, 0.03, 0.04, 0.2 -> x4, x3, x2, x1 = 0.04, 0.09, 0.08 -> 0.09 (monotone), 0.2
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    adjusted = holm([0.5, 0.001, 0.02])
    assert adjusted == pytest.approx([0.5, 0.003, 0.04])
    assert holm([]) == []


def test_seed_interval_is_students_t():
    interval = seed_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, df=2) = 4.3027
    assert interval.mean == 2.0 and interval.half_width == pytest.approx(4.3027 / np.sqrt(3), rel=1e-4)
    single = seed_interval([90.2])
    assert single.low is None and single.half_width is None
    with pytest.raises(ValueError):
        seed_interval([])


def test_bootstrap_interval_brackets_the_mean_and_collapses_on_constant_data():
    x = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 1] * 20, dtype=float)
    interval = bootstrap_interval(x)
    assert interval.low < x.mean() < interval.high and 0.0 <= interval.low and interval.high <= 1.0
    same = bootstrap_interval(np.ones(10), np.ones(10))
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="shapes"):
        bootstrap_interval(np.ones(3), np.ones(4))


def test_outcomes_give_every_top_k_from_the_first_hit():
    hits = np.array([[0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype=bool)
    first = first_hits(hits)
    assert first.tolist() == [1, -1, 0]
    outcomes = {"first_hit": first.tolist(), "ndcg@10": [0.5, None, 1.0]}
    assert outcome_vector(outcomes, "top1").tolist() == [0, 0, 1]
    assert outcome_vector(outcomes, "top2").tolist() == [1, 0, 1]
    assert np.isnan(outcome_vector(outcomes, "ndcg@10")[1]) and outcome_vector(outcomes, "recall@100") is None


def _unit(seed, first_hit, questions="q1", corpus="c1"):
    first = np.asarray(first_hit)
    metrics = {"top1": 100.0 * float(np.mean((first >= 0) & (first < 1))),
               "top5": 100.0 * float(np.mean((first >= 0) & (first < 5))),
               "questions_sha256": questions, "corpus_sha256": corpus, "bytes_per_passage": 48}
    return {"seed": seed, "run": f"r{seed}", "metrics": metrics, "outcomes": {"first_hit": first.tolist()}}


def test_a_row_over_seeds_keeps_every_seed_and_a_t_interval():
    units = [_unit(42, [0, 0, 3, -1]), _unit(43, [0, 1, 3, -1]), _unit(44, [0, 0, 0, -1])]
    row = aggregate_row("bpr", units)
    assert row["top1"] == pytest.approx(np.mean([50.0, 25.0, 75.0]))
    assert row["intervals"]["top1"]["over"] == "seeds" and row["intervals"]["top1"]["n"] == 3
    assert row["per_seed"]["43"]["top1"] == 25.0 and row["bytes_per_passage"] == 48
    one = aggregate_row("zero-shot", units[:1])
    assert one["intervals"]["top1"]["over"] == "questions"  # one seed: the bootstrap over questions, labelled


def test_seeds_on_different_questions_or_corpora_are_not_averaged():
    with pytest.raises(StageError, match="different question sets"):
        aggregate_row("bpr", [_unit(42, [0, 1]), _unit(43, [0, 1], questions="q2")])
    with pytest.raises(StageError, match="different corpora"):
        aggregate_row("bpr", [_unit(42, [0, 1]), _unit(43, [0, 1], corpus="c2")])
    with pytest.raises(StageError, match="different questions"):
        compare_rows({"base": [_unit(42, [0, 1])], "other": [_unit(42, [0, 1], questions="q2")]}, "base")


def test_rows_are_tested_against_the_baseline_with_holm_over_the_table():
    rng = np.random.default_rng(0)
    good = [_unit(s, np.where(rng.random(300) < 0.7, 0, -1)) for s in (42, 43, 44)]
    same = [{**u, "run": "copy"} for u in good]
    worse = [_unit(s, np.where(rng.random(300) < 0.3, 0, -1)) for s in (42, 43, 44)]
    tested = compare_rows({"base": good, "same": same, "worse": worse}, "base")
    assert set(tested) == {"same", "worse"} and set(tested["worse"]) == {"top1", "top5"}  # only evaluated metrics
    assert tested["same"]["top1"]["p"] == 1.0 and tested["same"]["top1"]["effect"] == 0.0
    bad = tested["worse"]["top1"]
    assert bad["effect"] < -30 and bad["p_holm"] < 0.01 and bad["significant"]
    assert bad["ci_questions"][1] < 0 and bad["ci_seeds"][1] < 0 and bad["seed_pairs"] == 3
    assert bad["p_holm"] >= bad["p"]


@pytest.mark.parametrize("claim, comparison, expected", [
    ({"expect": "lower"}, {"p_holm": 0.001, "ci_questions": [-5, -1], "ci_seeds": [-4, -2]}, "holds"),
    ({"expect": "lower"}, {"p_holm": 0.001, "ci_questions": [1, 5], "ci_seeds": [2, 4]}, "contradicted"),
    ({"expect": "lower"}, {"p_holm": 0.2, "ci_questions": [-5, 1], "ci_seeds": [-4, 2]}, "not shown at this budget"),
    ({"expect": "lower"}, {"p_holm": 0.001, "ci_questions": [-5, -1], "ci_seeds": [-4, 2]}, "not shown at this budget"),
    ({"expect": "higher"}, {"p_holm": 0.01, "ci_questions": [1, 5]}, "holds"),
    ({"at_most": 2.5}, {"p_holm": 0.001, "ci_questions": [0.5, 2.0], "ci_seeds": [0.1, 2.4]}, "holds"),
    ({"at_most": 2.5}, {"p_holm": 0.001, "ci_questions": [3.0, 6.0], "ci_seeds": [2.6, 7.0]}, "contradicted"),
    ({"at_most": 2.5}, {"p_holm": 0.5, "ci_questions": [-1.0, 4.0]}, "not shown at this budget"),
])
def test_claim_verdicts_need_the_corrected_p_and_both_intervals(claim, comparison, expected):
    assert verdict(claim, comparison) == expected
    assert verdict(claim, None) == "not run"


def test_claims_follow_the_method_order_and_a_qrels_twin_states_each_comparison_once():
    from bprlab.eval.claims import claim_rows

    comparison = {"p_holm": 0.001, "ci_questions": [-3.0, -1.0], "effect": -2.0}
    claims = [{"claim": "a", "row": "r", "metric": "top20", "expect": "lower"},
              {"claim": "b", "row": "r", "metric": "top1", "expect": "lower"}]
    answers = {"run_name": "abl-search", "baseline": "base", "claims": claims,
               "rows": [{"method": "r", "vs_baseline": {"top20": comparison, "top1": comparison}}]}
    qrels = {"run_name": "abl-search-beir", "baseline": "base", "claims": claims,
             "rows": [{"method": "r", "vs_baseline": {"ndcg@10": comparison}}]}
    other = {**answers, "run_name": "abl-beta"}
    rows = claim_rows([other, qrels, answers], ("abl-search", "abl-beta"))
    assert [(r["table"], r["claim"], r["metric"]) for r in rows] == [
        ("abl-search", "a", "top20"), ("abl-search", "b", "top1"), ("abl-search-beir", "a", "ndcg@10"),
        ("abl-beta", "a", "top20"), ("abl-beta", "b", "top1")]
    assert all(r["verdict"] == "holds" for r in rows)
