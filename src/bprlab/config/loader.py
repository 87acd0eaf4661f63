"""Load a run config: schema <- `extends:` files <- experiment YAML <- command-line `key=value`.

Every layer is merged into the typed schema, so an unknown key or a value of the wrong type fails at once with
the file (or the command-line argument) and the dotted key named.
"""

from __future__ import annotations

import copy
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Iterable, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bprlab.config.keys import holder
from bprlab.config.schema import REMOVED_KEYS, RunConfig
from bprlab.config.validate import validate
from bprlab.errors import ConfigError

EXTENDS = "extends"


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Resolve an experiment file plus overrides into a validated `RunConfig`."""
    cfg = OmegaConf.structured(RunConfig)
    if path is not None:
        for layer_path, layer in _layers(Path(path), chain=()):
            cfg = _merge(cfg, layer, source=str(layer_path))
    cfg = _merge(cfg, parse_overrides(overrides), source="command line")
    try:
        run = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:  # e.g. a missing mandatory value
        raise ConfigError(f"config: {exc.full_key or ''}: {_reason(exc)}") from None
    validate(run)
    return run


def to_dict(cfg: RunConfig) -> dict:
    """Plain, YAML-safe dict of a config (enums as their names)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def from_dict(data: dict, source: str = "saved config") -> RunConfig:
    """A saved config (a checkpoint's) as a RunConfig."""
    cfg = _merge(OmegaConf.structured(RunConfig), OmegaConf.create(without_removed(data)), source=source)
    return OmegaConf.to_object(cfg)


def without_removed(data: dict) -> dict:
    """`data` without the keys the schema has since dropped (schema.REMOVED_KEYS) where they hold the only value
    they ever had, so that configs saved before (checkpoints, a run's config.yaml) still load; any other value of
    such a key stays, and is refused as unknown."""
    data = copy.deepcopy(data)
    for name, value in REMOVED_KEYS.items():
        node, leaf = holder(data, name)
        if node is not None and leaf in node and node[leaf] == value:
            del node[leaf]
    return data


def parse_overrides(overrides: Iterable[str]) -> DictConfig:
    """`a.b=1 c=[1,2]` -> DictConfig; values are parsed as YAML scalars/lists. A scalar for a whole section
    (`data=beir`) is an error, not something a later `data.path=...` silently replaces."""
    merged = OmegaConf.create({})
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"command line: '{item}': expected key=value (e.g. train.max_steps=100)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"command line: '{item}': value is not valid YAML ({exc})") from None
        section = _section_keys(key)
        if section is not None and not isinstance(value, dict):
            raise ConfigError(f"command line: '{item}': {key} is a section; set its keys one by one, e.g. "
                              f"{key}.{section[0]}=...")
        OmegaConf.update(merged, key, value, force_add=True)
    return merged


def _section_keys(dotted: str) -> list[str] | None:
    """The keys of the schema section `dotted` names (`data`, `data.squad`, ...), or None for a plain key."""
    node = RunConfig()
    for part in dotted.split("."):
        if not is_dataclass(node) or part not in {f.name for f in fields(node)}:
            return None
        node = getattr(node, part)
    return [f.name for f in fields(node)] if is_dataclass(node) else None


class UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML keeps the last one without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one mapping (line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _layers(path: Path, chain: tuple[Path, ...]) -> list[tuple[Path, DictConfig]]:
    """The file and, first, everything it extends (depth first, in order)."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: `extends` cycle: {' -> '.join(str(p) for p in (*chain, path))}")
    if not path.is_file():
        where = f" (extended from {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}: config file not found{where}")
    try:
        raw = yaml.load(path.read_text(), Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(raw).__name__}")
    parents = raw.pop(EXTENDS, None) or []
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ConfigError(f"{path}: key '{EXTENDS}': expected a path or a list of paths")
    layers: list[tuple[Path, DictConfig]] = []
    for parent in parents:
        layers += _layers(path.parent / parent, chain=(*chain, path))
    layers.append((path, OmegaConf.create(without_removed(raw))))
    return layers


def _merge(cfg: DictConfig, layer: DictConfig, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, layer)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: key '{exc.full_key}': {_reason(exc)}") from None


def _reason(exc: OmegaConfBaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
