"""Uncertainty for tables: intervals over seeds and over questions, paired randomization tests, Holm's correction.

Nothing here re-implements a test: intervals and tests are scipy.stats' (`t`, `bootstrap`, `permutation_test`),
the multiple-testing correction is statsmodels' (`multipletests(method="holm")`). What this module decides is
what is compared with what (docs/method.md#uncertainty):

- a row's metric over seeds: mean and a 95% t-interval over the seeds (training noise);
- a row against the table's baseline: the per-question outcomes of each row averaged over its seeds, then a
  paired two-sided randomization test (sign flips of the per-question differences) on the mean difference, an
  effect = mean difference in points with a 95% paired bootstrap interval over questions, and, with >= 2 seeds
  each, a 95% t-interval over the per-seed differences (seeds paired by their number);
- p-values corrected by Holm over every comparison of a table (rows x metrics).

Randomness is seeded (RNG_SEED), so a report regenerated from the same outcomes gives the same p-values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000  # permutations and bootstrap resamples; the smallest reachable p is 1 / (RESAMPLES + 1)
RNG_SEED = 0
ALPHA = 0.05


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


def bootstrap_interval(x: np.ndarray, y: np.ndarray | None = None) -> Interval:
    """95% percentile bootstrap over questions of mean(x) or, paired, of mean(x - y) (questions resampled
    together for both rows). Training noise is not in it: it says how much the question sample moves a number."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    data = (x,) if y is None else (x, np.asarray(y, dtype=float))
    _check_paired(data)

    def mean_diff(*samples, axis=-1):
        return samples[0].mean(axis=axis) - (samples[1].mean(axis=axis) if len(samples) > 1 else 0.0)

    mean = float(mean_diff(*data))
    if all(np.ptp(sample) == 0 for sample in data) or len(x) < 2:
        return Interval(mean, mean, mean, len(x))
    result = stats.bootstrap(data, mean_diff, paired=True, vectorized=True, n_resamples=RESAMPLES,
                             confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(RNG_SEED))
    return Interval(mean, float(result.confidence_interval.low), float(result.confidence_interval.high), len(x))


def paired_randomization_test(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p-value of mean(x - y) = 0 by randomization: each question's pair of outcomes is swapped at random
    (scipy's `permutation_type="samples"`); exact when 2^Q <= RESAMPLES, else RESAMPLES random swaps, p counted
    with the observed arrangement included (never 0)."""
    from scipy import stats

    data = (np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    _check_paired(data)
    if np.array_equal(data[0], data[1]):
        return 1.0  # every arrangement gives the observed statistic (scipy agrees; this skips its resampling)

    def mean_diff(a, b, axis=-1):
        return a.mean(axis=axis) - b.mean(axis=axis)

    result = stats.permutation_test(data, mean_diff, permutation_type="samples", vectorized=True,
                                    n_resamples=RESAMPLES, alternative="two-sided",
                                    rng=np.random.default_rng(RNG_SEED))
    return float(min(1.0, result.pvalue))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error over the table's comparisons)."""
    from statsmodels.stats.multitest import multipletests

    if len(pvalues) == 0:
        return []
    return [float(p) for p in multipletests(np.asarray(pvalues, dtype=float), alpha=ALPHA, method="holm")[1]]


def _check_paired(data: tuple[np.ndarray, ...]) -> None:
    shapes = {sample.shape for sample in data}
    if len(shapes) != 1 or data[0].ndim != 1 or len(data[0]) == 0:
        raise ValueError(f"expected paired 1-d outcomes of one length, got shapes {[s.shape for s in data]}")
    if not all(np.isfinite(sample).all() for sample in data):
        raise ValueError("outcomes must be finite numbers")
