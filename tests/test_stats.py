"""Intervals, paired randomization tests, Holm's correction and the power analysis (bprlab.report.stats,
bprlab.report.signflip, bprlab.report.power); the rows and claims built on them are tests/test_claims.py's."""

import numpy as np
import pytest

from bprlab.eval.outcomes import first_hits, outcome_vector
from bprlab.report.power import design_power, mde
from bprlab.report.signflip import sign_flip_test
from bprlab.report.stats import (
    RESAMPLES,
    Combined,
    cluster_bootstrap_interval,
    combined,
    holm,
    paired_t_over_seeds,
    question_variance,
    seed_interval,
)


def test_exact_sign_flip_p_values_match_hand_counts():
    # 5 questions all +1: of the 2^5 sign flips, only all-plus and all-minus reach |sum| = 5 -> p = 2/32
    assert sign_flip_test(np.ones(5)).p == pytest.approx(2 / 32) and sign_flip_test(np.ones(5)).exact
    # differences (+1, +1, +1, -1): |sum| >= 2 in 10 of the 16 flips -> p = 10/16
    assert sign_flip_test(np.array([1, 1, 1, -1.])).p == pytest.approx(10 / 16)
    # (+2, -1, +1), observed 2, with ties at |sum| = 2: the 8 flips give 4, 2, 2, 0, 0, -2, -2, -4; 6 reach 2
    assert sign_flip_test(np.array([2, -1, 1.])).p == pytest.approx(6 / 8)
    assert sign_flip_test(np.array([2, 1, 1.])).p == pytest.approx(2 / 8)  # observed 4: only +4 and -4
    # averaged over 3 seeds (thirds): scale 3 makes them integers; the same count as (2, -1, 1)
    assert sign_flip_test(np.array([2, -1, 1.]) / 3, scale=3).p == pytest.approx(6 / 8)
    # clusters flip together: {a: +1 +1}, {b: +1} -> totals (2, 1): |sum| >= 3 in 2 of 4 flips
    assert sign_flip_test(np.ones(3), ["a", "a", "b"]).p == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="not integers"):
        sign_flip_test(np.array([0.5, 1.0]))


def test_sign_flips_count_rounding_level_ties_as_ties():
    # differences that are equal as integers but not as floats (0.1 + 0.2 != 0.3): all ties are counted
    d = np.array([0.1 + 0.2, -0.3, 0.3, 0.3, -0.3, 0.1 + 0.2])
    assert sign_flip_test(d, scale=10).p == pytest.approx(sign_flip_test(np.round(d * 10), scale=1).p)
    # (+3, -3, +3, +3, -3, +3): |sum| >= 6 in 22 of 64 flips (|2k - 6| >= 2 for k heads: 1 + 6 + 15 of each side)
    assert sign_flip_test(d, scale=10).p == pytest.approx(44 / 64)


def test_drawn_sign_flips_report_their_floor():
    rng = np.random.default_rng(1)
    d = np.round(rng.normal(0.3, 1.0, 4000), 5)  # sum |d| * 1e5 is far beyond an exact distribution
    result = sign_flip_test(d, scale=10 ** 5)
    assert not result.exact and result.floor == pytest.approx(1 / (RESAMPLES + 1)) and result.p == result.floor


def test_paired_t_over_seeds_is_scipys_ttest_rel():
    from scipy import stats

    x, y = [91.0, 92.5, 89.9, 90.7], [90.1, 91.0, 90.2, 89.0]
    assert paired_t_over_seeds(x, y) == pytest.approx(stats.ttest_rel(x, y).pvalue)
    assert paired_t_over_seeds(x, x) == 1.0
    with pytest.raises(ValueError, match=">= 2 paired seeds"):
        paired_t_over_seeds([1.0], [2.0])


