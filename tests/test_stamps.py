"""Stamps from the schema (bprlab.stamps): a key moves its own stage's stamp and every one downstream, never one
upstream; keys of no stage and paths move none; files enter by content; every key a stage claims is read by that
stage's code; artifacts stamped under format 1 stay current."""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import shutil
from enum import Enum
from pathlib import Path

import pytest

from bprlab.config import load_config
from bprlab.config.enums import IndexKind
from bprlab.config.index_kinds import reads
from bprlab.config.keys import keys
from bprlab.config.schema import RunConfig
from bprlab.stamps import STAGES, encode_stamp, stage_stamp, train_stamp, unit_stamp, weights_stamp

SRC = Path(__file__).resolve().parents[1] / "src" / "bprlab"


def _set(cfg: RunConfig, name: str, value) -> RunConfig:
    cfg = copy.deepcopy(cfg)
    *path, leaf = name.split(".")
    node = cfg
    for part in path:
        node = getattr(node, part)
    setattr(node, leaf, value)
    return cfg


def _get(cfg: RunConfig, name: str):
    node = cfg
    for part in name.split("."):
        node = getattr(node, part)
    return node


def _other(value, annotation: str):
    """A value of the key's type other than `value`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, Enum):
        return next(member for member in type(value) if member != value)
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 0.5
    if isinstance(value, list):
        return [*value, (value[-1] if value else 0) + 1]
    if isinstance(value, str):
        return value + "-other"
    assert value is None, (value, annotation)
    return 0.25 if "float" in annotation else 7 if "int" in annotation else "other"


def _config_reading(name: str, required: bool = True) -> RunConfig:
    """The default config, with an index kind that reads `name` where it is an index key."""
    cfg = RunConfig()
    section, _, leaf = name.partition(".")
    if section != "index":
        return cfg
    for kind in IndexKind:
        for rescore in (False, True):
            candidate = _set(_set(cfg, "index.kind", kind), "index.rescore", rescore)
            if leaf in reads(candidate.index):
                return candidate
    assert not required, f"no index kind reads {name}"
    return cfg


def _stamps(cfg: RunConfig) -> dict[str, str]:
    return {stage: stage_stamp(cfg, stage) for stage in STAGES}


STAMPED = [k for k in keys() if k.stage in STAGES and not k.content]


@pytest.mark.parametrize("key", STAMPED, ids=[k.name for k in STAMPED])
def test_a_key_moves_its_stage_and_every_stage_downstream_and_none_upstream(key):
    cfg = _config_reading(key.name)
    changed = _set(cfg, key.name, _other(_get(cfg, key.name), key.type))
    before, after = _stamps(cfg), _stamps(changed)
    position = STAGES.index(key.stage)
    assert [before[s] == after[s] for s in STAGES[:position]] == [True] * position  # upstream: untouched
    assert all(before[s] != after[s] for s in STAGES[position:])  # its own stage and everything after it


UNSTAMPED = [k for k in keys() if k.stage not in STAGES or k.content]


@pytest.mark.parametrize("key", UNSTAMPED, ids=[k.name for k in UNSTAMPED])
def test_keys_of_no_stage_and_paths_by_name_move_no_stamp(key):
    """Paths, logging, threads, devices, batch sizes of inference: no number moves; prepare's keys and the paths
    of files enter through the files' content."""
    cfg = _config_reading(key.name, required=False)
    changed = _set(cfg, key.name, _other(_get(cfg, key.name), key.type))
    assert _stamps(changed) == _stamps(cfg)


def test_a_kind_ignores_the_index_keys_it_does_not_read():
    flat = _set(RunConfig(), "index.kind", IndexKind.flat)
    assert _stamps(_set(flat, "index.hnsw_m", 64)) == _stamps(flat)
    hnsw = _set(RunConfig(), "index.kind", IndexKind.hnsw)
    assert _stamps(_set(hnsw, "index.hnsw_m", 64))["index"] != _stamps(hnsw)["index"]


def test_files_enter_by_content_not_by_path(tiny_overrides, tiny_data, tmp_path):
    cfg = load_config(None, tiny_overrides)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name in ("train", "dev", "test", "passages"):
        shutil.copy(tiny_data[name], moved / tiny_data[name].name)
    elsewhere = load_config(None, [*tiny_overrides, f"data.train_file={moved / 'train.json'}",
                                   f"data.dev_file={moved / 'dev.json'}", f"data.test_file={moved / 'test.qa.csv'}",
                                   f"data.passages_file={moved / 'psgs.tsv'}"])
    assert train_stamp(elsewhere) == train_stamp(cfg) and unit_stamp(elsewhere) == unit_stamp(cfg)
    entries = json.loads((moved / "train.json").read_text())
    (moved / "train.json").write_text(json.dumps(entries[1:]))  # one question fewer
    assert train_stamp(elsewhere) != train_stamp(cfg) and unit_stamp(elsewhere) != unit_stamp(cfg)
    (moved / "test.qa.csv").write_text((moved / "test.qa.csv").read_text().split("\n", 1)[1])
    (moved / "train.json").write_text(json.dumps(entries))
    assert train_stamp(elsewhere) == train_stamp(cfg) and unit_stamp(elsewhere) != unit_stamp(cfg)


