"""The index stage: encoded passage shards -> a saved index (rebuilt only when the encoding changed)."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from bprlab.artifacts import read_json
from bprlab.config.schema import RunConfig
from bprlab.errors import StageError
from bprlab.index.base import META, create_index, input_kind, save_index
from bprlab.runs import RunPaths
from bprlab.stamps import format1_index_stamp, index_stamp

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
FORMAT = 2  # index folder layout; bumping it rebuilds older indexes (2: binary kinds as codes.npy + buckets.npz)


def build_index(cfg: RunConfig, force: bool = False) -> Path:
    paths = RunPaths(cfg)
    if input_kind(cfg.index) == "text":
        return _build_text_index(cfg, paths, force)
    encoded = paths.passages(input_kind(cfg.index))
    if not (encoded / MANIFEST).is_file():
        raise StageError(f"{encoded}: no encoded passages; run `bprlab encode` first")
    manifest = read_json(encoded / MANIFEST)
    stamp = index_stamp(cfg, manifest, FORMAT)
    out = paths.index
    if not force and _current(out, cfg, manifest, stamp):
        log.info("%s is current", out)
        return out
    values, manifest = read_encoded(encoded)
    if values.dtype.kind == "f" and not np.isfinite(values).all():  # faiss would index them, or worse
        bad = int((~np.isfinite(values).all(axis=1)).sum())
        raise StageError(f"{encoded}: {bad} of {len(values)} passage vectors are not finite (NaN or inf): the weights "
                         "that encoded them are broken; train again (`bprlab train <experiment.yaml> --force`)")
    index = create_index(cfg.index, manifest["dim"])
    index.build(values)
    # the weights that encoded the passages: evaluate refuses to search them with other question weights
    save_index(index, cfg.index, manifest["dim"], out, source=stamp, weights=manifest.get("stamp", {}).get("weights"))
    return out


def _build_text_index(cfg: RunConfig, paths: RunPaths, force: bool) -> Path:
    """BM25: built from the passage store's titles and texts; current while the corpus is the same."""
    from bprlab.data.passage_store import PassageStore
    from bprlab.data.paths import data_paths

    store = PassageStore.open(data_paths(cfg.data).passages)
    corpus = {"corpus": store.fingerprint(), "num_passages": len(store)}
    stamp = index_stamp(cfg, corpus, FORMAT)
    out = paths.index
    if not force and _current(out, cfg, corpus, stamp):
        log.info("%s is current", out)
        return out
    index = create_index(cfg.index, None)
    index.build(store.title_texts())
    save_index(index, cfg.index, 0, out, source=stamp)
    return out


def _current(out: Path, cfg: RunConfig, source: dict, stamp: str) -> bool:
    """The index in `out` was built from `source` (the encoding's manifest, or BM25's corpus) with these index
    keys: its recorded stamp is this one, or format 1's for the same inputs (bprlab.stamps)."""
    if not (out / META).is_file():
        return False
    recorded = read_json(out / META).get("source")
    if recorded is None:
        return False
    format1 = format1_index_stamp(cfg, source) if FORMAT == 2 else None  # format 1 stamped layout 2
    return recorded in (stamp, format1)


def _shards(directory: Path) -> list[Path]:
    shards = sorted(directory.glob("*.npz"))
    if not shards:
        raise StageError(f"{directory}: no shard files")
    return shards


def _load_shard(shard: Path):
    try:
        return np.load(shard)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise StageError(f"{shard}: damaged ({str(exc).splitlines()[0][:80]}); encode again with "
                         "`bprlab encode <experiment.yaml> --force`") from None


def check_encoded(directory: Path) -> None:
    """Every row 0..N-1 is present in some rank's shard (reads only the row ids)."""
    n = read_json(directory / MANIFEST)["num_passages"]
    seen = np.zeros(n, dtype=bool)
    for shard in _shards(directory):
        with _load_shard(shard) as data:
            seen[data["rows"]] = True
    if not seen.all():
        raise StageError(f"{directory}: {int((~seen).sum())} of {n} passages missing from the shards")


def read_encoded(directory: Path) -> tuple[np.ndarray, dict]:
    """All shards merged in row order into one preallocated array (peak memory: the result plus one shard);
    rows repeated across shards (distributed-sampler padding) are written twice with the same values."""
    manifest = read_json(directory / MANIFEST)
    n = manifest["num_passages"]
    out, seen = None, np.zeros(n, dtype=bool)
    for shard in _shards(directory):
        with _load_shard(shard) as data:
            rows, values = data["rows"], data["values"]
            if len(rows) and (rows.min() < 0 or rows.max() >= n):
                raise StageError(f"{shard}: rows outside 0..{n - 1}; the encoding is damaged: rerun `bprlab encode --force`")
            if out is None:
                if len(rows) == n and (rows == np.arange(n)).all():  # one shard in row order: use it as it is
                    return values, manifest
                out = np.empty((n, *values.shape[1:]), values.dtype)
            out[rows] = values
            seen[rows] = True
            del values
    if out is None or not seen.all():
        raise StageError(f"{directory}: shards hold {int(seen.sum())} passages, manifest says {n}")
    return out, manifest
