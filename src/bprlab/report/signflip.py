"""The exact sign-flip test over clusters (docs/method.md#uncertainty): what the question sample alone says about a
comparison, on integer outcomes so that no tie is dropped. Where the sum of |differences| is too large to count
exactly, the test draws sign flips and reports its floor, 1 / (R + 1). Randomness is seeded (stats.RNG_SEED)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from bprlab.report.stats import RESAMPLES, RNG_SEED, cluster_labels

RESAMPLES_NEAR_ALPHA = 200_000  # sign-flip draws again where a drawn p lands near ALPHA
NEAR_ALPHA = (0.01, 0.2)
EXACT_SUPPORT = 100_000  # an exact sign-flip distribution over at most 2 * this + 1 integer values


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
