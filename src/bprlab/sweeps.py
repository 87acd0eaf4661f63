"""W&B sweep files, read the way the W&B agent reads them, and the local agent's trial plan and results table.

A sweep YAML is a W&B sweep config: `method`, `metric`, `parameters` (dotted bprlab config keys) and a
`command` that names the experiment, e.g.

    command: [${env}, bprlab, run, experiments/squad/bpr.yaml, train.max_steps=30, --trial, ${args_no_hyphens}]

With W&B credentials the file goes to W&B unchanged. Without them the local agent plans trials from it: grid
(every combination, in file order), random (seeded; trial k is the same whatever the count) and bayes, which
needs W&B's server and falls back to random with a warning.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bprlab.artifacts import fingerprint, write_json, write_text
from bprlab.errors import ConfigError

log = logging.getLogger(__name__)
ARGS_MACROS = {"${args_no_hyphens}", "${args}", "${args_json}", "${args_json_file}"}


@dataclass
class Sweep:
    path: Path
    name: str
    method: str
    metric: dict
    parameters: dict[str, dict]
    experiment: Path
    base_args: list[str] = field(default_factory=list)  # fixed key=value in the command, for every trial
    raw: dict = field(default_factory=dict)


def read_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: sweep file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid YAML sweep file: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a W&B sweep config (a mapping)")
    method = raw.get("method")
    if method not in ("grid", "random", "bayes"):
        raise ConfigError(f"{path}: key 'method': expected grid, random or bayes, got {method!r}")
    metric = raw.get("metric") or {}
    if not isinstance(metric, dict) or "name" not in metric or metric.get("goal") not in ("maximize", "minimize"):
        raise ConfigError(f"{path}: key 'metric': expected {{name: ..., goal: maximize|minimize}}")
    from bprlab.eval.metrics import LOGGED_NAMES

    if metric["name"] not in LOGGED_NAMES.values():
        raise ConfigError(f"{path}: metric.name {metric['name']!r} is not a metric runs log; one of "
                          f"{', '.join(sorted(LOGGED_NAMES.values()))}")
    parameters = raw.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError(f"{path}: key 'parameters': expected a non-empty mapping of config keys")
    for key, spec in parameters.items():
        if not isinstance(spec, dict) or not ({"value", "values", "min", "distribution"} & set(spec)):
            raise ConfigError(f"{path}: parameters.{key}: expected value, values, or a distribution with min/max")
        if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
            raise ConfigError(f"{path}: parameters.{key}.values: expected a non-empty list, got {spec['values']!r}")
    _check_seed(path, parameters.get("seed"))
    experiment, base_args = _parse_command(raw.get("command"), path)
    return Sweep(path, str(raw.get("name") or path.stem), method, metric, parameters, experiment, base_args, raw)


def _check_seed(path: Path, spec: dict | None) -> None:
    """`seed` as a swept parameter repeats each setting over seeds (the report then averages over them): its
    values must be whole numbers, each once."""
    if spec is None:
        return
    values = spec.get("values", [spec["value"]] if "value" in spec else None)
    if values is None:
        low, high = spec.get("min"), spec.get("max")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
            raise ConfigError(f"{path}: parameters.seed: min and max must be integers, got {low!r} and {high!r}")
        return
    if not isinstance(values, list) or not values or \
            not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{path}: parameters.seed: expected a list of integers, got {values!r}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"{path}: parameters.seed: {', '.join(map(str, repeated))} listed more than once")


def seed_groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Finished trials grouped by their swept values other than `seed`, in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = tuple(sorted((k, json.dumps(v)) for k, v in row["params"].items() if k != "seed"))
        groups.setdefault(key, []).append(row)
    return groups


def _parse_command(command: Any, path: Path) -> tuple[Path, list[str]]:
    if not isinstance(command, list) or not any(str(c).endswith(".yaml") for c in command):
        raise ConfigError(f"{path}: key 'command': expected a list naming an experiment YAML, e.g. "
                          "[${env}, bprlab, run, experiments/squad/bpr.yaml, --trial, ${args_no_hyphens}]")
    items = [str(c) for c in command]
    at = next(i for i, c in enumerate(items) if c.endswith(".yaml"))
    base = [c for c in items[at + 1 :] if "=" in c and c not in ARGS_MACROS and not c.startswith("-")]
    return Path(items[at]), base


def trials(sweep: Sweep, count: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """The local agent's plan: a list of {key: value}, at most `count` long."""
    if sweep.method == "grid":
        keys = list(sweep.parameters)
        choices = [_grid_values(sweep, k) for k in keys]
        plan = [dict(zip(keys, combo)) for combo in itertools.product(*choices)]
        return plan[:count] if count else plan
    if sweep.method == "bayes":
        log.warning("%s: bayes search needs the W&B server; the local agent samples at random instead", sweep.path)
    if not count:
        raise ConfigError(f"{sweep.path}: a {sweep.method} sweep runs until stopped: give COUNT=n")
    return [{k: _sample(spec, random.Random(f"{seed}/{i}/{k}")) for k, spec in sweep.parameters.items()}
            for i in range(count)]


