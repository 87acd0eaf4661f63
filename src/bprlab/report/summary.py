"""A table's summary from its unit records: summary.json (every seed's numbers, intervals, tests), table.json,
summary.md and plots, in the table's output folder."""

from __future__ import annotations

from pathlib import Path

from bprlab.artifacts import write_json, write_text
from bprlab.report.aggregate import aggregate_row, compare_rows
from bprlab.report.markdown import comparison_table, interval_legend, markdown_table, stage_table
from bprlab.runs import RunPaths


def table_seeds(records: dict[str, list[dict]]) -> int:
    return len({u["seed"] for us in records.values() for u in us})


def summarize(table, records: dict[str, list[dict]], units, recorded: list[dict] | None = None) -> list[dict]:
    """One aggregated row per table row, in table order, with its tests against the baseline and, where its run
    logged validations during training, its learning curve (from the run's log; where the run folder is gone,
    the curve `recorded` in the table's earlier summary.json for the same run)."""
    from bprlab.report.curves import read_curve

    seeds = table_seeds(records)
    tested = compare_rows(records, table.baseline, seeds) if table.baseline else {}
    earlier = {(r.get("method"), r.get("run")): r.get("curve") for r in recorded or [] if isinstance(r, dict)}
    first_cfg = {}
    for unit in units:
        first_cfg.setdefault(unit.row.method, unit.cfg)
    rows = []
    for row in table.rows:
        summary = aggregate_row(row.method, records[row.method], seeds)
        summary.update(family=row.family, paper=row.paper, experiment=str(row.experiment), overrides=row.overrides,
                       baseline=table.baseline, vs_baseline=tested.get(row.method, {}))
        curve = read_curve(RunPaths(first_cfg[row.method]).root) or earlier.get((row.method, summary["run"]))
        if curve:
            summary["curve"] = curve
        rows.append(summary)
    return rows


def claim_tests(table, records: dict[str, list[dict]]) -> list[dict | None]:
    """Each claim's test on this table's records (bprlab.report.claims), in the order of table.claims."""
    from bprlab.report.claims import claim_test

    seeds = table_seeds(records)
    return [claim_test(claim, records[claim["row"]], records[claim.get("baseline", table.baseline)], seeds)
            for claim in table.claims]


def table_meta(table, records: dict[str, list[dict]], command: str) -> dict:
    units = [u for us in records.values() for u in us]
    return {"table": table.name, "dataset": table.dataset, "note": table.note, "command": command,
            "claim_tests": claim_tests(table, records) if table.claims else [],
            "baseline": table.baseline, "report": table.report, "claims": table.claims, "budget": table.budget,
            "seeds": sorted({u["seed"] for u in units}), "units": len(units),
            # wall time of the units this table ran, each counted once (a model shared with an earlier row or
            # table is counted where it was trained)
            "seconds": sum(u.get("seconds") or 0.0 for u in units),
            "cpu_seconds": sum(u.get("cpu_seconds") or 0.0 for u in units)}


def write_summary(table, records: dict[str, list[dict]], units, folder: Path, command: str) -> list[dict]:
    from bprlab.artifacts import read_json
    from bprlab.report.curves import plot_curves
    from bprlab.report.plots import table_plots

    recorded = read_json(folder / "summary.json") if (folder / "summary.json").is_file() else None
    rows = summarize(table, records, units, recorded if isinstance(recorded, list) else None)
    meta = table_meta(table, records, command)
    name = folder.name
    write_json(folder / "summary.json", rows)
    write_json(folder / "table.json", {**meta, "run_name": name})
    plots = table_plots({"table": table.name, "dataset": table.dataset, "run_name": name, "rows": rows},
                        folder / "plots")
    curves = plot_curves({r["method"]: r["curve"] for r in rows if r.get("curve")}, name,
                         folder / "plots" / f"{name}_learning_curves.png")
    plots += [curves] if curves else []
    images = "".join(f"\n![{p.stem}](plots/{p.name})" for p in plots)
    parts = [f"# {name}", table.note.strip(), f"`{command}`", markdown_table(rows), interval_legend(rows),
             stage_table(rows)]
    if table.baseline:
        parts.append(comparison_table(rows, table.baseline))
    write_text(folder / "summary.md", "\n\n".join(p for p in parts if p) + f"\n{images}\n")
    return rows
