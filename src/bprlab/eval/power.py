"""What a design could have shown: the minimum detectable effect at 80% power and the seeds a target effect needs
(docs/method.md#uncertainty).

For the combined test of bprlab.eval.stats (se² = s²_seeds / S + s²_questions / Q, Welch-Satterthwaite df), a
two-sided test at level alpha detects an effect delta with probability `power` when

    delta >= (t_{1 - alpha/2, df} + t_{power, df}) * se        (the usual normal-theory approximation, in t)

That delta is the MDE. More seeds shrink only the first term: with S' seeds se(S')² = s²_seeds / S' +
s²_questions / Q, so the seeds a target effect needs is the smallest S' whose MDE is at most the target, and none
exists when the question term alone is too large (more questions, not seeds, would be needed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bprlab.eval.stats import ALPHA, Combined

POWER = 0.80
MAX_SEEDS = 1000


@dataclass(frozen=True)
class Power:
    mde: float  # points
    alpha: float
    power: float
    seeds_needed: int | None  # for `target`; None: not reachable with seeds alone (or no target)
    target: float | None
    floor: float  # the MDE with training noise averaged away (infinitely many seeds): the question sample's limit

    def as_dict(self) -> dict:
        return asdict(self)


def mde(var_seeds_total: float, var_questions: float, seeds: int, clusters: int, alpha: float = ALPHA,
        power: float = POWER) -> float:
    """MDE for `seeds` seeds, from s²_seeds (the variance of one seed's difference, not divided by S)."""
    from scipy import stats

    var_s = var_seeds_total / seeds
    se2 = var_s + var_questions
    if se2 == 0.0:
        return 0.0
    terms = ((var_s ** 2 / (seeds - 1) if var_s else 0.0)
             + (var_questions ** 2 / (clusters - 1) if clusters >= 2 else 0.0))
    df = se2 ** 2 / terms if terms > 0 else float("inf")
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se2 ** 0.5)


def design_power(result: Combined, target: float | None = None, alpha: float = ALPHA,
                 power: float = POWER) -> Power:
    """The MDE of this comparison's design and the seeds `target` (points, magnitude) would need. Needs the
    training noise measured: at least two seeds on a trained side."""
    if result.seeds < 2:
        raise ValueError("an MDE needs the training noise measured: at least 2 seeds (this comparison has "
                         f"{result.seeds})")
    per_seed = result.var_seeds * result.seeds
    here = mde(per_seed, result.var_questions, result.seeds, result.clusters, alpha, power)
    needed = None
    if target is not None and target > 0:
        needed = next((s for s in range(2, MAX_SEEDS + 1)
                       if mde(per_seed, result.var_questions, s, result.clusters, alpha, power) <= abs(target)), None)
    floor = mde(0.0, result.var_questions, 2, result.clusters, alpha, power) if result.var_questions else 0.0
    return Power(here, alpha, power, needed, target, floor)