def _grid_values(sweep: Sweep, key: str) -> list:
    spec = sweep.parameters[key]
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    raise ConfigError(f"{sweep.path}: parameters.{key}: a grid sweep needs `values` (or `value`)")


def _sample(spec: dict, rng: random.Random) -> Any:
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(list(spec["values"]))
    ints = isinstance(spec.get("min"), int) and isinstance(spec.get("max"), int)
    kind = spec.get("distribution") or ("int_uniform" if ints else "uniform")
    low, high = spec["min"], spec["max"]
    if kind == "int_uniform":
        return rng.randint(low, high)
    if kind == "uniform":
        return rng.uniform(low, high)
    if kind == "log_uniform_values":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    raise ConfigError(f"distribution {kind!r} is not supported by the local agent (use values, uniform, "
                      "int_uniform or log_uniform_values)")


def trial_identity(sweep: Sweep, params: dict[str, Any]) -> str:
    """What a trial ran: the experiment file (by content), the command's fixed arguments and the swept values."""
    from bprlab.artifacts import file_sha256

    experiment = file_sha256(sweep.experiment) if sweep.experiment.is_file() else str(sweep.experiment)
    return fingerprint(experiment, sweep.base_args, trial_args(params))


def trial_args(params: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in params.items()]


def trial_name(base_name: str, overrides: list[str]) -> str:
    """A run name made from a trial's overrides: readable, filesystem-safe, and the same on every node."""
    parts = []
    for item in overrides:
        key, _, value = item.partition("=")
        if key in ("name", "logger", "runs_root") or key.startswith("wandb."):  # not part of what is trained
            continue
        parts.append(f"{key.split('.')[-1]}{value}")
    slug = re.sub(r"[^A-Za-z0-9.\-]+", "_", "-".join(parts)).strip("_")
    if len(slug) > 80:
        slug = slug[:60] + "-" + fingerprint(overrides)[:8]
    return f"{base_name}-{slug}" if slug else base_name


class ResultsTable:
    """runs/sweeps/<sweep>/results.jsonl + results.md: one row per finished trial (the local agent's memory)."""

    def __init__(self, folder: Path, metric: str):
        self.folder, self.metric = Path(folder), metric
        self.path = self.folder / "results.jsonl"
        self.rows = [json.loads(line) for line in self.path.read_text().splitlines()] if self.path.is_file() else []

    def finished(self, run_name: str, identity: str | None = None) -> bool:
        """A trial of this run name recorded with the same identity (experiment, fixed and swept arguments):
        after the sweep's command changes, its trials run again instead of reprinting old numbers."""
        return any(row["run"] == run_name and row.get("identity") == identity for row in self.rows)

    def add(self, row: dict) -> None:
        self.rows = [r for r in self.rows if r["run"] != row["run"]] + [row]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))
        write_text(self.folder / "results.md", self.markdown())

    def markdown(self) -> str:
        keys = sorted({k for row in self.rows for k in row["params"]})
        metric_key = self.metric.split("/")[-1]
        head = ["run", *keys, self.metric, "top1", "top100", "bytes_per_passage"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            m = row["metrics"]
            cells = [row["run"], *(str(row["params"].get(k, "")) for k in keys), _fmt(m.get(metric_key)),
                     _fmt(m.get("top1")), _fmt(m.get("top100")), str(m.get("bytes_per_passage", ""))]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    return "" if value is None else f"{value:.2f}"


def write_plan(folder: Path, sweep: Sweep, plan: list[dict]) -> None:
    write_json(folder / "plan.json", {"sweep": str(sweep.path), "method": sweep.method, "trials": plan})
