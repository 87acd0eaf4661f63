"""Summary tables: one row per method, as JSON and as a markdown table."""

from __future__ import annotations

from bprlab.eval.stage import PREFIX
from bprlab.report.aggregate import BOTH, QUESTIONS_ONLY, stage_means
from bprlab.report.claims_report import fmt_p

SUMMARY_COLUMNS = ("method", "code_bits", "bytes_per_passage", "index_bytes", "top1", "top5", "top20", "top100",
                   "ms_per_query")
RELEVANCE_COLUMNS = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "recall@1000")  # datasets with qrels
EXTRA_COLUMNS = ("rescore_bytes_per_passage", "scanned_fraction", "search_batch_size", "num_passages",
                 "num_questions", "search", "dataset", "data_path", "checkpoint", "pooling", "run")


def summary_row(method: str, metrics: dict, run: str, family: str | None = None) -> dict:
    """One table row; `family` names a method drawn as one line over its budgets (e.g. dpr-pq at 24..192 B)."""
    row = {"method": method, **{k: metrics.get(k) for k in SUMMARY_COLUMNS[1:]}}
    row.update({k: metrics[k] for k in RELEVANCE_COLUMNS if k in metrics})
    row.update({k: metrics.get(k) for k in EXTRA_COLUMNS if k != "run"})
    row["family"] = family
    row["run"] = run
    return row


def columns_for(rows: list[dict]) -> tuple[str, ...]:
    """The summary columns, with answer-string top-k only where some row has it and qrels metrics where any does."""
    has = lambda key: any(row.get(key) is not None for row in rows)  # noqa: E731
    columns = [c for c in SUMMARY_COLUMNS if not c.startswith("top") or has(c)]
    columns[columns.index("ms_per_query"):columns.index("ms_per_query")] = [c for c in RELEVANCE_COLUMNS if has(c)]
    if has("rescore_bytes_per_passage") and any(row.get("rescore_bytes_per_passage") for row in rows):
        columns.insert(columns.index("bytes_per_passage") + 1, "rescore_bytes_per_passage")
    return (*columns, "scanned_fraction")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def metric_cell(row: dict, column: str) -> str:
    """A metric with its interval where the row has one: `90.7 ± 0.6` (seeds and questions together),
    `90.2 (± 1.6)` (the question sample only: one seed, or an untrained row); `*` where the row differs from the
    table's baseline after Holm's correction over the table (exploratory)."""
    interval = (row.get("intervals") or {}).get(column)
    if row.get(column) is None or not interval:
        return _cell(row.get(column))
    text = f"{row[column]:.1f}"
    if interval.get("low") is not None:
        half = (interval["high"] - interval["low"]) / 2
        text += f" ± {half:.1f}" if interval.get("over") in ("seeds", BOTH) else f" (± {half:.1f})"
    if (row.get("vs_baseline") or {}).get(column, {}).get("significant"):
        text += "*"
    return text


def markdown_table(rows: list[dict], columns: tuple[str, ...] | None = None) -> str:
    columns = columns or columns_for(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(metric_cell(row, c) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def interval_legend(rows: list[dict]) -> str:
    """What the ± in a table means, for the kinds of interval its rows carry."""
    kinds = {i.get("over") for row in rows for i in (row.get("intervals") or {}).values() if i.get("low") is not None}
    seeds = sorted({len(row.get("seeds") or []) for row in rows if len(row.get("seeds") or []) > 1})
    unit = next((row.get("cluster_unit") for row in rows if row.get("cluster_unit")), "question")
    clustered = f"questions resampled by {unit}" if unit != "question" else "questions resampled one by one"
    parts = []
    if kinds & {BOTH, "seeds"}:
        parts.append(f"`± x`: half-width of the 95% interval over seeds and questions ({'/'.join(map(str, seeds))} "
                     f"seeds; crossed seeds x questions variance, Satterthwaite df; {clustered})")
    if kinds & {QUESTIONS_ONLY, "questions"}:
        parts.append("`(± x)`: half-width of the 95% cluster bootstrap interval, the question sample only "
                     f"({clustered}; one seed or an untrained row: no training noise in it)")
    if any(row.get("vs_baseline") for row in rows):
        parts.append("`*`: differs from the baseline row, exploratory: the test of the comparison table below, "
                     "Holm-corrected over this table's comparisons, p < 0.05 (the claims are tested as their own "
                     "family)")
    return "; ".join(parts) + "." if parts else ""


def _signed(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def _ci(pair) -> str:
    return "-" if not pair or pair[0] is None else f"[{pair[0]:+.1f}, {pair[1]:+.1f}]"


def comparison_table(rows: list[dict], baseline: str) -> str:
    """Every row against the baseline, metric by metric: effect in points with its intervals and p-values
    (exploratory: Holm over this table's comparisons)."""
    head = ["row", "metric", baseline, "row value", "Δ (points)", "95% CI, seeds + questions", "95% CI, seeds only",
            "95% CI, questions only", "test", "p", "p, questions only", "p (Holm, table)", ""]
    lines = [f"Against `{baseline}`, exploratory (per-seed differences and per-question outcomes averaged over "
             "seeds; bprlab.report.stats; Holm over this table's comparisons):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        for metric, c in (row.get("vs_baseline") or {}).items():
            flips = c.get("p_questions") or {}
            lines.append("| " + " | ".join([
                row["method"], metric, f"{c['baseline_value']:.1f}", f"{c['value']:.1f}", _signed(c["effect"]),
                _ci(c.get("ci")), _ci(c.get("ci_seeds")), _ci(c.get("ci_questions")), c.get("test", "-"),
                fmt_p(c, c["p"]), fmt_p({**c, "test": "sign flips"}, flips.get("p")) if flips else "-",
                fmt_p(c, c.get("p_holm")), "significant" if c.get("significant") else ""]) + " |")
    return "\n".join(lines)


def stage_table(rows: list[dict]) -> str:
    """The candidate stage of the rows that have one (bprlab.eval.stage): % of questions with an answer among the
    first l Hamming candidates, for each l, with intervals as in the main table."""
    stages = [(row, stage_means(row)) for row in rows]
    staged = [row for row, means in stages if means]
    if not staged:
        return ""
    kept = sorted({n for _, means in stages for n in means})
    columns = ("method", *(f"{PREFIX}{n}" for n in kept))
    lines = ["Candidate stage (`hamming@l`: % of questions with an answer among the first l Hamming candidates; the "
             "recall of the stage at l and the top-l of the Hamming order alone):", "",
             "| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(metric_cell(row, c) for c in columns) + " |" for row in staged]
    return "\n".join(lines)
