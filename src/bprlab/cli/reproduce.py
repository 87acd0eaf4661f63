"""`bprlab reproduce <table.yaml> [--dataset D] [--seeds N] [--out DIR] [--rows A,B]`: every row of a table over its
seeds (or only the rows named: the summary waits until every unit is recorded).

Each (row, seed) is a unit. Rows whose configs differ only in search settings (index.*, eval.*) share a run
directory, so each (model, seed) is trained and its corpus encoded once and only the index/search is redone. A
finished unit is recorded in <out>/units/ with a fingerprint of everything it depends on (the resolved config
and the data files by content); a rerun skips recorded units, so a killed table resumes at the unit it was in
(whose training resumes from its last.ckpt). The table's rows are then aggregated from the records
(bprlab.report.aggregate): metrics over seeds with intervals, and tests against the table's baseline row.
"""

from __future__ import annotations

import copy
import logging
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bprlab.artifacts import read_sound_json, write_json
from bprlab.config import load_config
from bprlab.config.enums import Checkpoint
from bprlab.config.schema import FOLDER_KEYS, RunConfig
from bprlab.errors import ConfigError, StageError
from bprlab.index.base import input_kind
from bprlab.runs import RunPaths, run_lock
from bprlab.stamps import FORMAT
from bprlab.tables import Row, Table, read_table, seeded_name

log = logging.getLogger("bprlab")


@dataclass
class Unit:
    row: Row
    seed: int
    cfg: RunConfig


def plan_units(table: Table, overrides: list[str], seeds: int | None = None) -> list[Unit]:
    """Every (row, seed) config, validated before any work starts. Rows that train nothing (the untrained encoder,
    BM25) run once: a seed changes nothing there."""
    units = []
    for row in table.rows:
        base = load_config(row.experiment, [*table.overrides, *row.overrides, *overrides])
        trained = base.checkpoint != Checkpoint.pretrained.value and input_kind(base.index) != "text"
        if trained and base.data.dataset.folder and not base.data.train_file:
            _name_training_files(base, table, row, overrides)
        for seed in table.seed_list(base.seed, seeds, row) if trained else [base.seed]:
            cfg = copy.deepcopy(base)
            cfg.seed, cfg.name = seed, seeded_name(base.name, seed, base.seed)
            # W&B groups a row's seeds (the run without its seed) and tags each with its seed and table
            cfg.wandb.group = cfg.wandb.group or base.name
            cfg.wandb.tags = [*cfg.wandb.tags, f"table-{table.name}"]
            units.append(Unit(row, seed, cfg))
    return units


# what picks an evaluation folder, dropped to find the data a row trains on
FOLDER_OVERRIDES = tuple(f"data.{key}=" for key in ("dataset", *FOLDER_KEYS))


def _name_training_files(cfg: RunConfig, table: Table, row: Row, overrides: list[str]) -> None:
    """A trained row evaluated on a BEIR / jsonl folder (a table's twin) is trained on its experiment's own
    dataset. The config names those files, so the unit's stamp covers the data its weights come from (a folder
    evaluated only brings none: retraining the run on other data would leave the twin's record looking current)
    and its run trains on them where it is missing, as the row's own table would."""
    from bprlab.data.paths import data_paths

    own = load_config(row.experiment, [*table.overrides, *row.overrides,
                                       *(o for o in overrides if not o.startswith(FOLDER_OVERRIDES))])
    if own.data.dataset.folder:
        raise ConfigError(f"{table.path}: row {row.method} is trained, and {row.experiment} names no data to train "
                          "on: set data.train_file and data.dev_file")
    cfg.data.train_file, cfg.data.dev_file = map(str, data_paths(own.data).training())


