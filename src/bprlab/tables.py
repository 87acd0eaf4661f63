"""Table files: the rows `bprlab reproduce` runs and `bprlab report` writes up.

    name: loss_squad
    extends: _squad_ablations.yaml     # optional: another table file's settings (not its rows) come first
    note: ...                          # printed above the table
    seeds: 3                           # or [42, 43, 44]; default 1 (the config's own seed)
    baseline: bpr                      # the row every other row is tested against (a method name below)
    overrides: [train.max_steps=100]   # every row, before the row's own overrides and the command line's
    report: ablations                  # which document `bprlab report` puts it in: results (default) | ablations
    claims: [...]                      # ablations only: the paper's claims this table answers (bprlab.report.claims)
    rows:
      - method: bpr                    # the row's name in the table
        experiment: ../squad/bpr.yaml  # relative to the table file; {dataset} is replaced by --dataset
        overrides: [index.rerank=false]
        seeds: 20                      # optional: this row's own seeds (a count or a list), over the table's
        family: ...                    # rows drawn as one line over their budgets
        paper: {nq: {top20: 77.9}}     # the paper's numbers per dataset

Seeds: a count n runs seeds s, s+1, ..., s+n-1 where s is the row's configured seed (42 unless overridden); the
run of seed s keeps the experiment's run name, the others append `-seed<n>`, so a one-seed table names runs as
before and a (model, seed) is trained once whatever table asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bprlab.config.loader import UniqueKeyLoader
from bprlab.errors import ConfigError

ROW_KEYS = {"method", "experiment", "overrides", "paper", "family", "seeds"}
TABLE_KEYS = {"name", "note", "extends", "seeds", "baseline", "overrides", "report", "claims", "budget", "rows"}
INHERITED = ("note", "seeds", "baseline", "overrides", "report")  # what `extends` passes on (rows never)
REPORTS = ("results", "ablations")
DATASETS = ("squad", "nq", "trivia")


@dataclass
class Row:
    method: str
    experiment: Path
    overrides: list[str] = field(default_factory=list)
    paper: dict = field(default_factory=dict)  # {metric: value} for the chosen dataset
    family: str | None = None  # rows of one family are one method at several budgets: a line in the plots
    seeds: int | list[int] | None = None  # the row's own seeds; None: the table's


@dataclass
class Table:
    name: str
    note: str
    rows: list[Row]
    dataset: str | None
    path: Path | None = None
    seeds: int | list[int] = 1
    baseline: str | None = None
    overrides: list[str] = field(default_factory=list)
    report: str = "results"
    claims: list[dict] = field(default_factory=list)
    budget: dict = field(default_factory=dict)  # a learning-curve table: where its rows stand at the budget

    @property
    def run_name(self) -> str:
        return f"{self.name}-{self.dataset}" if self.dataset else self.name

    def seed_list(self, base: int, count: int | None = None, row: Row | None = None) -> list[int]:
        """The seeds a row runs: `count` (the command line's --seeds) wins over the row's own setting, which wins
        over the table's."""
        if count is not None:
            return seed_range(base, count, "--seeds")
        seeds = row.seeds if row is not None and row.seeds is not None else self.seeds
        if isinstance(seeds, list):
            return list(seeds)
        return seed_range(base, seeds, f"{self.path}: seeds")


def seed_range(base: int, count: int, where: str) -> list[int]:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"{where}: expected a number of seeds >= 1, got {count!r}")
    return [base + i for i in range(count)]


def seeded_name(name: str, seed: int, base: int) -> str:
    """The run of the configured seed keeps its name; other seeds are runs of their own."""
    return name if seed == base else f"{name}-seed{seed}"


def _budget(path: Path, raw) -> dict:
    """`budget: {step: N, rows: {curve row: <table>/<row>}, gap: [curve row, curve row]}`
    (bprlab.report.curve_note); `gap` may be left out where `rows` names two rows."""
    if raw is None:
        return {}
    shape = "{step: <int>, rows: {<curve row>: <table>/<row>}, gap: [<curve row>, <curve row>]}"
    rows = raw.get("rows") if isinstance(raw, dict) else None
    if not (isinstance(raw, dict) and isinstance(raw.get("step"), int) and isinstance(rows, dict)
            and all(isinstance(v, str) and "/" in v for v in rows.values())):
        raise ConfigError(f"{path}: budget: expected {shape}")
    unknown = set(raw) - {"step", "rows", "gap"}
    if unknown:
        raise ConfigError(f"{path}: budget: unknown key(s) {', '.join(sorted(unknown))}; expected {shape}")
    from bprlab.report.curve_note import declared_gap

    gap = raw["gap"] if "gap" in raw else declared_gap(raw)
    if gap is not None and not (isinstance(gap, list) and len(gap) == 2 and all(g in rows for g in gap)):
        raise ConfigError(f"{path}: budget: gap: expected two of the rows named in budget.rows "
                          f"({', '.join(rows)}), got {gap!r}")
    return {"step": raw["step"], "rows": dict(rows), "gap": gap}


