"""Uncertainty for tables: intervals, tests and Holm's correction (docs/method.md#uncertainty).

Two sources of variation move a comparison between two trained methods, and a claim about a method must hold
both: training noise (another seed is another model) and the question sample (other questions of the same kind).
Every seed is scored on the same questions, so the two are separated like this:

- per-seed differences d_s (row minus baseline, seeds paired by number, a row trained once paired with every seed
  of the other) vary by training noise only: s²_seeds / S;
- per-question differences averaged over seeds vary by the question sample: a cluster-robust variance of their
  mean, s²_questions / Q, where questions cluster (squad's paragraphs, BEIR queries sharing a judged document):
  a cluster is the unit that is independent, and C clusters give C - 1 degrees of freedom;
- the combined standard error se² = s²_seeds / S + s²_questions / Q, with Welch-Satterthwaite degrees of freedom
  df = se⁴ / ((s²_seeds/S)² / (S - 1) + (s²_questions/Q)² / (C - 1)); the t test and the t interval on it are
  the comparison's test and interval (the seed-by-question noise is counted in both terms: slightly
  conservative).

Beside it, for what each part says alone: a t-interval over the per-seed differences (training noise only; its
test is scipy's `ttest_rel`), a cluster bootstrap interval over the seed-averaged differences (question sample
only), and an exact sign-flip test over clusters on integer outcomes (top-k: hits summed over seeds; qrels
metrics: stored to DIGITS places, scaled to integers) that never drops a tie. Where the sum of |differences| is
too large to count exactly the test draws sign flips and reports the floor it can reach, 1 / (R + 1).

Randomness is seeded (RNG_SEED), so a report regenerated from the same outcomes gives the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95
ALPHA = 0.05
RESAMPLES = 10_000  # bootstrap resamples and sign-flip draws where the test is not exact
RESAMPLES_NEAR_ALPHA = 200_000  # sign-flip draws again where a drawn p lands near ALPHA
NEAR_ALPHA = (0.01, 0.2)
EXACT_SUPPORT = 100_000  # an exact sign-flip distribution over at most 2 * this + 1 integer values
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
    """The comparison's estimate with both sources of variation: effect, its standard error and parts, df."""

    effect: float
    se: float
    df: float
    var_seeds: float  # s²_seeds / S (0 where no side is trained more than once)
    var_questions: float  # s²_questions / Q, cluster-robust
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


def combined(seed_diffs: Sequence[float], question_diffs: np.ndarray, clusters: Sequence | None = None) -> Combined:
    """The comparison with training noise and question sample together (module docstring). `seed_diffs`: the
    per-seed differences (one value, or none: no training noise measured); `question_diffs`: (Q,) per-question
    differences averaged over seeds, on the same scale."""
    question_diffs = np.asarray(question_diffs, dtype=float)
    seed_diffs = np.asarray(seed_diffs, dtype=float)
    var_q, count = question_variance(question_diffs, clusters)
    seeds = len(seed_diffs)
    var_s = float(seed_diffs.var(ddof=1) / seeds) if seeds >= 2 else 0.0
    se2 = var_s + var_q
    terms = (var_s ** 2 / (seeds - 1) if seeds >= 2 else 0.0) + (var_q ** 2 / (count - 1) if count >= 2 else 0.0)
    df = se2 ** 2 / terms if terms > 0 else float("inf")
    return Combined(float(question_diffs.mean()), float(np.sqrt(se2)), float(df), var_s, var_q, seeds, count)


def cluster_bootstrap_interval(x: np.ndarray, y: np.ndarray | None = None,
                               clusters: Sequence | None = None) -> Interval:
    """95% percentile bootstrap of mean(x) or, paired, of mean(x - y), resampling clusters (the independent
    unit) with replacement: each draw's mean is its clusters' summed differences over their summed sizes. The
    question sample only: training noise is not in it."""
    x = np.asarray(x, dtype=float)
    d = x if y is None else x - np.asarray(y, dtype=float)
    if y is not None and np.shape(y) != x.shape:
        raise ValueError(f"expected paired 1-d outcomes of one length, got shapes {[x.shape, np.shape(y)]}")
    if d.ndim != 1 or len(d) == 0 or not np.isfinite(d).all():
        raise ValueError("expected a non-empty 1-d array of finite outcomes")
    mean = float(d.mean())
    labels = cluster_labels(clusters, len(d))
    count = int(labels.max()) + 1
    if np.ptp(d) == 0 or count < 2:
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


