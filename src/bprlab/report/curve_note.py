"""The learning-curve table's reading, generated from its numbers (never written by hand): how each curve row's
model moves from the ablations' budget to the end of its longer run, and which way the budget leans.

The curve table declares where its rows stand at the budget (table file, `budget:`):

    budget:
      step: 75
      rows: {dpr-300-steps: abl-compression/dpr-flat, bpr-300-steps: abl-loss/bpr}
      gap: [dpr-300-steps, bpr-300-steps]    # may be left out where rows names two

Each curve row is compared with the named row of another table at the same seed (the curve runs' seed): test
top-k of the budget model against the longer run's. The two rows of `gap` are compared with each other: whether
their top-20 gap grows or shrinks after the budget step.

Where learning flattens is read from each row's validation average rank by a rule fixed here, not from the plot:
- the end level is the mean of the last END_POINTS validations;
- the noise is the standard deviation of one validation about the curve, estimated over the run's second half from
  second differences (x[i+1] - 2 x[i] + x[i-1], which a straight trend does not move: for independent noise of
  standard deviation s they have standard deviation s sqrt(6), and their median absolute value is 0.6745 of that);
- the curve is flat from the first validation after which every point stays within BAND noise standard deviations
  of the end level (a curve still falling in a straight line has little noise by this estimate and is not called
  flat; one still bending adds its curvature to the estimate, which widens the band);
- the share of learning done at the budget is the fall of the average rank from the first validation to the budget
  step, over its fall from the first validation to the end level, given only where that whole fall is larger than
  the band (else the curve did not fall beyond its noise, and a share of it means nothing).
The noise comes from a few correlated differences, so the flat step is approximate to a validation or two. One run
per row: a reading of where this run settles, not a test.
"""

from __future__ import annotations

from statistics import fmean, median

METRICS = ("top1", "top5", "top20")
END_POINTS = 3
BAND = 3.0
NORMAL_MAD = 0.6745  # the median absolute value of a standard normal variable


def declared_gap(budget: dict) -> list[str] | None:
    """The two curve rows whose top-20 gap is read: `budget.gap`, or the two rows where `budget.rows` names two."""
    rows = budget.get("rows") or {}
    return budget.get("gap") or (list(rows) if len(rows) == 2 else None)


def curve_note(table: dict, tables: list[dict]) -> str:
    budget = table.get("budget") or {}
    if not budget.get("rows"):
        return ""
    by_name = {t["run_name"]: {r["method"]: r for r in t["rows"]} for t in tables}
    step = budget["step"]
    lines, ends = [], {}
    for row in table["rows"]:
        where = budget["rows"].get(row["method"])
        if where is None:
            continue
        other_table, other_row = where.split("/", 1)
        seed = str(row["seeds"][0])
        early = ((by_name.get(other_table) or {}).get(other_row) or {}).get("per_seed", {}).get(seed)
        if not early:
            lines.append(f"- {row['method']}: {where} has no seed {seed}; no comparison.")
            continue
        late = {m: row.get(m) for m in METRICS}
        gains = " / ".join(f"{late[m] - early[m]:+.1f}" for m in METRICS)
        lines.append(f"- {row['method']} (seed {seed}) against {where} at {step} steps: test top-1 / 5 / 20 "
                     f"{gains} points.")
        ends[row["method"]] = (early, late)
    gap = declared_gap(budget)
    if gap and all(g in ends for g in gap):
        (a, (a_early, a_late)), (b, (b_early, b_late)) = ((g, ends[g]) for g in gap)
        early_gap, late_gap = a_early["top20"] - b_early["top20"], a_late["top20"] - b_late["top20"]
        leader = a if early_gap > 0 else b  # the row ahead at the budget
        grows = abs(late_gap) > abs(early_gap) and late_gap * early_gap > 0
        lean = f"the budget {'understates' if grows else 'overstates'} the lead of {leader}"
        lines.append(f"- top-20 gap {a} − {b}: {early_gap:+.1f} at {step} steps, {late_gap:+.1f} after the longer "
                     f"run: {lean} (one seed each: a reading of this run, not a test).")
    lines += [line for row in table["rows"] if (line := flattening(row, step))]
    return "Generated from the numbers (bprlab.report.curve_note):\n\n" + "\n".join(lines)


def flattening(row: dict, budget_step: int) -> str | None:
    """Where one row's validation average rank settles, by the module's rule; None without enough validations."""
    curve = row.get("curve") or {}
    steps, ranks = curve.get("step") or [], curve.get("val/avg_rank") or []
    if len(ranks) < 2 * END_POINTS:  # the second half needs at least three points
        return None
    end = fmean(ranks[-END_POINTS:])
    half = ranks[len(ranks) // 2:]
    noise = median(abs(c - 2 * b + a) for a, b, c in zip(half, half[1:], half[2:])) / (NORMAL_MAD * 6 ** 0.5)
    band = BAND * noise
    flat = next((s for i, s in enumerate(steps) if all(abs(r - end) <= band for r in ranks[i:])), None)
    where = (f"flat from step {flat}, {'at or before' if flat <= budget_step else 'after'} the budget"
             if flat is not None else "not yet flat at its last step")
    share = ""
    if budget_step in steps and abs(ranks[0] - end) > band:
        at = ranks[steps.index(budget_step)]
        share = (f"; at {budget_step} steps ({at:.1f}) {100 * (ranks[0] - at) / (ranks[0] - end):.0f}% of its fall "
                 f"from step {steps[0]} ({ranks[0]:.1f}) to the end level was done")
    return (f"- {row['method']}: validation average rank settles at {end:.1f} (mean of its last {END_POINTS} "
            f"validations, to step {steps[-1]}); {where} (every later point within ±{band:.1f} of it, {BAND:g} "
            f"times the noise of one validation, {noise:.2f}, from the second half's second differences){share}.")
