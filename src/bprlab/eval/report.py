"""Summary tables: one row per method, as JSON and as a markdown table."""

from __future__ import annotations

SUMMARY_COLUMNS = ("method", "code_bits", "bytes_per_passage", "index_bytes", "top1", "top5", "top20", "top100",
                   "ms_per_query")
EXTRA_COLUMNS = ("scanned_fraction", "search_batch_size", "num_passages", "num_questions", "search", "run")


def summary_row(method: str, metrics: dict, run: str) -> dict:
    row = {"method": method, **{k: metrics.get(k) for k in SUMMARY_COLUMNS[1:]}}
    row.update({k: metrics.get(k) for k in EXTRA_COLUMNS if k != "run"})
    row["run"] = run
    return row


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(rows: list[dict], columns=SUMMARY_COLUMNS + ("scanned_fraction",)) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