@dataclass(frozen=True)
class SignFlip:
    p: float
    exact: bool
    floor: float  # the smallest p this test could give (0 when exact)

    def as_dict(self) -> dict:
        return asdict(self)


def sign_flip_test(d: np.ndarray, clusters: Sequence | None = None, scale: int = 1) -> SignFlip:
    """Two-sided randomization test of mean(d) = 0, flipping the sign of each cluster's summed difference. `d`
    times `scale` must be integers (top-k hits summed over seeds: scale = seeds; qrels metrics stored to DIGITS
    places: scale = 10**DIGITS): the statistic |sum| is compared in integers, so ties are ties. Exact (the whole
    null distribution by convolution) when sum |T_c| is at most EXACT_SUPPORT, else drawn: RESAMPLES flips, and
    RESAMPLES_NEAR_ALPHA where p lands in NEAR_ALPHA; p = (1 + #{|T*| >= |T|}) / (R + 1)."""
    d = np.asarray(d, dtype=float)
    scaled = np.rint(d * scale)
    if d.ndim != 1 or len(d) == 0 or not np.isfinite(d).all():
        raise ValueError("expected a non-empty 1-d array of finite differences")
    if np.abs(scaled - d * scale).max() > 1e-6:
        raise ValueError(f"differences times {scale} are not integers: the test compares integer sums")
    labels = cluster_labels(clusters, len(d))
    totals = np.abs(np.bincount(labels, weights=scaled).astype(np.int64))
    totals = totals[totals > 0]
    observed = abs(int(np.rint(scaled.sum())))
    if len(totals) == 0:
        return SignFlip(1.0, True, 0.0)
    support = int(totals.sum())
    if support <= EXACT_SUPPORT:
        return SignFlip(_exact_sign_flip(totals, observed), True, 0.0)
    p, floor = _drawn_sign_flip(totals, observed, RESAMPLES)
    if NEAR_ALPHA[0] <= p <= NEAR_ALPHA[1]:
        p, floor = _drawn_sign_flip(totals, observed, RESAMPLES_NEAR_ALPHA)
    return SignFlip(p, False, floor)


def _exact_sign_flip(totals: np.ndarray, observed: int) -> float:
    """P(|sum_c e_c T_c| >= observed) with e_c = ±1 equally likely: the distribution of sum e_c T_c over
    [-S, S] built one distinct magnitude at a time (a magnitude t seen m times adds t * (2k - m), k ~ Bin(m, ½))."""
    from scipy import stats

    support = int(totals.sum())
    dist = np.zeros(2 * support + 1)
    dist[support] = 1.0  # index i is the value i - support
    values, counts = np.unique(totals, return_counts=True)
    for t, m in zip(values.tolist(), counts.tolist()):
        weights = stats.binom.pmf(np.arange(m + 1), m, 0.5)
        out = np.zeros_like(dist)
        for k, w in enumerate(weights):
            shift = t * (2 * k - m)
            if shift >= 0:
                out[shift:] += w * dist[:len(dist) - shift]
            else:
                out[:shift] += w * dist[-shift:]
        dist = out
    index = np.arange(-support, support + 1)
    return float(min(1.0, dist[np.abs(index) >= observed].sum()))


def _drawn_sign_flip(totals: np.ndarray, observed: int, draws: int) -> tuple[float, float]:
    rng = np.random.default_rng(RNG_SEED)
    values = totals.astype(float)  # integer sums below 2^53: exact in float64
    extreme = 0
    for start in range(0, draws, 5000):
        signs = rng.integers(0, 2, size=(min(5000, draws - start), len(values)), dtype=np.int8) * 2.0 - 1.0
        extreme += int((np.abs(signs @ values) >= observed).sum())
    return (1 + extreme) / (draws + 1), 1 / (draws + 1)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error over a declared family of comparisons)."""
    from statsmodels.stats.multitest import multipletests

    if len(pvalues) == 0:
        return []
    return [float(p) for p in multipletests(np.asarray(pvalues, dtype=float), alpha=ALPHA, method="holm")[1]]
