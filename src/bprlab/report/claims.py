"""The paper's claims as one declared family: each tested once on its primary metric with training noise in the
test, Holm over the study's claims, what the design could have shown, and a verdict (docs/method.md#uncertainty).

A table states its claims (table files, `claims:`), each naming a row compared with the table's baseline:

    - claim: reranking the Hamming candidates with the continuous question helps
      source: "§4"
      row: bpr-no-rerank
      metric: top20            # the primary metric (read on the table's own dataset)
      qrels_metric: ndcg@10    # read on a qrels-judged twin (a BEIR folder): secondary; default ndcg@10
      expect: lower            # lower | higher: a difference, row minus baseline
      smallest_effect: 1.0     # points: the smallest difference that matters (default SMALLEST_EFFECT)
      paper_effect: 1.4        # points, optional: the paper's effect, for the seeds that would detect it
      exercised: false         # optional: the mechanism the claim is about does not act here ...
      why: "l = 1000 covers 28% of the corpus"   # ... and why
      baseline: gamma=25       # optional: compared with this row instead of the table's baseline
      reading: "l = k = 20, where the stage binds"   # optional: where the mechanism is read, and why there

    - claim: BPR is close to DPR
      row: dpr-flat
      metric: top20
      margin: {top20: {miss_ratio: 1.10}, ndcg@10: {miss_ratio: 1.10}}   # or {points: 2.5}, per metric named

A closeness claim (`margin`) is a non-inferiority test: the baseline's shortfall (100 - value) is at most
miss_ratio times the row's (or the row is ahead by at most `points`), one-sided.

Verdicts (primary readings; Holm over all of them at ALPHA):
- one seed on a trained side: "one seed: no verdict" (training noise unmeasured);
- difference: "holds" when the adjusted p < ALPHA and the effect has the expected sign; "contradicted" when the
  adjusted p < ALPHA, the effect has the other sign, the whole interval at the family's level (1 - ALPHA/m) lies
  beyond the smallest effect that matters, and the mechanism was exercised; with the other sign but not those,
  "against the claim" with the reason; otherwise "not shown" (with the MDE beside it);
- closeness: "holds" when the adjusted non-inferiority p < ALPHA; "contradicted" when the opposite one-sided test
  (outside the margin) passes at ALPHA / m; else "not shown".
"""

from __future__ import annotations

from bprlab.errors import ConfigError
from bprlab.report.aggregate import compare, stage_means
from bprlab.report.power import design_power
from bprlab.report.stats import ALPHA, Combined, holm

EXPECTATIONS = ("lower", "higher")
CLAIM_KEYS = {"claim", "source", "row", "metric", "qrels_metric", "expect", "margin", "smallest_effect",
              "paper_effect", "exercised", "why", "baseline", "reading"}
MARGIN_KINDS = ("miss_ratio", "points")
QRELS_METRIC = "ndcg@10"  # the metric a claim is read on where a table has qrels and no answer strings
SMALLEST_EFFECT = 1.0  # points: a difference smaller than this is not one a reader would act on


def check_claims(table_path, claims: list, methods: list[str], baseline: str | None, seeds: int = 1) -> None:
    """A table's claims are well formed and name its rows (checked when the table is read)."""
    for i, claim in enumerate(claims):
        where = f"{table_path}: claims[{i}]"
        if not isinstance(claim, dict) or not {"claim", "row"} <= set(claim):
            raise ConfigError(f"{where}: expected claim, row, metric, expect (lower|higher) or margin")
        unknown = set(claim) - CLAIM_KEYS
        if unknown:
            hint = " (a closeness claim now states `margin: {metric: {miss_ratio: r} | {points: m}}`)" \
                if "at_most" in unknown else ""
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}{hint}")
        if not isinstance(claim.get("metric"), str) or not claim["metric"]:
            raise ConfigError(f"{where}: a claim names its primary metric (metric: top20, or the qrels metric "
                              "it is read on)")
        against = claim.get("baseline", baseline)
        if against is None:
            raise ConfigError(f"{where}: a claim compares a row with the table's baseline; the table names none")
        if against not in methods:
            raise ConfigError(f"{where}: baseline {against!r} is not a row of this table")
        if claim["row"] not in methods or claim["row"] == against:
            raise ConfigError(f"{where}: row {claim['row']!r} is not a row of this table other than its baseline")
        if ("expect" in claim) == ("margin" in claim) or claim.get("expect", "lower") not in EXPECTATIONS:
            raise ConfigError(f"{where}: give either expect: lower|higher or margin: {{metric: ...}}")
        if "margin" in claim:
            _check_margin(where, claim)
        for key in ("smallest_effect", "paper_effect"):
            if key in claim and not (isinstance(claim[key], (int, float)) and claim[key] > 0):
                raise ConfigError(f"{where}: {key} is a positive number of points, got {claim[key]!r}")
        if "paper_effect" in claim and seeds < 2:
            raise ConfigError(f"{where}: paper_effect asks how many seeds would detect it, which needs the "
                              "training noise measured: run the table over >= 2 seeds")


