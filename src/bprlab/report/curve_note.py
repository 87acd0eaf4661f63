"""The learning-curve table's reading, generated from its numbers (never written by hand): how each curve row's
model moves from the ablations' budget to the end of its longer run, and which way the budget leans.

The curve table declares where its rows stand at the budget (table file, `budget:`):

    budget:
      step: 75
      rows: {dpr-300-steps: abl-compression/dpr-flat, bpr-300-steps: abl-loss/bpr}
      gap: [dpr-300-steps, bpr-300-steps]    # may be left out where rows names two

Each curve row is compared with the named row of another table at the same seed (the curve runs' seed): test
top-k of the budget model against the longer run's, and validation in the pool at the budget step against the
last step of the curve. The two rows of `gap` are compared with each other: whether their top-20 gap grows or
shrinks after the budget step.
"""

from __future__ import annotations

METRICS = ("top1", "top5", "top20")


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
        curve = row.get("curve") or {}
        val = ""
        if step in curve.get("step", []):
            i, j = curve["step"].index(step), len(curve["step"]) - 1
            val = (f"; validation average rank {curve['val/avg_rank'][i]:.1f} at step {step}, "
                   f"{curve['val/avg_rank'][j]:.1f} at step {curve['step'][j]}")
        lines.append(f"- {row['method']} (seed {seed}) against {where} at {step} steps: test top-1 / 5 / 20 "
                     f"{gains} points{val}.")
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
    return "Generated from the numbers (bprlab.report.curve_note):\n\n" + "\n".join(lines)
