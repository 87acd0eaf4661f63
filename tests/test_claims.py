"""The aggregation of a table's seeds and rows (bprlab.report.aggregate) and the claims' tests and verdicts
(bprlab.report.claims): what is averaged, what is paired, Holm over the declared family of primary claims."""

import numpy as np
import pytest

from bprlab.errors import StageError
from bprlab.report.aggregate import aggregate_row, compare_rows
from bprlab.report.claims import verdict


def _unit(seed, first_hit, questions="q1", corpus="c1"):
    first = np.asarray(first_hit)
    metrics = {"top1": 100.0 * float(np.mean((first >= 0) & (first < 1))),
               "top5": 100.0 * float(np.mean((first >= 0) & (first < 5))),
               "questions_sha256": questions, "corpus_sha256": corpus, "bytes_per_passage": 48}
    return {"seed": seed, "run": f"r{seed}", "metrics": metrics, "outcomes": {"first_hit": first.tolist()}}


def test_a_row_over_seeds_keeps_every_seed_and_an_interval_over_seeds_and_questions():
    units = [_unit(42, [0, 0, 3, -1]), _unit(43, [0, 1, 3, -1]), _unit(44, [0, 0, 0, -1])]
    row = aggregate_row("bpr", units, 3)
    assert row["top1"] == pytest.approx(np.mean([50.0, 25.0, 75.0]))
    assert row["intervals"]["top1"]["over"] == "seeds and questions" and row["intervals"]["top1"]["n"] == 3
    assert row["per_seed"]["43"]["top1"] == 25.0 and row["bytes_per_passage"] == 48 and row["trained"]
    one = aggregate_row("zero-shot", units[:1], 3)
    assert one["intervals"]["top1"]["over"] == "questions only" and one["trained"] is False


def test_seeds_on_different_questions_or_corpora_are_not_averaged():
    with pytest.raises(StageError, match="different question sets"):
        aggregate_row("bpr", [_unit(42, [0, 1]), _unit(43, [0, 1], questions="q2")])
    with pytest.raises(StageError, match="different corpora"):
        aggregate_row("bpr", [_unit(42, [0, 1]), _unit(43, [0, 1], corpus="c2")])
    with pytest.raises(StageError, match="different questions"):
        compare_rows({"base": [_unit(42, [0, 1])], "other": [_unit(42, [0, 1], questions="q2")]}, "base")


def test_rows_are_tested_against_the_baseline_with_training_noise_in_the_test():
    rng = np.random.default_rng(0)
    good = [_unit(s, np.where(rng.random(300) < 0.7, 0, -1)) for s in (42, 43, 44)]
    same = [{**u, "run": "copy"} for u in good]
    worse = [_unit(s, np.where(rng.random(300) < 0.3, 0, -1)) for s in (42, 43, 44)]
    tested = compare_rows({"base": good, "same": same, "worse": worse}, "base", 3)
    assert set(tested) == {"same", "worse"} and set(tested["worse"]) == {"top1", "top5"}  # only evaluated metrics
    assert tested["same"]["top1"]["p"] == 1.0 and tested["same"]["top1"]["effect"] == 0.0
    bad = tested["worse"]["top1"]
    assert bad["effect"] < -30 and bad["p_holm"] < 0.05 and bad["significant"] and bad["test"].startswith("t,")
    assert bad["ci"][1] < 0 and bad["ci_questions"][1] < 0 and bad["ci_seeds"][1] < 0 and bad["seed_pairs"] == 3
    assert bad["p_holm"] >= bad["p"] and bad["p_questions"]["exact"]


