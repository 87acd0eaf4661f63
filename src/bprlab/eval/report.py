"""Summary tables: one row per method, as JSON and as a markdown table."""

from __future__ import annotations

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


def markdown_table(rows: list[dict], columns: tuple[str, ...] | None = None) -> str:
    columns = columns or columns_for(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
