"""The index stage: encoded passage shards -> a saved index (rebuilt only when the encoding changed)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bprlab.artifacts import fingerprint, read_json
from bprlab.config.schema import RunConfig
from bprlab.errors import StageError
from bprlab.index.base import META, create_index, input_kind, save_index
from bprlab.runs import RunPaths, index_build_tag

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def build_index(cfg: RunConfig, force: bool = False) -> Path:
    paths = RunPaths(cfg)
    encoded = paths.passages(input_kind(cfg.index))
    if not (encoded / MANIFEST).is_file():
        raise StageError(f"{encoded}: no encoded passages; run `bprlab encode` first")
    manifest = read_json(encoded / MANIFEST)
    stamp = fingerprint(manifest, index_build_tag(cfg.index))
    out = paths.index
    if not force and (out / META).is_file() and read_json(out / META).get("source") == stamp:
        log.info("%s is current", out)
        return out
    values, manifest = read_encoded(encoded)
    index = create_index(cfg.index, manifest["dim"])
    index.build(values)
    save_index(index, cfg.index, manifest["dim"], out, source=stamp)
    return out


def _shards(directory: Path) -> list[Path]:
    shards = sorted(directory.glob("*.npz"))
    if not shards:
        raise StageError(f"{directory}: no shard files")
    return shards


def check_encoded(directory: Path) -> None:
    """Every row 0..N-1 is present in some rank's shard (reads only the row ids)."""
    n = read_json(directory / MANIFEST)["num_passages"]
    seen = np.zeros(n, dtype=bool)
    for shard in _shards(directory):
        with np.load(shard) as data:
            seen[data["rows"]] = True
    if not seen.all():
        raise StageError(f"{directory}: {int((~seen).sum())} of {n} passages missing from the shards")


def read_encoded(directory: Path) -> tuple[np.ndarray, dict]:
    """All shards merged in row order; duplicate rows (distributed-sampler padding) dropped."""
    manifest = read_json(directory / MANIFEST)
    rows, values = [], []
    for shard in _shards(directory):
        with np.load(shard) as data:
            rows.append(data["rows"])
            values.append(data["values"])
    unique, first = np.unique(np.concatenate(rows), return_index=True)
    if len(unique) != manifest["num_passages"]:
        raise StageError(f"{directory}: shards hold {len(unique)} passages, manifest says {manifest['num_passages']}")
    return np.concatenate(values)[first], manifest