def test_the_p_value_that_counts_training_noise_is_not_fooled_by_three_fixed_models():
    # the baseline's three seeds agree; the row's seeds move +5, -1, +5 points (20, -4, 20 of 400 questions): a
    # test over questions sees 3 fixed models differ (the issue that motivated it: p = 0.0002 against 0.11 from a
    # t over seeds); the test with training noise in its null does not call it
    base = np.full(400, -1)
    base[:200] = 0
    row = {42: base.copy(), 43: base.copy(), 44: base.copy()}
    row[42][200:220] = 0
    row[43][:4] = -1
    row[44][220:240] = 0
    units = [_unit(s, base) for s in (42, 43, 44)]
    result = compare_rows({"base": units, "row": [_unit(s, row[s]) for s in (42, 43, 44)]}, "base", 3)["row"]["top1"]
    assert result["p_questions"]["p"] < 0.001 and result["p"] > 0.05 and result["training_noise"] == "measured"
    assert result["p_seeds"] > 0.05 and result["ci"][0] < 0 < result["ci"][1]


def test_an_untrained_row_pairs_with_every_seed_of_a_trained_one():
    trained = [_unit(s, [0, 0, -1, 1]) for s in (42, 43, 44)]
    untrained = [_unit(42, [0, -1, -1, 1])]
    result = compare_rows({"zero-shot": untrained, "bpr": trained}, "zero-shot", 3)["bpr"]["top1"]
    assert result["seed_pairs"] == 3 and result["training_noise"] == "measured"
    both_untrained = compare_rows({"zero-shot": untrained, "bm25": [_unit(42, [0, 0, -1, 1])]}, "zero-shot", 3)
    assert both_untrained["bm25"]["top1"]["training_noise"] == "none"
    one_seed = compare_rows({"zero-shot": untrained, "bpr": trained[:1]}, "zero-shot", 1)
    assert one_seed["bpr"]["top1"]["training_noise"] == "one seed"
    assert one_seed["bpr"]["top1"]["test"].startswith("sign flips")


def _test(effect, low, high, p=0.001, noise="measured", **extra):
    se = (high - low) / 2 / 1.96
    return {"effect": effect, "se": se, "df": float("inf"), "var_seeds": se ** 2 / 2, "var_questions": se ** 2 / 2,
            "var_interaction": 0.0, "seed_pairs": 3, "clusters": 300, "cluster_unit": "paragraph", "p": p,
            "training_noise": noise, "metric": "top20", "ci": [low, high], **extra}


@pytest.mark.parametrize("claim, test, p_adjusted, expected", [
    ({"expect": "lower"}, _test(-3, -5, -1), 0.001, "holds"),
    ({"expect": "lower"}, _test(3, 2, 4), 0.001, "contradicted"),
    ({"expect": "lower"}, _test(0.6, 0.2, 1.0), 0.001,
     "against the claim, not shown beyond the smallest effect that matters"),
    ({"expect": "lower", "exercised": False}, _test(3, 2, 4), 0.001, "against the claim; mechanism not exercised"),
    ({"expect": "lower"}, _test(-2, -5, 1), 0.2, "not shown"),
    ({"expect": "higher"}, _test(3, 1, 5), 0.01, "holds"),
    # closeness: the adjusted non-inferiority p, and the opposite one-sided p (1 - p_NI for a continuous t)
    ({"margin": {"top20": {"miss_ratio": 1.1}}}, _test(1, 0, 2, p_outside_margin=0.995), 0.01, "holds"),
    ({"margin": {"top20": {"miss_ratio": 1.1}}}, _test(4, 3, 5, p_outside_margin=0.001), 1.0, "contradicted"),
    ({"margin": {"top20": {"miss_ratio": 1.1}}}, _test(2, 0, 4, p_outside_margin=0.3), 1.0, "not shown"),
])
def test_claim_verdicts_rest_on_the_family_adjusted_test(claim, test, p_adjusted, expected):
    assert verdict(claim, test, p_adjusted, family=1) == expected


def _claim_table(name, claims, tests):
    return {"run_name": name, "baseline": "base", "claims": claims, "claim_tests": tests, "rows": []}


