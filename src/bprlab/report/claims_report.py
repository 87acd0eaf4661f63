"""The claims as markdown: the primary readings (the study's family) with their tests, power and verdicts, then
the secondary readings (twins on another dataset, the same models), labelled as outside the family."""

from __future__ import annotations

from bprlab.eval.stage import PREFIX
from bprlab.report.stats import ALPHA

VERDICTS = """How to read it (docs/method.md#uncertainty): each claim is tested once, on its primary metric, with a
test whose null holds training noise and the question sample together (questions clustered: squad's paragraphs,
BEIR queries sharing a judged document): a t test on the variance of a crossed seeds x questions design,
se² = V_seeds + V_questions - V_interaction, with Satterthwaite df (approximate with three seeds). Holm's
correction runs over the {family} primary claims. A difference **holds** when the adjusted p < 0.05 and the effect has \
the claimed sign; it is **contradicted** only when the adjusted p < 0.05, the
interval at the family's level (1 - 0.05/{family}) lies wholly beyond the smallest effect that matters (the
claim's, else 1 point) on the other side, and the mechanism was exercised; otherwise **not shown**, and the MDE
column says the smallest effect this design detects with 80% power at α = 0.05/{family} (two-sided). "seeds for
target" is the number of seeds at which that MDE falls to the paper's effect (or the smallest effect that
matters); "none" where seeds alone cannot get there: with training noise averaged away the question sample
still limits the MDE to the figure given (more questions, not more seeds, would be needed). A closeness claim is a
non-inferiority test of its margin (one-sided p). The interval column is the 95% interval over seeds and
questions, unadjusted. For each side that searches through the Hamming stage, the design column gives hamming@l at the
largest l its table swept (the % of questions with an answer among the stage's l candidates, as measured): near
100, the candidate stage does not bind at that l."""


def fmt_p(test: dict, value: float | None) -> str:
    if value is None:
        return "-"
    flips = test.get("p_questions") or {}
    if test.get("test", "").startswith("sign flips") and flips.get("floor") and value <= flips["floor"] * 1.0000001:
        return f"≤ {flips['floor']:.1g}"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def _ci(pair) -> str:
    return "-" if not pair or pair[0] is None else f"[{pair[0]:+.1f}, {pair[1]:+.1f}]"


def _expects(reading: dict) -> str:
    if "margin" in reading:
        kind, value = next(iter(reading["margin"][reading["metric"]].items()))
        return f"miss ratio ≤ {value}" if kind == "miss_ratio" else f"Δ ≤ {value}"
    return f"Δ {'<' if reading['expect'] == 'lower' else '>'} 0"


def _effect(reading: dict) -> str:
    test = reading["test"]
    text = f"{test['effect']:+.1f}"
    if test.get("miss_ratio") is not None:
        upper = test.get("miss_ratio_upper")
        text += f" (miss ratio {test['miss_ratio']:.2f}" + (f", ≤ {upper:.2f}" if upper else "") + ")"
    return text


def _where(reading: dict) -> str:
    test = reading["test"]
    unit = test["cluster_unit"] + ("s" if test["cluster_unit"] in ("paragraph", "question") else "")
    noise = test["training_noise"].replace("measured", f"{test.get('seed_pairs', '')} seed pairs")
    parts = [noise, f"{test['clusters']:,} {unit}"]
    if reading.get("reading") and reading["metric"] == reading.get("declared_metric", reading["metric"]):
        parts.append(f"read at {reading['reading']}")  # declared for the primary metric, not a twin's other one
    stage = reading.get("stage")
    if stage:
        kept = ", ".join(f"{stage[m]:.1f} ({m})" for m in (reading["row"], reading["baseline"]) if m in stage)
        parts.append(f"{PREFIX}{stage['l']} = {kept}")
    if reading.get("exercised") is False:
        parts.append(f"mechanism not exercised: {reading.get('why', '')}".strip())
    return "; ".join(parts)


def claims_markdown(readings: list[dict]) -> str:
    primary = [r for r in readings if r["primary"]]
    family = next((r["family"] for r in primary if r.get("family")), 0)
    head = ["claim", "paper", "comparison", "expects", "design", "effect (points)", "95% CI, seeds + questions",
            "p", f"p (Holm, {family})", "MDE (80%)", "seeds for target", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in primary:
        test = r["test"]
        power = r.get("power") or {}
        target = power.get("target")
        seeds = "-" if not power else (str(power["seeds_needed"]) if power.get("seeds_needed")
                                       else f"none: questions limit the MDE to {power['floor']:.1f}")
        lines.append("| " + " | ".join([
            r["claim"], r.get("source", ""), f"{r['row']} − {r['baseline']}, {r['metric']} ({r['table']})",
            _expects(r), _where(r), _effect(r), _ci(test.get("ci")), fmt_p(test, r.get("p_claim")),
            fmt_p(test, r.get("p_holm")), "-" if not power else f"{power['mde']:.1f}",
            f"{seeds} (for {target:.2g})" if power and target else seeds, f"**{r['verdict']}**"]) + " |")
    secondary = [r for r in readings if not r["primary"] and r["test"]]
    parts = ["\n".join(lines), VERDICTS.format(family=family)]
    if secondary:
        rows = ["| claim | comparison | design | effect (points) | 95% CI, seeds + questions | p (unadjusted) | "
                "reading |", "|---|---|---|---|---|---|---|"]
        for r in secondary:
            rows.append("| " + " | ".join([
                r["claim"], f"{r['row']} − {r['baseline']}, {r['metric']} ({r['table']})", _where(r), _effect(r),
                _ci(r["test"].get("ci")), fmt_p(r["test"], r.get("p_claim")), r["verdict"]]) + " |")
        parts += ["Secondary readings: the same claims on the twin tables (the same trained models scored on another "
                  f"dataset). They are outside the family and carry no verdict; p is unadjusted (α = {ALPHA}).",
                  "\n".join(rows)]
    return "\n\n".join(parts)