def test_combined_variance_and_satterthwaite_df_on_a_worked_example():
    # 3 seeds x 4 questions, d = seed effect + question effect + interaction (values chosen by hand):
    d = np.array([[1.0, 3.0, 2.0, 6.0],
                  [2.0, 2.0, 4.0, 4.0],
                  [3.0, 4.0, 3.0, 5.0]])
    # seed means 3, 3, 3.75 -> s² = 0.1875, V_seeds = 0.1875 / 3 = 0.0625
    # question means 2, 3, 3, 5 (mean 3.25) -> s² = 1.58333, V_questions = 1.58333 / 4 = 0.395833
    # residuals d - seed - question + grand: (-.75 .25 -.75 1.25 / .25 -.75 1.25 -.75 / .5 .5 -.5 -.5),
    # SS_E = 2.75 + 2.75 + 1 = 6.5 over (S-1)(Q-1) = 6 -> MS_E = 1.083333, V_interaction = MS_E / (S Q)
    result = combined(d)
    assert result.var_interaction == pytest.approx(1.083333 / 12, rel=1e-5)
    # se² = V_s + V_q - V_e with Satterthwaite df over the pieces (2, 3 and 6 df); the training estimate
    # V_s - V_e is below 0 here, and reported as it is
    v_s, v_q, v_e = 0.1875 / 3, 1.583333 / 4, 1.083333 / 12
    assert result.se ** 2 == pytest.approx(v_s + v_q - v_e, rel=1e-5) and result.var_seeds < 0
    assert result.df == pytest.approx((v_s + v_q - v_e) ** 2 / (v_s ** 2 / 2 + v_q ** 2 / 3 + v_e ** 2 / 6), rel=1e-5)
    # a larger seed effect: add 0, 1, 2 to the seeds -> seed means 3, 4, 5.75: s² = 1.9375, V_seeds = 0.645833
    shifted = d + np.array([[0.0], [1.0], [2.0]])
    result = combined(shifted)
    v_s, v_q, v_e = 1.9375 / 3, 1.583333 / 4, 1.083333 / 12
    # question means are now 3, 4, 4, 6 (the same spread): V_questions unchanged; se² = V_s + V_q - V_e
    assert result.se ** 2 == pytest.approx(v_s + v_q - v_e, rel=1e-5)
    df = (v_s + v_q - v_e) ** 2 / (v_s ** 2 / 2 + v_q ** 2 / 3 + v_e ** 2 / 6)
    assert result.df == pytest.approx(df, rel=1e-5)
    from scipy import stats

    assert result.p_two_sided() == pytest.approx(2 * stats.t.sf(result.effect / result.se, df), rel=1e-5)
    low, high = result.interval()
    assert (high - low) / 2 == pytest.approx(stats.t.ppf(0.975, df) * result.se, rel=1e-5)
    with pytest.raises(ValueError, match="fewer than 2 independent clusters"):
        combined(d, ["p"] * 4)


def test_combined_variance_is_unbiased_with_seed_by_question_noise():
    # d = a_s + b_q + e_sq: the estimate's mean over repetitions is the variance of the mean, where adding the
    # seed and question parts alone counts the interaction twice
    rng = np.random.default_rng(5)
    seeds, questions, sa, sb, se_ = 3, 300, 0.3, 1.0, 6.0
    truth = sa ** 2 / seeds + sb ** 2 / questions + se_ ** 2 / (seeds * questions)
    estimates, naive = [], []
    for _ in range(400):
        d = rng.normal(0, sa, (seeds, 1)) + rng.normal(0, sb, (1, questions)) + rng.normal(0, se_, (seeds, questions))
        estimates.append(combined(d).se ** 2)
        naive.append(d.mean(axis=1).var(ddof=1) / seeds + d.mean(axis=0).var(ddof=1) / questions)
    assert abs(np.mean(estimates) / truth - 1) < 0.05 and np.mean(naive) / truth > 1.5


def test_cluster_bootstrap_widens_where_clusters_share_their_outcome():
    rng = np.random.default_rng(2)
    cluster_effect = rng.normal(0, 1, 40)  # 40 paragraphs of 5 questions: questions within one move together
    clusters = np.repeat(np.arange(40), 5)
    d = cluster_effect[clusters] + rng.normal(0, 0.2, 200)
    plain = cluster_bootstrap_interval(d)
    clustered = cluster_bootstrap_interval(d, clusters=clusters)
    assert clustered.half_width > 1.8 * plain.half_width  # ~sqrt(5) wider: 40 independent units, not 200
    var_plain, n_plain = question_variance(d)
    var_clustered, n_clustered = question_variance(d, clusters)
    assert (n_plain, n_clustered) == (200, 40) and var_clustered > 3 * var_plain
    # the cluster-robust variance equals the variance of cluster means / C when clusters have equal sizes
    means = d.reshape(40, 5).mean(axis=1)
    assert var_clustered == pytest.approx(means.var(ddof=1) / 40)
    with pytest.raises(ValueError, match="fewer than 2 independent clusters"):
        cluster_bootstrap_interval(d, clusters=np.zeros(200))


def test_noninferiority_p_on_a_worked_example():
    # contrast mean -1.0 with se 0.5 and infinite df (many questions): p = Phi(-2) = 0.02275
    result = Combined(effect=-1.0, se=0.5, df=float("inf"), var_seeds=0.0, var_questions=0.25, var_interaction=0.0,
                      seeds=1, clusters=10 ** 6)
    assert result.p_below(0.0) == pytest.approx(0.022750, abs=1e-6)
    assert result.p_below(-1.0) == pytest.approx(0.5) and result.p_above(0.0) == pytest.approx(1 - 0.022750)
    exact = Combined(1.0, 0.0, float("inf"), 0.0, 0.0, 0.0, 1, 10)
    assert exact.p_below(1.0) == 1.0 and exact.p_above(1.0) == 1.0  # on the margin: neither side shown