def read_table(path: str | Path, dataset: str | None = None) -> Table:
    path = Path(path)
    raw = _settings(path, chain=())
    if not isinstance(raw.get("rows"), list) or not raw["rows"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'rows' list")
    rows = [_row(path, i, row, dataset) for i, row in enumerate(raw["rows"])]
    uses_dataset = any("{dataset}" in str(r["experiment"]) for r in raw["rows"])
    table = Table(str(raw.get("name", path.stem)), str(raw.get("note") or ""), rows,
                  dataset if uses_dataset else None, path, _seeds(path, raw.get("seeds", 1)), raw.get("baseline"),
                  _strings(path, "overrides", raw.get("overrides", [])), str(raw.get("report", "results")),
                  list(raw.get("claims") or []), _budget(path, raw.get("budget")))
    _check_table(table)
    return table


def _settings(path: Path, chain: tuple[Path, ...]) -> dict:
    """The table's own mapping over the inherited settings of what it extends."""
    if path.resolve() in chain:
        raise ConfigError(f"{path}: `extends` cycle")
    if not path.is_file():
        where = f" (extended from {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}: table file not found{where}")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid YAML table file: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'rows' list")
    unknown = set(raw) - TABLE_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; a table has "
                          f"{', '.join(sorted(TABLE_KEYS))}")
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected the path of another table file")
    inherited = {k: v for k, v in _settings(path.parent / parent, (*chain, path.resolve())).items() if k in INHERITED}
    if "overrides" in raw and "overrides" in inherited:  # the parent's first, so the table's own win
        raw["overrides"] = _strings(path, "overrides", inherited["overrides"]) + _strings(path, "overrides",
                                                                                         raw["overrides"])
    return {**inherited, **raw}


def _row(path: Path, i: int, row, dataset: str | None) -> Row:
    if not isinstance(row, dict) or not {"method", "experiment"} <= set(row) or set(row) - ROW_KEYS:
        raise ConfigError(f"{path}: rows[{i}]: expected keys method, experiment and optionally overrides, paper, "
                          "family, seeds")
    experiment = str(row["experiment"])
    if "{dataset}" in experiment:
        if dataset is None:
            raise ConfigError(f"{path}: rows[{i}] depends on the dataset: pass --dataset ({', '.join(DATASETS)})")
        experiment = experiment.replace("{dataset}", dataset)
    paper = (row.get("paper") or {}).get(dataset, {}) if dataset else {}
    family = row.get("family")
    return Row(str(row["method"]), path.parent / experiment, _strings(path, f"rows[{i}].overrides",
                                                                      row.get("overrides", [])),
               paper, str(family) if family is not None else None,
               _seeds(path, row["seeds"], f"rows[{i}].seeds") if "seeds" in row else None)


def _strings(path: Path, key: str, value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: {key}: expected a list of key=value strings")
    return list(value)


def _seeds(path: Path, value, key: str = "seeds") -> int | list[int]:
    if isinstance(value, list):
        if not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{path}: {key}: expected a number of seeds or a non-empty list of integers, "
                              f"got {value!r}")
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise ConfigError(f"{path}: {key}: {', '.join(map(str, repeated))} listed more than once")
        return list(value)
    seed_range(0, value, f"{path}: {key}")
    return value


def _check_table(table: Table) -> None:
    methods = [row.method for row in table.rows]
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        raise ConfigError(f"{table.path}: rows: method {', '.join(repeated)} appears more than once (a row's "
                          "method names it in the table)")
    if table.baseline is not None and table.baseline not in methods:
        raise ConfigError(f"{table.path}: baseline: {table.baseline!r} is not a row of this table (rows: "
                          f"{', '.join(methods)})")
    if table.report not in REPORTS:
        raise ConfigError(f"{table.path}: report: expected one of {', '.join(REPORTS)}, got {table.report!r}")
    if table.claims and table.report != "ablations":
        raise ConfigError(f"{table.path}: claims: only a table with `report: ablations` states claims")
    from bprlab.report.claims import check_claims

    seeds = len(table.seeds) if isinstance(table.seeds, list) else table.seeds
    check_claims(table.path, table.claims, methods, table.baseline, seeds if isinstance(seeds, int) else 1)
