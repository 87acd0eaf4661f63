"""Plots for tables and RESULTS.md. Categorical methods are bars or points, never joined by lines; a line joins
only the rows of one `family` (one method at several budgets, e.g. PQ at 24/48/96/192 bytes). Methods are
named in a legend outside the axes, so labels never overlap the points or each other."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from bprlab.artifacts import atomic_path
from bprlab.eval.stage import PREFIX
from bprlab.report.aggregate import stage_means

MARKERS = "osD^v<>pPX*h"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def accuracy_metric(rows: list[dict]) -> str | None:
    """Answer-string top-20 where the rows have it, else nDCG@10 (datasets judged by qrels)."""
    for metric in ("top20", "ndcg@10"):
        if any(row.get(metric) is not None for row in rows):
            return metric
    return None


def _groups(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row.get("family") or row["method"]].append(row)
    return groups


def held_bytes(row: dict) -> int:
    """What a passage costs in memory: its code, plus the float vector a rescoring row keeps beside it."""
    return row["bytes_per_passage"] + (row.get("rescore_bytes_per_passage") or 0)


def frontier(rows: list[dict], title: str, path: Path) -> Path | None:
    """Two panels: accuracy vs bytes held per passage (log x; a rescoring row counts its kept floats) and
    accuracy vs ms/query (log x)."""
    metric = accuracy_metric(rows)
    rows = [r for r in rows if metric and r.get(metric) is not None and r.get("bytes_per_passage")]
    if not rows:
        return None
    plt = pyplot()
    fig, (memory, speed) = plt.subplots(1, 2, figsize=(12, 4.6))
    for i, (name, group) in enumerate(sorted(_groups(rows).items())):
        group = sorted(group, key=held_bytes)
        style = {"marker": MARKERS[i % len(MARKERS)], "color": plt.get_cmap("tab20")(i % 20), "label": name}
        # only a family is joined (a row of another table named like the family, e.g. main's dpr-pq, joins it)
        line = "-" if len(group) > 1 and any(r.get("family") for r in group) else "none"
        memory.plot([held_bytes(r) for r in group], [r[metric] for r in group], linestyle=line, **style)
        timed = [r for r in group if r.get("ms_per_query")]
        if timed:
            speed.plot([r["ms_per_query"] for r in timed], [r[metric] for r in timed], linestyle=line, **style)
    from matplotlib.ticker import NullFormatter

    memory.set_xscale("log", base=2)
    speed.set_xscale("log")
    speed.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log axis collide
    memory.set(xlabel="bytes held per passage, kept floats included (log scale)", ylabel=f"{metric} (%)",
               title=f"{title}: memory")
    speed.set(xlabel="ms per query, search only (log scale)", ylabel=f"{metric} (%)", title=f"{title}: speed")
    for ax in (memory, speed):
        ax.grid(alpha=0.3)
    handles, labels = memory.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    out = save(fig, path)
    plt.close(fig)
    return out


def bars(rows: list[dict], title: str, path: Path) -> Path | None:
    """Grouped bars: top-1/20/100 (or nDCG@10, recall@100) per row."""
    metrics = [m for m in ("top1", "top20", "top100") if any(r.get(m) is not None for r in rows)] or \
              [m for m in ("ndcg@10", "mrr@10", "recall@100") if any(r.get(m) is not None for r in rows)]
    if not metrics:
        return None
    plt = pyplot()
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows) + 2), 4))
    for j, metric in enumerate(metrics):
        xs = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(xs, [r.get(metric) or 0 for r in rows], width, label=metric)
    ax.set_xticks(range(len(rows)), [r["method"] for r in rows], rotation=35, ha="right", fontsize=8)
    ax.set(ylabel="%", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    out = save(fig, path)
    plt.close(fig)
    return out


def candidate_stage(rows: list[dict], title: str, path: Path) -> Path | None:
    """Per row with a candidate stage (bprlab.eval.stage): the % of questions whose answer is among the first l
    Hamming candidates against l (log x), with its interval where the row has one; where a curve reaches the l a
    search keeps, the stage no longer binds."""
    curves = [(row, means) for row in rows if (means := stage_means(row))]
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for i, (row, means) in enumerate(curves):
        kept, values = list(means), list(means.values())
        color = plt.get_cmap("tab10")(i % 10)
        ax.plot(kept, values, marker=MARKERS[i % len(MARKERS)], color=color, label=row["method"])
        bounds = [(row.get("intervals") or {}).get(f"{PREFIX}{n}") or {} for n in kept]
        if all(b.get("low") is not None for b in bounds):
            ax.fill_between(kept, [b["low"] for b in bounds], [b["high"] for b in bounds], color=color, alpha=0.15)
    ax.set_xscale("log")
    ax.set(xlabel="l, Hamming candidates kept (log scale)",
           ylabel="% of questions with an answer among them", title=f"{title}: candidate stage")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    out = save(fig, path)
    plt.close(fig)
    return out


def table_plots(table: dict, folder: Path) -> list[Path]:
    """A table's own plots: its frontier (memory and speed), its bars, and its candidate stage where rows have one."""
    name = table["run_name"]
    rows = table["rows"]
    made = [frontier(rows, name, folder / f"{name}_frontier.png"), bars(rows, name, folder / f"{name}.png"),
            candidate_stage(rows, name, folder / f"{name}_candidate_stage.png")]
    return [p for p in made if p is not None]
