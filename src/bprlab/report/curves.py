"""Learning curves from a run's own training log: validation average rank and in-pool top-k against steps.

The CSV logger (`logger: csv`) writes `<run>/logs/metrics.csv`, one line per logging event; validation lines
carry `val/avg_rank` and `val/top{1,5,20}` at their step. A resumed run appends, so a step logged twice keeps its
last value. Runs logged to W&B only have no CSV here: their curves are on the W&B dashboard.
"""

from __future__ import annotations

import csv
from pathlib import Path

from bprlab.report.plots import pyplot, save

VAL_KEYS = ("val/avg_rank", "val/top1", "val/top5", "val/top20")


def read_curve(run_root: Path) -> dict[str, list] | None:
    """{"step": [...], "val/avg_rank": [...], ...} in step order; None without at least two validations."""
    path = Path(run_root) / "logs" / "metrics.csv"
    if not path.is_file():
        return None
    by_step: dict[int, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for line in csv.DictReader(handle):
            if not line.get("val/avg_rank"):
                continue
            by_step[int(float(line["step"]))] = {k: float(line[k]) for k in VAL_KEYS if line.get(k)}
    if len(by_step) < 2:
        return None
    steps = sorted(by_step)
    curve: dict[str, list] = {"step": [s + 1 for s in steps]}  # Lightning logs the 0-based step of the last batch
    for key in VAL_KEYS:
        if all(key in by_step[s] for s in steps):
            curve[key] = [by_step[s][key] for s in steps]
    return curve


def plot_curves(curves: dict[str, dict[str, list]], title: str, path: Path) -> Path | None:
    """Two panels over optimizer steps: val/avg_rank (lower is better) and val/top-k in the pool."""
    curves = {name: c for name, c in curves.items() if c}
    if not curves:
        return None
    plt = pyplot()
    fig, (rank, top) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (name, curve) in enumerate(sorted(curves.items())):
        color = plt.get_cmap("tab10")(i % 10)
        rank.plot(curve["step"], curve["val/avg_rank"], marker="o", color=color, label=name)
        for key, style in (("val/top1", "-"), ("val/top5", "--"), ("val/top20", ":")):
            if key in curve:
                top.plot(curve["step"], curve[key], linestyle=style, marker=".", color=color,
                         label=f"{name} {key.split('/')[1]}")
    rank.set(xlabel="optimizer steps", ylabel="val/avg_rank (gold passage's rank in the pool; lower is better)",
             title=f"{title}: average rank")
    top.set(xlabel="optimizer steps", ylabel="% of dev questions, gold passage in the pool's top k",
            title=f"{title}: top-k in the pool")
    for ax in (rank, top):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = save(fig, path)
    plt.close(fig)
    return out
