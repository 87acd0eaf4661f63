"""Uncertainty for tables: intervals, tests and Holm's correction (docs/method.md#uncertainty).

Two sources of variation move a comparison between two trained methods, and a claim about a method must hold
both: training noise (another seed is another model) and the question sample (other questions of the same kind).
Every seed is scored on the same questions, so the differences d[s, q] (seed s, question q; seeds paired by number,
a row trained once paired with every seed of the other) form a crossed design:

    d[s, q] = mu + a_s (training noise) + b_q (question sample) + e_sq (how a seed's model does on a question)

and the mean over seeds and questions has variance sigma²_a / S + sigma²_b / Q + sigma²_e / (S Q). It is estimated
from three pieces, each cluster-robust where questions come in clusters (squad's paragraphs, BEIR queries
sharing a judged document: C clusters, the independent unit):

- V_seeds: the variance of the per-seed means over S (holds sigma²_a / S + sigma²_e / (S Q));
- V_questions: the cluster-robust variance of the mean of the seed-averaged per-question differences (holds
  sigma²_b / Q + sigma²_e / (S Q));
- V_interaction: from the two-way residuals d - d_s - d_q + d, cluster sums per seed, scaled by
  S C / ((S - 1) (C - 1)) (holds sigma²_e / (S Q); the residual mean square over S Q where each question is its own
  cluster).

se² = V_seeds + V_questions - V_interaction (unbiased), with Satterthwaite degrees of freedom for a combination of
mean squares over the three pieces (S - 1, C - 1 and (S - 1)(C - 1)); where the combination comes out <= 0, the
larger of V_seeds and V_questions on S - 1 df. The t test and the t interval on it are the comparison's test and
interval; its calibration with three seeds is checked by simulation (tests/test_stats.py, slow tier). With one
seed there is no V_seeds: se² = V_questions, the question sample only.

Beside it, for what each part says alone: a t-interval over the per-seed differences and scipy's `ttest_rel`
(training noise, these questions), a cluster bootstrap interval over the seed-averaged differences (the question
sample, these models), and an exact sign-flip test over clusters on integer outcomes (top-k: hits summed over
seeds; qrels metrics: stored to DIGITS places, scaled to integers) that never drops a tie (bprlab.report.signflip).

Randomness is seeded (RNG_SEED), so a report regenerated from the same outcomes gives the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95
ALPHA = 0.05
RESAMPLES = 10_000  # bootstrap resamples and sign-flip draws where the test is not exact
RNG_SEED = 0


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float | None  # None: not estimable (one seed)
    high: float | None
    n: int

    @property
    def half_width(self) -> float | None:
        return None if self.low is None else (self.high - self.low) / 2

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Combined:
    """The comparison's estimate with both sources of variation: effect, standard error, its parts, df.
    se² = var_seeds + var_questions + var_interaction where that is > 0."""

    effect: float
    se: float
    df: float
    var_seeds: float  # estimate of sigma²_a / S, training noise (0 with one seed; an estimate can fall below 0)
    var_questions: float  # estimate of sigma²_b / Q, the question sample (with one seed it holds e too)
    var_interaction: float  # estimate of sigma²_e / (S Q), seed-by-question noise (0 with one seed)
    seeds: int
    clusters: int

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        from scipy import stats

        if self.se == 0.0:
            return self.effect, self.effect
        half = float(stats.t.ppf(0.5 + confidence / 2, self.df)) * self.se
        return self.effect - half, self.effect + half

    def p_two_sided(self, null: float = 0.0) -> float:
        from scipy import stats

        if self.se == 0.0:
            return 1.0 if self.effect == null else 0.0
        return float(min(1.0, 2 * stats.t.sf(abs(self.effect - null) / self.se, self.df)))

    def p_below(self, margin: float) -> float:
        """One-sided p of H0: effect >= margin against effect < margin (a non-inferiority test)."""
        from scipy import stats

        if self.se == 0.0:
            return 0.0 if self.effect < margin else 1.0
        return float(stats.t.cdf((self.effect - margin) / self.se, self.df))

    def p_above(self, margin: float) -> float:
        """One-sided p of H0: effect <= margin against effect > margin."""
        from scipy import stats

        if self.se == 0.0:
            return 0.0 if self.effect > margin else 1.0
        return float(stats.t.sf((self.effect - margin) / self.se, self.df))

    def as_dict(self) -> dict:
        return asdict(self)


def seed_interval(values: Sequence[float]) -> Interval:
    """Mean of a metric over seeds and its 95% Student-t interval (n - 1 degrees of freedom)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all():
        raise ValueError(f"seed_interval: expected a non-empty list of finite numbers, got {values!r}")
    mean = float(values.mean())
    if len(values) < 2:
        return Interval(mean, None, None, len(values))
    sem = float(stats.sem(values))
    if sem == 0.0:
        return Interval(mean, mean, mean, len(values))
    low, high = stats.t.interval(CONFIDENCE, len(values) - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), len(values))


