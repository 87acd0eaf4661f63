"""`bprlab report --sweep NAME`: runs/sweeps/<name>/report.md from the local agent's results table (bprlab.sweeps),
with one plot per swept key and, where the sweep varies the seed, each setting over its seeds."""

from __future__ import annotations

from pathlib import Path

from bprlab.artifacts import read_json, write_text
from bprlab.errors import StageError
from bprlab.report.plots import pyplot, save
from bprlab.report.stats import seed_interval
from bprlab.sweeps import ResultsTable, seed_groups


def write_sweep_report(folder: str | Path, metric: str | None = None) -> Path:
    """runs/sweeps/<name>/report.md + one PNG per swept key: the target metric against the key's values."""
    folder, metric = Path(folder), metric or "top20"
    results = ResultsTable(folder, f"test/{metric}")
    if not results.rows:
        raise StageError(f"{results.path}: no finished trials yet; run `make sweep SWEEP=...` first")
    rows = results.rows
    plan = read_json(folder / "plan.json") if (folder / "plan.json").is_file() else {}
    plots = [plot_sweep_key(rows, key, metric, folder / "plots") for key in sorted({k for r in rows for k in r["params"]})]
    table = results.markdown() + over_seeds(rows, metric)
    images = "\n".join(f"![{p.stem}](plots/{p.name})" for p in plots)
    path = folder / "report.md"
    write_text(path, f"# Sweep {folder.name}\n\nfrom `{plan.get('sweep', '?')}` ({plan.get('method', '?')}); "
                     f"{len(rows)} finished trials; metric: test/{metric} (%).\n\n{table}\n{images}\n")
    return path


def over_seeds(rows: list[dict], metric: str) -> str:
    """Where the sweep varies `seed`: each setting's metrics as mean ± half-width of the 95% t-interval over its
    seeds (the intervals tables use: bprlab.report.stats)."""
    if not any("seed" in row["params"] for row in rows):
        return ""
    metrics = list(dict.fromkeys([metric, "top1", "top20", "top100"]))
    head = ["setting", "seeds", *metrics]
    lines = ["", "Over seeds (mean ± half-width of the 95% t-interval over the setting's seeds):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in seed_groups(rows).values():
        setting = " ".join(f"{k}={v}" for k, v in group[0]["params"].items() if k != "seed") or "(seed only)"
        cells = [setting, ", ".join(str(r["params"].get("seed", "")) for r in group)]
        for key in metrics:
            values = [r["metrics"].get(key) for r in group if r["metrics"].get(key) is not None]
            if not values:
                cells.append("-")
                continue
            interval = seed_interval(values)
            cells.append(f"{interval.mean:.1f}" + (f" ± {interval.half_width:.1f}" if interval.low is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep_key(rows: list[dict], key: str, metric: str, folder: Path) -> Path:
    plt = pyplot()
    values = [r["params"].get(key) for r in rows]
    scores = [r["metrics"].get(metric) for r in rows]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    labels = sorted({str(v) for v in values}, key=lambda s: (float(s) if numeric else 0, s))
    xs = [float(v) for v in values] if numeric else [labels.index(str(v)) for v in values]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.scatter(xs, scores, s=30)
    if numeric and len(set(xs)) > 2 and min(xs) > 0 and max(xs) / min(xs) >= 100:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(labels)), labels)
    ax.set(xlabel=key, ylabel=f"test/{metric} (%)", title=f"{metric} vs {key}")
    ax.grid(alpha=0.3)
    path = save(fig, folder / f"{metric}_vs_{key.replace('.', '_')}.png")
    plt.close(fig)
    return path
