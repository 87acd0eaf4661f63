"""What a design could have shown: the minimum detectable effect at 80% power and the seeds a target effect needs
(docs/method.md#uncertainty).

For the combined test of bprlab.report.stats (se² = sigma²_a / S + sigma²_b / Q + sigma²_e / (S Q), Satterthwaite
df), a test at level alpha detects an effect delta with probability `power` when

    delta >= (t_{1 - alpha/2, df} + t_{power, df}) * se        (two-sided; t_{1 - alpha, df} for a one-sided test)

(the usual normal-theory approximation, in t). That delta is the MDE. More seeds S' shrink the training term and
the seed-by-question term: the pieces V_seeds and V_interaction scale with S / S' and V_questions keeps its
question part, and se(S')² and its df follow from them by the same rule as the test (at S' = S the design's own se
and df). The seeds a target effect needs is the
smallest S' whose MDE is at most the target; none exists when the question term alone is too large (more
questions, not seeds, would be needed): the MDE at S' -> infinity is the design's floor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bprlab.report.stats import ALPHA, Combined

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
    one_sided: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def mde(result: Combined, seeds: int | None = None, alpha: float = ALPHA, power: float = POWER,
        one_sided: bool = False) -> float:
    """The MDE of `result`'s design run with `seeds` seeds (default: as run, which gives back its own se and df;
    0 stands for infinitely many)."""
    from scipy import stats

    se2, df = projected(result, result.seeds if seeds is None else seeds)
    if se2 <= 0.0:
        return 0.0
    level = 1 - alpha if one_sided else 1 - alpha / 2
    return float((stats.t.ppf(level, df) + stats.t.ppf(power, df)) * se2 ** 0.5)


def projected(result: Combined, seeds: int) -> tuple[float, float]:
    """se² and df of the same design with `seeds` seeds (bprlab.report.stats.combined's rule on the projected
    pieces: V_seeds and V_interaction scale with 1 / seeds, V_questions keeps its b part and scales its e part)."""
    if result.seeds < 2:
        return result.se ** 2, result.df
    scale = 0.0 if seeds == 0 else result.seeds / seeds
    v_inter = result.var_interaction * scale
    v_seeds = (result.var_seeds + result.var_interaction) * scale
    v_questions = result.var_questions + v_inter
    se2 = v_seeds + v_questions - v_inter
    if seeds == 0:
        return max(result.var_questions, 0.0), float(result.clusters - 1)
    terms = (v_seeds ** 2 / (seeds - 1) + v_questions ** 2 / (result.clusters - 1)
             + v_inter ** 2 / ((seeds - 1) * (result.clusters - 1)))
    if se2 > 0 and terms > 0:
        return se2, se2 ** 2 / terms
    return max(v_seeds, v_questions), float(seeds - 1)


def design_power(result: Combined, target: float | None = None, alpha: float = ALPHA, power: float = POWER,
                 one_sided: bool = False) -> Power:
    """The MDE of this comparison's design and the seeds `target` (points, magnitude) would need. Needs the
    training noise measured: at least two seeds on a trained side."""
    if result.seeds < 2:
        raise ValueError("an MDE needs the training noise measured: at least 2 seeds (this comparison has "
                         f"{result.seeds})")
    here = mde(result, None, alpha, power, one_sided)
    needed = None
    if target is not None and target > 0:
        needed = next((s for s in range(2, MAX_SEEDS + 1) if mde(result, s, alpha, power, one_sided) <= target), None)
    return Power(here, alpha, power, needed, target, mde(result, 0, alpha, power, one_sided), one_sided)