def _check_margin(where: str, claim: dict) -> None:
    margin, named = claim["margin"], {claim["metric"], claim.get("qrels_metric", QRELS_METRIC)}
    if not isinstance(margin, dict) or claim["metric"] not in margin:
        raise ConfigError(f"{where}: margin gives one per metric the claim names, starting with its primary "
                          f"metric {claim['metric']!r}")
    for metric, value in margin.items():
        if metric not in named:
            raise ConfigError(f"{where}: margin for {metric!r}, which the claim does not name (it names "
                              f"{sorted(named)})")
        if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in MARGIN_KINDS
                and isinstance(next(iter(value.values())), (int, float)) and next(iter(value.values())) > 0):
            raise ConfigError(f"{where}: margin.{metric} is {{miss_ratio: r}} or {{points: m}} (positive)")


def reading_metric(claim: dict, available: set[str]) -> str | None:
    """The metric a table answers the claim on: its primary metric where the table has it, else its qrels
    metric (a BEIR twin)."""
    if claim["metric"] in available:
        return claim["metric"]
    qrels = claim.get("qrels_metric", QRELS_METRIC)
    return qrels if qrels in available else None


def claim_test(claim: dict, units: list[dict], base_units: list[dict], table_seeds: int | None) -> dict | None:
    """One claim's test on a table's unit records: the comparison of bprlab.report.aggregate on the metric the table
    answers it on, and for a closeness claim the non-inferiority test of its margin."""
    available = {k for k, v in units[0]["metrics"].items() if isinstance(v, (int, float))}
    metric = reading_metric(claim, available)
    if metric is None or ("margin" in claim and metric not in claim["margin"]):
        return None  # not answered here (a closeness claim is read only where it states a margin)
    result = compare(metric, units, base_units, table_seeds)
    if result is None:
        return None
    result["metric"] = metric
    margin = (claim.get("margin") or {}).get(metric)
    if margin is not None and result["p"] is not None:
        kind, value = next(iter(margin.items()))
        contrast = _combined(_contrast(metric, units, base_units, table_seeds, kind, value))
        result["margin"] = {kind: value}
        result["noninferiority"] = contrast.as_dict()  # the contrast's test: below 0 is within the margin
        result["p_noninferiority"] = contrast.p_below(0.0)
        result["p_outside_margin"] = contrast.p_above(0.0)
        base_miss, row_miss = 100.0 - result["baseline_value"], 100.0 - result["value"]
        result["miss_ratio"] = base_miss / row_miss if row_miss > 0 else None
        # the contrast's distance from the margin if the baseline were as good as the row: what power is for
        result["equal_distance"] = (value - 1.0) * row_miss if kind == "miss_ratio" else float(value)
        if kind == "miss_ratio":
            result["miss_ratio_upper"] = _ratio_upper(metric, units, base_units, table_seeds)
    return result


def _contrast(metric, units, base_units, table_seeds, kind: str, value: float) -> dict:
    if kind == "points":  # row - baseline - m < 0
        return compare(metric, units, base_units, table_seeds, offset=-float(value))
    # (100 - baseline) - r (100 - row) < 0  <=>  r * row - baseline + 100 (1 - r) < 0
    return compare(metric, units, base_units, table_seeds, weight=float(value), offset=100.0 * (1 - float(value)))


def _combined(result: dict) -> Combined:
    return Combined(result["effect"], result["se"], result["df"], result["var_seeds"], result["var_questions"],
                    result.get("var_interaction", 0.0), result.get("seed_pairs", result.get("seeds", 1)),
                    result["clusters"])


def _ratio_upper(metric, units, base_units, table_seeds) -> float | None:
    """The one-sided 95% upper bound of the miss ratio: the smallest r whose non-inferiority test passes at 0.05."""
    passes = lambda r: _combined(_contrast(metric, units, base_units, table_seeds, "miss_ratio", r)).p_below(0.0) \
        < ALPHA  # noqa: E731
    low, high = 0.01, 100.0
    if not passes(high) or passes(low):
        return None  # outside what a bound can say here
    for _ in range(40):
        mid = (low * high) ** 0.5
        low, high = (low, mid) if passes(mid) else (mid, high)
    return high


