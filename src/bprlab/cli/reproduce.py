"""`bprlab reproduce <table.yaml>`: every row of a table, training each distinct model once.

A table file lists rows; each names an experiment YAML (relative to the table file) and optional overrides.
Rows that share an experiment and differ only in search settings (index.*, eval.*) share its run directory,
so the model is trained and the corpus encoded once and only the index/search is redone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from bprlab.artifacts import write_json, write_text
from bprlab.config import load_config
from bprlab.errors import ConfigError
from bprlab.eval.report import markdown_table, summary_row

log = logging.getLogger("bprlab")
ROW_KEYS = {"method", "experiment", "overrides"}


def read_table(path: Path) -> tuple[str, list[dict], str]:
    if not path.is_file():
        raise ConfigError(f"{path}: table file not found")
    table = yaml.safe_load(path.read_text()) or {}
    if not isinstance(table, dict) or not isinstance(table.get("rows"), list) or not table["rows"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'rows' list")
    for i, row in enumerate(table["rows"]):
        if not isinstance(row, dict) or not {"method", "experiment"} <= set(row) or set(row) - ROW_KEYS:
            raise ConfigError(f"{path}: rows[{i}]: expected keys method, experiment and optionally overrides")
        if not isinstance(row.get("overrides", []), list):
            raise ConfigError(f"{path}: rows[{i}].overrides: expected a list of key=value strings")
    return table.get("name", path.stem), table["rows"], table.get("note", "")


def reproduce(table_path: str, overrides: list[str]) -> list[dict]:
    from bprlab.cli import stages

    path = Path(table_path)
    name, rows, note = read_table(path)
    configs = [load_config(path.parent / row["experiment"], [*row.get("overrides", []), *overrides]) for row in rows]
    results = []
    for row, cfg in zip(rows, configs):  # all configs validated before any work starts
        log.info("=== %s (%s)", row["method"], cfg.name)
        metrics = stages.run(cfg)
        if metrics is None:  # a non-zero DDP rank: rank 0 evaluates and writes the summary
            continue
        results.append(summary_row(row["method"], metrics, run=cfg.name))
    if not results:
        return results
    out = Path(configs[0].runs_root) / name
    table = markdown_table(results)
    write_json(out / "summary.json", results)
    write_text(out / "summary.md", f"# {name}\n\n{note.strip()}\n\n{table}\n")
    print(f"\n{table}\n\nwritten: {out / 'summary.json'}, {out / 'summary.md'}")
    return results