# --- every key a stage claims is read by that stage's code -------------------------------------------------------

STAGE_CODE = {  # where each stage's code lives (module paths under src/bprlab)
    "prepare": ("data/",),
    "train": ("lit/", "core/", "data/"),
    "encode": ("lit/", "core/", "data/", "runs.py"),
    "index": ("index/", "config/index_kinds.py"),
    "search": ("index/", "eval/", "retriever.py"),
    "eval": ("eval/", "data/"),
    "none": ("",),
}
NOT_READERS = ("config/schema.py", "config/keys.py", "stamps.py")  # declare or hash keys, read none


def _sections(node=RunConfig, prefix="") -> dict[str, str]:
    out = {}
    for f in dataclasses.fields(node):
        if f.metadata.get("section"):
            out[prefix + f.name] = f.default_factory.__name__
            out.update(_sections(f.default_factory, f"{prefix}{f.name}."))
    return out


def _reads() -> tuple[dict[tuple[str, str], set[str]], dict[str, set[str]]]:
    """(holder, attribute) -> modules where `holder.attribute` is read (holder: the name or attribute before the
    dot, `get("attribute")` on a saved config as holder None); section -> the names that hold it (parameters
    annotated with its class, names assigned from `<x>.<section>`)."""
    sections = _sections()
    found: dict[tuple[str, str], set[str]] = {}
    holders: dict[str, set[str]] = {section: {section.split(".")[-1]} for section in sections}
    for path in SRC.rglob("*.py"):
        module = str(path.relative_to(SRC))
        if module in NOT_READERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                holder = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", None)
                found.setdefault((holder, node.attr), set()).add(module)
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "get"
                  and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                found.setdefault((None, node.args[0].value), set()).add(module)
            elif isinstance(node, ast.arg) and node.annotation is not None:
                for section, cls in sections.items():
                    if cls in ast.unparse(node.annotation):
                        holders[section].add(node.arg)
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute):
                for section in sections:
                    if node.value.attr == section.split(".")[-1]:
                        holders[section] |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return found, holders


def _readers(name: str, found, holders) -> set[str]:
    section, _, leaf = name.rpartition(".")
    names = holders.get(section, set()) if section else {"cfg", "config", "self"}
    return set().union(*(found.get((holder, leaf), set()) for holder in (*names, None)))


def test_every_key_is_read_by_the_code_of_its_stage():
    found, holders = _reads()
    unread = []
    for key in keys():
        modules = _readers(key.name, found, holders)
        if not any(module.startswith(STAGE_CODE[key.stage]) for module in modules):
            unread.append(f"{key.name} ({key.stage}: read in {sorted(modules) or 'nothing'})")
    assert not unread, "keys their stage's code never reads (wire them or remove them): " + "; ".join(unread)
    # the scan sees what it should not: a key nobody reads (the removed train.part) has no reader
    assert not _readers("train.part", found, holders) and _readers("encode.part", found, holders)


# --- format 1 ----------------------------------------------------------------------------------------------------

def _format1_config(tiny_data) -> RunConfig:
    """A config whose format-1 stamps were computed by the code of format 1 (at 4487844) and are pinned below."""
    return load_config(None, ["data.dataset=custom", f"data.train_file={tiny_data['train']}",
                              f"data.dev_file={tiny_data['dev']}", f"data.test_file={tiny_data['test']}",
                              f"data.passages_file={tiny_data['passages']}", "train.max_steps=9", "seed=5"])


FORMAT1_TRAIN = "aaaec5c522cd5634"
FORMAT1_UNIT = "95d514a08667a1c6"


def test_format1_stamps_are_the_ones_format1_made(tiny_data):
    from bprlab.stamps import evaluation_files, training_files
    from bprlab.stamps import format1_train_stamp as format1_train
    from bprlab.stamps import format1_unit_stamp as format1_unit

    cfg = _format1_config(tiny_data)
    assert format1_train(cfg, training_files(cfg)) == FORMAT1_TRAIN
    assert format1_unit(cfg, evaluation_files(cfg), training_files(cfg)) == FORMAT1_UNIT
    assert train_stamp(cfg) != FORMAT1_TRAIN  # format 2 differs: recognising format 1 is needed