def in_seed_order(units: list[Unit]) -> list[Unit]:
    """Units run seed by seed (every row's first seed, then every row's second, ...), so a table stopped part way
    has its rows at comparable numbers of seeds (rows are compared on the seeds both ran); each row's own units
    keep their order."""
    position: dict[str, int] = {}
    keyed = []
    for unit in units:
        keyed.append((position.get(unit.row.method, 0), unit))
        position[unit.row.method] = position.get(unit.row.method, 0) + 1
    return [unit for _, unit in sorted(keyed, key=lambda pair: pair[0])]


def output_folder(table: Table, cfg: RunConfig, out: str | None) -> Path:
    """<runs_root>/<table>[-<kind>-<folder>] unless --out names it: a table evaluated on a BEIR / jsonl folder
    keeps its own summary beside the one on the table's own dataset."""
    if out:
        return Path(out)
    name = table.run_name
    if cfg.data.dataset.folder:
        name += f"-{cfg.data.dataset.value}-{Path(cfg.data.path or 'data').name}"
    return Path(cfg.runs_root) / name


def unit_stamps(cfg: RunConfig) -> tuple[str, str | None]:
    """A unit's stamp (bprlab.stamps.unit_stamp: every stage's keys and every data file, by content), and the one
    format 1 gave the same unit (None where the config could not have been one of then)."""
    from bprlab.stamps import evaluation_files, training_files, unit_stamp
    from bprlab.stamps import format1_unit_stamp as format1

    evaluation, training = evaluation_files(cfg), training_files(cfg)  # each file hashed once
    return unit_stamp(cfg, evaluation, training), format1(cfg, evaluation, training)


def _lacks_stage(cfg: RunConfig, record: dict) -> bool:
    """A binary search's record made before its candidate stage was measured (bprlab.eval.stage) is not finished."""
    from bprlab.config.index_kinds import has_candidate_stage
    from bprlab.eval.outcomes import STAGE_FIRST

    return has_candidate_stage(cfg.index) and STAGE_FIRST not in (record.get("outcomes") or {})


def unit_path(folder: Path, unit: Unit) -> Path:
    slug = re.sub(r"[^A-Za-z0-9.=+\-]+", "_", unit.row.method)
    return folder / "units" / slug / f"seed{unit.seed}.json"


def _read_record(path: Path) -> dict | None:
    """A unit's record; None where there is none, or where it is damaged or not a record (an interrupted write, an
    edit): such a unit is unfinished and runs again."""
    record = read_sound_json(path, log, "the unit runs again")
    if record is None:
        return None
    if not (isinstance(record.get("metrics"), dict) and isinstance(record.get("outcomes"), dict)
            and "fingerprint" in record):
        log.warning("%s: not a unit record (expected fingerprint, metrics, outcomes); the unit runs again", path)
        return None
    return record