def test_holm_runs_over_the_declared_family_of_primary_claims():
    from bprlab.report.claims import claim_rows

    claims = [{"claim": "a", "row": "r", "metric": "top20", "expect": "lower"},
              {"claim": "b", "row": "r", "metric": "top1", "qrels_metric": "mrr@10", "expect": "lower"}]
    answers = _claim_table("abl-search", claims, [_test(-2, -3, -1, p=0.01), _test(-2, -3, -1, p=0.02, metric="top1")])
    qrels = _claim_table("abl-search-beir", claims, [_test(-2, -3, -1, p=0.0001, metric="ndcg@10"),
                                                     _test(-2, -3, -1, p=0.0001, metric="mrr@10")])
    other = _claim_table("abl-beta", claims[:1], [_test(-2, -3, -1, p=0.03)])
    rows = claim_rows([other, qrels, answers], ("abl-search", "abl-beta"))
    assert [(r["table"], r["claim"], r["metric"], r["primary"]) for r in rows] == [
        ("abl-search", "a", "top20", True), ("abl-search", "b", "top1", True),
        ("abl-search-beir", "a", "ndcg@10", False), ("abl-search-beir", "b", "mrr@10", False),
        ("abl-beta", "a", "top20", True)]
    primary = [r for r in rows if r["primary"]]
    # Holm over the three primary p-values 0.01, 0.02, 0.03: 0.03, 0.04, 0.04; twins are not in the family
    assert [r["p_holm"] for r in primary] == pytest.approx([0.03, 0.04, 0.04])
    assert all(r["family"] == 3 and r["verdict"] == "holds" for r in primary)
    assert all(r["verdict"].startswith("secondary") and "p_holm" not in r for r in rows if not r["primary"])
    assert all(r["power"]["alpha"] == pytest.approx(0.05 / 3) for r in primary)


def test_a_claim_may_name_its_own_baseline_row():
    from bprlab.report.claims import claim_rows
    from bprlab.report.summary import claim_tests
    from bprlab.tables import Table

    claims = [{"claim": "a", "row": "r", "metric": "top1", "expect": "lower"},
              {"claim": "a", "row": "r", "baseline": "other", "metric": "top1", "expect": "lower"}]
    first = lambda hits: {"first_hit": [0 if h else -1 for h in hits]}  # noqa: E731
    unit = lambda method, seed, hits: {"method": method, "seed": seed, "metrics": {"top1": 100.0 * np.mean(hits)},  # noqa: E731
                                       "outcomes": first(hits)}
    rng = np.random.default_rng(1)
    hits = {m: [rng.random(200) < p for _ in range(3)] for m, p in (("base", 0.5), ("r", 0.5), ("other", 0.9))}
    records = {m: [unit(m, 42 + s, h) for s, h in enumerate(v)] for m, v in hits.items()}
    table = Table(name="t", note="", rows=[], dataset=None, seeds=3, baseline="base", claims=claims)
    tests = claim_tests(table, records)
    assert tests[0]["baseline_value"] == pytest.approx(np.mean([h.mean() for h in hits["base"]]) * 100)
    assert tests[1]["baseline_value"] == pytest.approx(np.mean([h.mean() for h in hits["other"]]) * 100)
    rows = claim_rows([_claim_table("t", claims, tests)])
    assert [(r["baseline"], r["primary"]) for r in rows] == [("base", True), ("other", False)]