def claim_rows(tables: list[dict], order: tuple[str, ...] = ()) -> list[dict]:
    """Every claim reading of every table: tables in `order` (names; a twin `<name>-...` right after it), then the
    rest. A claim's primary reading is on its primary metric (the first table that answers it there; else its
    first qrels reading); the others are secondary. Holm runs over the primary readings (the study's family)."""
    def rank(table: dict) -> tuple:
        name = table["run_name"]
        at = next((i for i, base in enumerate(order) if name == base or name.startswith(base + "-")), len(order))
        return at, name

    out, groups = [], {}
    for table in sorted(tables, key=rank):
        at = rank(table)[0]
        tests = table.get("claim_tests") or [None] * len(table.get("claims") or [])
        for claim, test in zip(table.get("claims") or [], tests):
            against = claim.get("baseline", table.get("baseline"))
            reading = {**claim, "table": table["run_name"], "baseline": against, "test": test,
                       "declared_metric": claim["metric"], "metric": (test or {}).get("metric", claim["metric"]),
                       "stage": stage_coverage(table.get("rows") or [], (claim["row"], against)),
                       "primary": False}
            out.append(reading)
            groups.setdefault((at if at < len(order) else table["run_name"], claim["claim"]), []).append(reading)
    for readings in groups.values():
        tested = [r for r in readings if r["test"] is not None]
        chosen = next((r for r in tested if r["metric"] == r["declared_metric"]), tested[0] if tested else None)
        if chosen is not None:
            chosen["primary"] = True
    _judge(out)
    return out


def stage_coverage(rows: list[dict], methods: tuple) -> dict | None:
    """How much the Hamming stage keeps at the largest l swept for every one of `methods` that searches through
    the stage (a float or PQ row has none): {"l": l, method: hamming@l mean}, None when none does. Read from the
    table's own rows, so the figure a claim is printed with is the one its table measured."""
    swept = {row["method"]: means for row in rows
             if row.get("method") in methods and (means := stage_means(row))}
    common = set.intersection(*(set(m) for m in swept.values())) if swept else set()
    if not common:
        return None
    l = max(common)
    return {"l": l, **{method: means[l] for method, means in swept.items()}}


def _judge(readings: list[dict]) -> None:
    primary = [r for r in readings if r["primary"] and r["test"]["training_noise"] != "one seed"
               and r["test"]["p"] is not None]
    adjusted = holm([_claim_p(r) for r in primary])
    family = len(primary)
    for reading, p in zip(primary, adjusted):
        reading["p_holm"] = p
        reading["family"] = family
    for reading in readings:
        test = reading["test"]
        if test is None:
            reading["verdict"] = "not run"
            continue
        if test["p"] is None:
            reading["verdict"] = "not estimable: " + test["test"]
            continue
        reading["p_claim"] = _claim_p(reading)
        if test["training_noise"] == "measured":
            alpha = ALPHA / family if reading["primary"] and family else ALPHA
            reading["power"] = _power(reading, alpha).as_dict()
        if not reading["primary"]:
            reading["verdict"] = "secondary: " + _direction(reading)
        elif test["training_noise"] == "one seed":
            reading["verdict"] = "one seed: no verdict"
        else:
            reading["verdict"] = verdict(reading, test, reading["p_holm"], family)


def _claim_p(reading: dict) -> float:
    test = reading["test"]
    return test["p_noninferiority"] if "margin" in reading else test["p"]


def _power(reading: dict, alpha: float):
    """A difference: the two-sided MDE and the seeds for the paper's effect (else the smallest that matters). A
    closeness claim: the one-sided MDE of its non-inferiority contrast (how far inside the margin the truth must
    lie) and the seeds that would show it were the baseline as good as the row."""
    test = reading["test"]
    if "margin" in reading:
        return design_power(_combined(test["noninferiority"]), test["equal_distance"], alpha, one_sided=True)
    target = reading.get("paper_effect", reading.get("smallest_effect", SMALLEST_EFFECT))
    return design_power(_combined(test), float(target), alpha)


def _direction(reading: dict) -> str:
    test = reading["test"]
    if "margin" in reading:
        return "within the margin" if test["p_noninferiority"] < ALPHA else "not shown within the margin"
    sign = -1.0 if reading["expect"] == "lower" else 1.0
    return "agrees in sign" if sign * test["effect"] > 0 else "disagrees in sign"


def verdict(claim: dict, test: dict, p_adjusted: float, family: int = 1) -> str:
    """The verdict of a primary reading (module docstring)."""
    if "margin" in claim:
        if p_adjusted < ALPHA:
            return "holds"
        if test["p_outside_margin"] < ALPHA / max(family, 1):
            return "contradicted"
        return "not shown"
    sign = -1.0 if claim["expect"] == "lower" else 1.0
    if p_adjusted >= ALPHA:
        return "not shown"
    if sign * test["effect"] > 0:
        return "holds"
    if claim.get("exercised") is False:
        return "against the claim; mechanism not exercised"
    low, high = _combined(test).interval(1 - ALPHA / max(family, 1))
    nearest = high if sign > 0 else low  # the interval's bound nearest the claimed side
    if -sign * nearest >= float(claim.get("smallest_effect", SMALLEST_EFFECT)):
        return "contradicted"
    return "against the claim, not shown beyond the smallest effect that matters"