def paired_t_over_seeds(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided p of a paired t over seeds (scipy's `ttest_rel`): training noise only, the questions fixed."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"a paired t over seeds needs >= 2 paired seeds, got {len(x)} and {len(y)}")
    if np.array_equal(x, y):
        return 1.0
    diff = x - y
    if np.ptp(diff) == 0.0:
        return 0.0  # every seed moved by the same non-zero amount: t is infinite
    return float(stats.ttest_rel(x, y).pvalue)


def cluster_labels(clusters: Sequence | None, n: int) -> np.ndarray:
    """(n,) int cluster index per question; None: every question is its own cluster."""
    if clusters is None:
        return np.arange(n)
    labels = np.asarray(clusters)
    if labels.shape != (n,):
        raise ValueError(f"expected one cluster label per question ({n}), got {labels.shape[0]}")
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


def question_variance(d: np.ndarray, clusters: Sequence | None = None) -> tuple[float, int]:
    """Cluster-robust variance of mean(d) and the number of clusters C:
    C / (C - 1) * sum_c (T_c - n_c * mean)² / Q², T_c the sum of d over cluster c (each question its own cluster:
    the usual s² / Q with the n - 1 divisor)."""
    d = np.asarray(d, dtype=float)
    labels = cluster_labels(clusters, len(d))
    count = int(labels.max()) + 1 if len(d) else 0
    if count < 2:
        return 0.0, count
    totals = np.bincount(labels, weights=d, minlength=count)
    sizes = np.bincount(labels, minlength=count)
    resid = totals - sizes * d.mean()
    return float(count / (count - 1) * (resid ** 2).sum() / len(d) ** 2), count


def combined(d: np.ndarray, clusters: Sequence | None = None) -> Combined:
    """The comparison with training noise and question sample together (module docstring). `d`: (S, Q)
    differences, one row per seed (pair), on one scale (points); one row: the question sample only."""
    d = np.atleast_2d(np.asarray(d, dtype=float))
    if d.ndim != 2 or d.size == 0 or not np.isfinite(d).all():
        raise ValueError("expected a non-empty (seeds, questions) array of finite differences")
    seeds = d.shape[0]
    labels = cluster_labels(clusters, d.shape[1])
    v_questions, count = question_variance(d.mean(axis=0), labels)
    if count < 2:
        raise ValueError("the questions form fewer than 2 independent clusters: no variance can be estimated")
    if seeds < 2:
        return Combined(float(d.mean()), float(np.sqrt(v_questions)), float(count - 1), 0.0, v_questions, 0.0, 1,
                        count)
    v_seeds = float(d.mean(axis=1).var(ddof=1) / seeds)
    v_inter = _interaction_variance(d, labels, count)
    se2 = v_seeds + v_questions - v_inter
    terms = v_seeds ** 2 / (seeds - 1) + v_questions ** 2 / (count - 1) + v_inter ** 2 / ((seeds - 1) * (count - 1))
    if se2 > 0 and terms > 0:
        df = se2 ** 2 / terms  # Satterthwaite for a combination of mean squares with a negative coefficient
    else:  # the combination came out <= 0: the larger of the two one-way estimates, on the seeds' df
        se2, df = max(v_seeds, v_questions), float(seeds - 1)
    return Combined(float(d.mean()), float(np.sqrt(se2)), float(df), v_seeds - v_inter, v_questions - v_inter,
                    v_inter, seeds, count)


def _interaction_variance(d: np.ndarray, labels: np.ndarray, count: int) -> float:
    """sigma²_e / (S Q) from the two-way residuals, cluster sums per seed (module docstring)."""
    seeds, questions = d.shape
    resid = d - d.mean(axis=1, keepdims=True) - d.mean(axis=0, keepdims=True) + d.mean()
    sums = np.stack([np.bincount(labels, weights=row, minlength=count) for row in resid])  # (S, C)
    scale = seeds * count / ((seeds - 1) * (count - 1))
    return float(scale * (sums ** 2).sum() / (seeds * questions) ** 2)


def cluster_bootstrap_interval(x: np.ndarray, y: np.ndarray | None = None,
                               clusters: Sequence | None = None) -> Interval:
    """95% percentile bootstrap of mean(x) or, paired, of mean(x - y), resampling clusters (the independent
    unit) with replacement: each draw's mean is its clusters' summed differences over their summed sizes. The
    question sample only: training noise is not in it."""
    x = np.asarray(x, dtype=float)
    if y is not None and np.shape(y) != x.shape:
        raise ValueError(f"expected paired 1-d outcomes of one length, got shapes {[x.shape, np.shape(y)]}")
    d = x if y is None else x - np.asarray(y, dtype=float)
    if d.ndim != 1 or len(d) == 0 or not np.isfinite(d).all():
        raise ValueError("expected a non-empty 1-d array of finite outcomes")
    mean = float(d.mean())
    labels = cluster_labels(clusters, len(d))
    count = int(labels.max()) + 1
    if count < 2:
        raise ValueError("the questions form fewer than 2 independent clusters: no interval can be estimated")
    if np.ptp(d) == 0:
        return Interval(mean, mean, mean, len(d))
    totals = np.bincount(labels, weights=d, minlength=count)
    sizes = np.bincount(labels, minlength=count).astype(float)
    rng = np.random.default_rng(RNG_SEED)
    means = np.empty(RESAMPLES)
    for start in range(0, RESAMPLES, 1000):
        draw = rng.integers(0, count, size=(min(1000, RESAMPLES - start), count))
        means[start:start + len(draw)] = totals[draw].sum(axis=1) / sizes[draw].sum(axis=1)
    low, high = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return Interval(mean, float(low), float(high), len(d))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error over a declared family of comparisons)."""
    from statsmodels.stats.multitest import multipletests

    if len(pvalues) == 0:
        return []
    if not np.isfinite(np.asarray(pvalues, dtype=float)).all():
        raise ValueError(f"Holm's correction over p-values that are not all numbers: {list(pvalues)}")
    return [float(p) for p in multipletests(np.asarray(pvalues, dtype=float), alpha=ALPHA, method="holm")[1]]
