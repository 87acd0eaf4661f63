"""Every config key with its stage and help, read from the schema's field metadata (bprlab.config.schema.key):
what `bprlab config` prints, and what a stage's inputs are."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from typing import Any, Iterator

from bprlab.config.schema import RunConfig
from bprlab.errors import ConfigError


@dataclass(frozen=True)
class Key:
    name: str  # dotted: index.num_candidates
    stage: str
    help: str
    default: Any
    type: str
    content: bool = False  # a path: its file's content, not its name, enters a stamp
    encoding: bool = False  # fixed by the trained weights (a trained run encodes with its trained value)


def keys(node=RunConfig, prefix: str = "") -> Iterator[Key]:
    """Every leaf key of the schema, in schema order."""
    for f in fields(node):
        if f.metadata.get("section"):
            yield from keys(f.default_factory, f"{prefix}{f.name}.")
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        yield Key(f"{prefix}{f.name}", f.metadata.get("stage", ""), f.metadata.get("help", ""), default,
                  _type_name(f.type), f.metadata.get("content", False), f.metadata.get("encoding", False))


def _type_name(annotation) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = text.replace("typing.", "")
    return f"{text[len('Optional['):-1]} or null" if text.startswith("Optional[") else text


def key_info(name: str) -> Key:
    found = {k.name: k for k in keys()}
    if name not in found:
        close = [k for k in found if k.split(".")[-1] == name.split(".")[-1]]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"config: no key {name!r}{hint}")
    return found[name]


def value_of(cfg: RunConfig, name: str):
    node = cfg
    for part in name.split("."):
        node = getattr(node, part)
    return node.value if isinstance(node, Enum) else node


def holder(data: dict, name: str) -> tuple[dict | None, str]:
    """The mapping of nested dicts (a config as a dict) that holds the dotted key `name`, and the key's leaf
    name; None where a section on the way is missing."""
    *path, leaf = name.split(".")
    node = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), leaf


def stage_keys(stage: str) -> list[str]:
    """The keys a stage reads (bprlab.config.schema.STAGES)."""
    return [k.name for k in keys() if k.stage == stage]


def encoding_keys() -> list[str]:
    """The keys a trained run's weights fix for encoding (its saved config decides them)."""
    return [k.name for k in keys() if k.encoding]


def describe(cfg: RunConfig) -> list[tuple[str, Any, str, str]]:
    """(key, resolved value, stage, help) for every key of a resolved config."""
    assert is_dataclass(cfg)
    return [(k.name, value_of(cfg, k.name), k.stage, k.help) for k in keys()]