def test_a_closeness_claim_is_a_noninferiority_test_of_its_miss_ratio():
    from bprlab.report.claims import claim_test

    rng = np.random.default_rng(11)
    dpr = [_unit(s, np.where(rng.random(600) < 0.8, 0, -1)) for s in (42, 43, 44)]  # ~20% misses
    bpr = [_unit(s, np.where(rng.random(600) < 0.75, 0, -1)) for s in (42, 43, 44)]  # ~25% misses
    observed = claim_test({"claim": "c", "row": "dpr", "metric": "top1", "margin": {"top1": {"miss_ratio": 1.1}}},
                          dpr, bpr, 3)
    ratio = observed["miss_ratio"]
    assert ratio == pytest.approx((100 - observed["baseline_value"]) / (100 - observed["value"]))
    # at a margin equal to the observed ratio the contrast's mean is 0: p = 1/2 on either side
    at_ratio = claim_test({"claim": "c", "row": "dpr", "metric": "top1", "margin": {"top1": {"miss_ratio": ratio}}},
                          dpr, bpr, 3)
    assert at_ratio["p_noninferiority"] == pytest.approx(0.5, abs=1e-9)
    assert at_ratio["p_outside_margin"] == pytest.approx(0.5, abs=1e-9)
    # the one-sided 95% upper bound: the margin at which the test just passes, above the observed ratio
    upper = observed["miss_ratio_upper"]
    assert upper > ratio
    at_upper = claim_test({"claim": "c", "row": "dpr", "metric": "top1", "margin": {"top1": {"miss_ratio": upper}}},
                          dpr, bpr, 3)
    assert at_upper["p_noninferiority"] == pytest.approx(0.05, abs=1e-3)
    # in points: DPR ahead by at most m; p_NI = 1/2 where m is the observed gap
    gap = observed["effect"]
    points = claim_test({"claim": "c", "row": "dpr", "metric": "top1", "margin": {"top1": {"points": gap}}},
                        dpr, bpr, 3)
    assert points["p_noninferiority"] == pytest.approx(0.5, abs=1e-9)



def test_a_claim_is_printed_with_the_stage_coverage_its_table_measured_and_its_reading_only_where_declared():
    from bprlab.report.claims import claim_rows, stage_coverage
    from bprlab.report.claims_report import claims_markdown

    def row(method, **hamming):  # as aggregate_row writes one: each mean at the top level and in its interval
        return {"method": method, "top20": 90.0, **{f"hamming@{l}": v for l, v in hamming.items()},
                "intervals": {**{f"hamming@{l}": {"mean": v} for l, v in hamming.items()}, "top20": {"mean": 90.0}}}

    rows = [row("base", **{"20": 88.0, "100": 97.0, "1000": 99.04}), row("codes", **{"20": 87.0, "1000": 98.96}),
            row("pq"), row("short", **{"20": 80.0, "100": 95.0})]
    # the largest l every stage-searching side swept; a row without a Hamming stage is left out, none -> None
    assert stage_coverage(rows, ("codes", "base")) == {"l": 1000, "codes": 98.96, "base": 99.04}
    assert stage_coverage(rows, ("short", "base")) == {"l": 100, "short": 95.0, "base": 97.0}
    assert stage_coverage(rows, ("pq", "base")) == {"l": 1000, "base": 99.04}
    assert stage_coverage(rows, ("pq", "absent")) is None

    claims = [{"claim": "codes", "row": "codes", "metric": "hamming@20", "expect": "lower", "reading": "l = k = 20"},
              {"claim": "close", "row": "pq", "metric": "top5", "margin": {"top5": {"miss_ratio": 1.1},
                                                                           "ndcg@10": {"miss_ratio": 1.1}},
               "reading": "top-5, the k nearest the paper's"}]
    ni = {"p_noninferiority": 0.01, "p_outside_margin": 0.99, "miss_ratio": 1.0, "margin": {"miss_ratio": 1.1},
          "noninferiority": _test(-1, -2, 0), "equal_distance": 1.0}
    answers = {**_claim_table("abl-compression", claims, [_test(-2, -3, -1, p=0.01, metric="hamming@20"),
                                                          {**_test(1, 0, 2, p=0.3, metric="top5"), **ni}]),
               "rows": rows}
    twin = {**_claim_table("abl-compression-beir", claims, [_test(-2, -3, -1, p=0.01, metric="hamming@20"),
                                                            {**_test(1, 0, 2, p=0.3, metric="ndcg@10"), **ni}]),
            "rows": rows}
    text = claims_markdown(claim_rows([answers, twin], ("abl-compression",)))
    primary, secondary = text.split("Secondary readings")
    assert "read at l = k = 20; hamming@1000 = 99.0 (codes), 99.0 (base) |" in primary
    assert "read at top-5, the k nearest the paper's; hamming@1000 = 99.0 (base) |" in primary
    # the twin reads the closeness claim on ndcg@10: the top-5 reading declared for the primary metric is not its own
    assert "read at l = k = 20; hamming@1000" in secondary and "read at top-5" not in secondary