def test_mde_matches_a_simulated_power_within_two_points():
    # d[s, q] = delta + a_s + b_q + e_sq: the design the combined test assumes
    rng = np.random.default_rng(4)
    seeds, questions, sd_seed, sd_question, sd_inter = 6, 400, 0.8, 6.0, 4.0
    design = Combined(0.0, 0.0, 0.0, sd_seed ** 2 / seeds, sd_question ** 2 / questions,
                      sd_inter ** 2 / (seeds * questions), seeds, questions)
    power = design_power(design)
    hits, trials = 0, 3000
    for _ in range(trials):
        a, b = rng.normal(0, sd_seed, (seeds, 1)), rng.normal(0, sd_question, (1, questions))
        d = power.mde + a + b + rng.normal(0, sd_inter, (seeds, questions))
        hits += combined(d).p_two_sided() < 0.05
    assert abs(hits / trials - 0.80) < 0.02


def test_seeds_needed_shrink_the_training_and_interaction_terms_only():
    rng = np.random.default_rng(8)
    d = rng.normal(0, 2.0, (3, 1)) + rng.normal(0, 1.0, (1, 300)) + rng.normal(0, 3.0, (3, 300))
    result = combined(d)
    from scipy import stats

    # at the seeds it ran, the MDE is the design's own: (t(1 - a/2, df) + t(0.8, df)) * se
    assert mde(result) == pytest.approx((stats.t.ppf(0.975, result.df) + stats.t.ppf(0.8, result.df)) * result.se)
    power = design_power(result, target=0.5)
    assert power.seeds_needed is not None and power.seeds_needed > 3
    assert mde(result, power.seeds_needed) <= 0.5 < mde(result, power.seeds_needed - 1)
    assert power.floor < power.mde and mde(result, 1000) > power.floor
    # the question term alone is above the target: no number of seeds gets there, and the floor says so
    wide = combined(rng.normal(0, 0.5, (3, 1)) + rng.normal(0, 30.0, (1, 300)) + rng.normal(0, 3.0, (3, 300)))
    limited = design_power(wide, target=1.0)
    assert limited.seeds_needed is None and limited.floor > 1.0
    with pytest.raises(ValueError, match="at least 2 seeds"):
        design_power(combined(d[:1]))


def test_drawn_sign_flips_agree_with_the_exact_count():
    from bprlab.report import signflip as module

    d = np.array([3, -1, 2, 2, -3, 1, 1, 2, -1, 1] * 8, dtype=float)
    exact = sign_flip_test(d)
    assert exact.exact
    drawn, floor = module._drawn_sign_flip(np.abs(d).astype(np.int64), int(abs(d.sum())), 200_000)
    assert abs(drawn - exact.p) < 0.005 and floor == pytest.approx(1 / 200_001)


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
    interval = cluster_bootstrap_interval(x)
    assert interval.low < x.mean() < interval.high and 0.0 <= interval.low and interval.high <= 1.0
    same = cluster_bootstrap_interval(np.ones(10), np.ones(10))
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="shapes"):
        cluster_bootstrap_interval(np.ones(3), np.ones(4))


def test_outcomes_give_every_top_k_from_the_first_hit():
    hits = np.array([[0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype=bool)
    first = first_hits(hits)
    assert first.tolist() == [1, -1, 0]
    outcomes = {"first_hit": first.tolist(), "ndcg@10": [0.5, None, 1.0]}
    assert outcome_vector(outcomes, "top1").tolist() == [0, 0, 1]
    assert outcome_vector(outcomes, "top2").tolist() == [1, 0, 1]
    assert np.isnan(outcome_vector(outcomes, "ndcg@10")[1]) and outcome_vector(outcomes, "recall@100") is None


@pytest.mark.slow
@pytest.mark.parametrize("seed_sd, question_sd", [(0.0, 0.0), (0.02, 0.0), (0.0, 0.1), (0.03, 0.1)])
def test_type_one_error_of_the_combined_test_with_three_seeds(seed_sd, question_sd):
    # two methods with the same distribution of models: binary outcomes on 1,000 questions of varied difficulty,
    # each seed shifting its model's hit rate (seed_sd), each question favouring one method by a symmetric amount
    # (question_sd): the test's rejection rate at 0.05 (the figure docs/method.md#uncertainty quotes)
    rng = np.random.default_rng(0)
    seeds, questions, trials, rejected = 3, 1000, 1500, 0
    for _ in range(trials):
        p = rng.beta(2, 1, questions)
        lean = rng.normal(0, question_sd, questions)
        x = rng.random((seeds, questions)) < np.clip(p + rng.normal(0, seed_sd, (seeds, 1)) + lean, 0, 1)
        y = rng.random((seeds, questions)) < np.clip(p + rng.normal(0, seed_sd, (seeds, 1)) - lean, 0, 1)
        rejected += combined(100.0 * (x.astype(float) - y)).p_two_sided() < 0.05
    assert 0.01 <= rejected / trials <= 0.09
