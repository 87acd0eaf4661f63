"""The test questions of any dataset kind: DPR qa files (answers), BEIR queries + qrels, jsonl queries."""

from __future__ import annotations

from pathlib import Path

from bprlab.config.enums import DatasetName
from bprlab.config.schema import DataConfig
from bprlab.data.paths import DataPaths
from bprlab.data.records import QARecord
from bprlab.errors import StageError


def read_test_questions(cfg: DataConfig, paths: DataPaths, store) -> list[QARecord]:
    """Questions to evaluate; BEIR / jsonl relevance judgements are checked against the store's document ids."""
    from bprlab.data.beir import read_beir_queries, read_jsonl_queries
    from bprlab.data.readers import read_qa

    if cfg.dataset is DatasetName.beir:
        questions = read_beir_queries(Path(cfg.path), cfg.split, set(store.table["id"]))
    elif cfg.dataset is DatasetName.jsonl:
        questions = read_jsonl_queries(Path(cfg.path), set(store.table["id"]))
    else:
        questions = read_qa(paths.test)
    if not questions:
        raise StageError(f"{paths.test}: no questions to evaluate")
    return questions