def run_unit(unit: Unit, folder: Path, records_only: bool = False) -> dict | None:
    """The unit's record: read when current, else the run's stages (each skips what is current) and a new
    record. None on a non-zero DDP rank (rank 0 evaluates and records). `records_only`: a current record as it
    is (one made before the candidate stage was measured too), and an error where there is none."""
    from bprlab.cli import stages
    from bprlab.eval.outcomes import read_outcomes

    if stages._is_rank_zero():
        stages.prepare(unit.cfg)
    stamp, format1 = unit_stamps(unit.cfg)
    path = unit_path(folder, unit)
    record = _read_record(path)
    if record is not None and format1 is not None and record.get("fingerprint") == format1 and "format" not in record:
        log.info("=== %s seed %d: %s recorded under stamp format 1; its stamp is upgraded", unit.row.method, unit.seed,
                 path)
        record = {**record, "format": FORMAT, "fingerprint": stamp}
        if stages._is_rank_zero():  # the same record on every rank; one writes it (also under --records-only)
            write_json(path, record)
    if record is not None:
        if record.get("fingerprint") == stamp and records_only:
            return record
        if record.get("fingerprint") == stamp and _lacks_stage(unit.cfg, record):
            log.info("=== %s seed %d: %s was recorded before the candidate stage was measured; evaluating again",
                     unit.row.method, unit.seed, path)
        elif record.get("fingerprint") == stamp:
            log.info("=== %s seed %d (%s): recorded in %s", unit.row.method, unit.seed, unit.cfg.name, path)
            return record
        else:
            log.info("=== %s seed %d: %s was made from other inputs; running it again", unit.row.method, unit.seed,
                     path)
    if records_only:
        state = "not recorded" if not path.is_file() else "damaged or unfinished" if record is None else \
            "made from other inputs"
        raise StageError(f"{path}: {state}; --records-only runs nothing: run `bprlab reproduce` without it")
    log.info("=== %s seed %d (%s)", unit.row.method, unit.seed, unit.cfg.name)
    start, cpu = time.perf_counter(), time.process_time()
    with run_lock(RunPaths(unit.cfg).root):
        metrics = stages.run(unit.cfg)
    if metrics is None:
        return None
    record = {"method": unit.row.method, "seed": unit.seed, "run": unit.cfg.name, "format": FORMAT, "fingerprint": stamp,
              # wall time, and the CPU time of this process's threads (less sensitive to other work beside it)
              "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu, "metrics": metrics,
              "outcomes": read_outcomes(RunPaths(unit.cfg).eval), "training": _training(RunPaths(unit.cfg))}
    write_json(path, record)
    return record


def _training(paths: RunPaths) -> dict | None:
    """How the unit's model was trained, from its run's train.json: optimizer steps, ranks and every resume, so the
    record keeps it after the run folder is gone. None for a row that trains nothing."""
    summary = read_sound_json(paths.train_summary)
    if summary is None:
        return None
    return {"global_step": summary.get("global_step"), "world_size": summary.get("world_size"),
            "resumes": summary.get("resumes")}  # None: trained before train.json listed its resumes


def reproduce(table_path: str, overrides: list[str], dataset: str | None = None, seeds: int | None = None,
              out: str | None = None, records_only: bool = False, rows: list[str] | None = None) -> list[dict]:
    table = read_table(table_path, dataset)
    unknown = sorted(set(rows or ()) - {row.method for row in table.rows})
    if unknown:
        raise ConfigError(f"--rows: {', '.join(unknown)} not a row of {table_path} (rows: "
                          f"{', '.join(row.method for row in table.rows)})")
    units = plan_units(table, overrides, seeds)
    folder = output_folder(table, units[0].cfg, out)
    if folder.exists() and not folder.is_dir():  # before any unit runs, not after them all
        raise ConfigError(f"--out {folder}: a file, not a folder (the table's summary and unit records go in it)")
    command = " ".join(["bprlab", "reproduce", table_path, *(["--dataset", dataset] if dataset else []),
                        *(["--seeds", str(seeds)] if seeds is not None else []), *(["--out", out] if out else []),
                        *map(shlex.quote, overrides)])
    records: dict[str, list[dict]] = {row.method: [] for row in table.rows}
    missing = []
    for unit in in_seed_order(units):
        if rows is not None and unit.row.method not in rows:  # another row's unit: its record as it is, if any
            try:
                records[unit.row.method].append(run_unit(unit, folder, records_only=True))
            except StageError:
                missing.append(f"{unit.row.method} seed {unit.seed}")
            continue
        record = run_unit(unit, folder, records_only)
        if record is None:  # a non-zero DDP rank
            return []
        records[unit.row.method].append(record)
    if missing:
        print(f"the rows asked for are recorded; the summary waits for {len(missing)} unit(s) of other rows: "
              f"{', '.join(missing)}", file=sys.stdout)
        return []
    from bprlab.report.summary import write_summary

    rows = write_summary(table, records, units, folder, command)
    print(f"\n{(folder / 'summary.md').read_text()}\nwritten: {folder / 'summary.json'}, {folder / 'summary.md'}",
          file=sys.stdout)
    return rows