def test_a_key_added_after_format1_is_in_no_format1_stamp_unless_at_its_default(tiny_data, monkeypatch):
    from bprlab import stamps
    from bprlab.stamps import training_files

    cfg = _format1_config(tiny_data)
    frozen = dict(stamps._KEYS)
    frozen["optim"] = frozen["optim"].replace(" projection_lr", "")  # as if optim.projection_lr were new
    monkeypatch.setattr(stamps, "_KEYS", frozen)
    assert stamps.format1_train_stamp(cfg, training_files(cfg)) is not None  # at its default: left out
    assert stamps.format1_train_stamp(_set(cfg, "optim.projection_lr", 1e-3), training_files(cfg)) is None
    frozen["train"] = frozen["train"].replace(" log_every_n_steps", "")  # a new key of no stage moves no number
    assert stamps.format1_train_stamp(_set(cfg, "train.log_every_n_steps", 3), training_files(cfg)) is not None


def test_format1_index_stamps_are_the_ones_format1_made():
    """Pinned to format 1's own formula (fingerprint(manifest, the kind's folder tag, layout 2), at 4487844)."""
    from bprlab.stamps import format1_index_stamp

    manifest = {"stamp": {"x": 1}, "dim": 8}
    assert format1_index_stamp(_set(RunConfig(), "index.kind", IndexKind.binary_flat), manifest) == "b61ee236fa40ce2a"
    assert format1_index_stamp(_set(RunConfig(), "index.kind", IndexKind.pq), manifest) == "09ace13a3e81c8fe"


def test_no_format1_stamp_is_a_match_where_format1_cannot_describe_the_config(tiny_data, monkeypatch):
    """A config format 1 never saw (a key added since, set; a content key included) has no format-1 stamp, and a
    record without a stamp is never taken for one."""
    from bprlab import stamps
    from bprlab.stamps import format1_encode_stamp, format1_index_stamp, training_files

    cfg = _format1_config(tiny_data)
    frozen = dict(stamps._KEYS)
    frozen["data"] = frozen["data"].replace(" dev_file", "")  # as if data.dev_file (a content key) were new
    monkeypatch.setattr(stamps, "_KEYS", frozen)
    assert stamps.format1_train_stamp(cfg, training_files(cfg)) is None  # set: a file format 1 never read
    assert format1_index_stamp(cfg, {"stamp": {}}) is None
    weights = {"checkpoint": "last.ckpt", "bytes": 1, "sha256": "0"}
    assert format1_encode_stamp(cfg, weights, "emb", _Store()) is None


class _Store:
    def fingerprint(self) -> str:
        return "corpus"

    def __len__(self) -> int:
        return 8


def test_format1_encodings_of_the_untrained_encoder_are_not_taken_as_current():
    """Format 1 named the untrained encoder by model name and projection size alone: its encodings are made again."""
    from bprlab.stamps import format1_encode_stamp

    cfg = RunConfig()
    assert format1_encode_stamp(cfg, weights_stamp(None, cfg), "emb", _Store()) is None
    trained = {"checkpoint": "best.ckpt", "bytes": 10, "sha256": "ab"}
    assert format1_encode_stamp(cfg, trained, "emb", _Store())["weights"] == trained


def test_the_untrained_encoders_passages_are_stamped_by_what_encodes_them():
    """Method (it decides the passage token type where the key is null), passage length and token type move the
    untrained encoder's weights stamp; the question length does not (passages never read it); a checkpoint named by
    a path enters by content only."""
    from bprlab.core.inputs import passage_token_type

    cfg = RunConfig()
    base = weights_stamp(None, cfg)
    assert weights_stamp(None, _set(cfg, "method", next(m for m in type(cfg.method) if m != cfg.method))) != base
    assert weights_stamp(None, _set(cfg, "data.max_passage_length", 99)) != base
    assert weights_stamp(None, _set(cfg, "model.passage_text_token_type", 1 - passage_token_type(cfg))) != base
    assert weights_stamp(None, _set(cfg, "data.max_question_length", 99)) == base
    trained = {"checkpoint": "best.ckpt", "bytes": 10, "sha256": "ab"}
    assert encode_stamp(_set(cfg, "checkpoint", "/a/x.ckpt"), trained, "emb", _Store()) == \
        encode_stamp(_set(cfg, "checkpoint", "/b/x.ckpt"), trained, "emb", _Store())
    assert encode_stamp(_set(cfg, "encode.shard_size", 7), trained, "emb", _Store()) != \
        encode_stamp(cfg, trained, "emb", _Store())
