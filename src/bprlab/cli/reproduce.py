"""`bprlab reproduce <table.yaml> [--dataset D]`: every row of a table, training each distinct model once.

A table file lists rows; each names an experiment YAML (relative to the table file; `{dataset}` is replaced by
--dataset), optional overrides, and optionally the paper's numbers per dataset. Rows whose configs differ only
in search settings (index.*, eval.*) share a run directory, so the model is trained and the corpus encoded once
and only the index/search is redone.
"""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bprlab.artifacts import write_json, write_text
from bprlab.config import load_config
from bprlab.config.schema import RunConfig
from bprlab.errors import ConfigError
from bprlab.eval.report import markdown_table, summary_row
from bprlab.runs import RunPaths, run_lock

log = logging.getLogger("bprlab")
ROW_KEYS = {"method", "experiment", "overrides", "paper", "family"}
DATASETS = ("squad", "nq", "trivia")


@dataclass
class Row:
    method: str
    experiment: Path
    overrides: list[str] = field(default_factory=list)
    paper: dict = field(default_factory=dict)  # {metric: value} for the chosen dataset
    family: str | None = None  # rows of one family are one method at several budgets: a line in the plots


@dataclass
class Table:
    name: str
    note: str
    rows: list[Row]
    dataset: str | None

    @property
    def run_name(self) -> str:
        return f"{self.name}-{self.dataset}" if self.dataset else self.name


def read_table(path: str | Path, dataset: str | None = None) -> Table:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: table file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not isinstance(raw.get("rows"), list) or not raw["rows"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'rows' list")
    rows = []
    for i, row in enumerate(raw["rows"]):
        if not isinstance(row, dict) or not {"method", "experiment"} <= set(row) or set(row) - ROW_KEYS:
            raise ConfigError(f"{path}: rows[{i}]: expected keys method, experiment and optionally overrides, paper, "
                              "family")
        if not isinstance(row.get("overrides", []), list):
            raise ConfigError(f"{path}: rows[{i}].overrides: expected a list of key=value strings")
        experiment = str(row["experiment"])
        if "{dataset}" in experiment:
            if dataset is None:
                raise ConfigError(f"{path}: rows[{i}] depends on the dataset: pass --dataset ({', '.join(DATASETS)})")
            experiment = experiment.replace("{dataset}", dataset)
        paper = (row.get("paper") or {}).get(dataset, {}) if dataset else {}
        family = row.get("family")
        rows.append(Row(str(row["method"]), path.parent / experiment, list(row.get("overrides", [])), paper,
                        str(family) if family is not None else None))
    name = raw.get("name", path.stem)
    uses_dataset = any("{dataset}" in str(r["experiment"]) for r in raw["rows"])
    return Table(name, raw.get("note", ""), rows, dataset if uses_dataset else None)


def reproduce(table_path: str, overrides: list[str], dataset: str | None = None) -> list[dict]:
    from bprlab.cli import stages

    table = read_table(table_path, dataset)
    group = f"wandb.group={table.run_name}"  # W&B groups a table's runs; an explicit override still wins
    configs: list[RunConfig] = [load_config(row.experiment, [*row.overrides, group, *overrides]) for row in table.rows]
    command = " ".join(["bprlab", "reproduce", table_path, *(["--dataset", dataset] if dataset else []),
                        *map(shlex.quote, overrides)])
    results = []
    for row, cfg in zip(table.rows, configs):  # every config is validated before any work starts
        log.info("=== %s (%s)", row.method, cfg.name)
        with run_lock(RunPaths(cfg).root):
            metrics = stages.run(cfg)
        if metrics is None:  # a non-zero DDP rank: rank 0 evaluates and writes the summary
            continue
        results.append({**summary_row(row.method, metrics, run=cfg.name, family=row.family), "paper": row.paper,
                        "experiment": str(row.experiment), "overrides": row.overrides})
    if not results:
        return results
    out = Path(configs[0].runs_root) / table.run_name
    md = markdown_table(results)
    write_json(out / "summary.json", results)  # one row per method
    write_json(out / "table.json", {"table": table.name, "dataset": table.dataset, "note": table.note,
                                    "command": command})
    from bprlab.eval.plots import table_plots

    plots = table_plots({"table": table.name, "dataset": table.dataset, "run_name": table.run_name, "rows": results},
                        out / "plots")
    images = "".join(f"\n![{p.stem}](plots/{p.name})" for p in plots)
    write_text(out / "summary.md", f"# {table.run_name}\n\n{table.note.strip()}\n\n`{command}`\n\n{md}\n{images}\n")
    print(f"\n{md}\n\nwritten: {out / 'summary.json'}, {out / 'summary.md'}, {len(plots)} plots in {out / 'plots'}",
          file=sys.stdout)
    return results
