"""Corpora and queries beyond DPR's format: a BEIR folder and a plain jsonl folder (read-only, evaluation data).

BEIR (Thakur et al. 2021, beir-cellar/beir, `GenericDataLoader`), field names exactly as there:
  corpus.jsonl       {"_id": str, "title": str, "text": str, "metadata": {...}}  one document per line
  queries.jsonl      {"_id": str, "text": str, "metadata": {...}}                every split's queries
  qrels/<split>.tsv  header `query-id  corpus-id  score`, integer relevance grades
As in BEIR, the evaluated queries are those the split's qrels name (queries.jsonl holds every split's).

jsonl (a corpus and questions of your own):
  corpus.jsonl       {"id" or "_id", "title" (optional), "text"}
  queries.jsonl      {"id" or "_id" (optional), "question" or "text", "answers": [str] (optional),
                      "relevant": [doc id] or {doc id: grade} (optional)}; each query needs answers or relevant.

Every malformed line raises `DataFormatError` naming the file and the 1-based line.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Iterator

from bprlab.data.records import Passage, QARecord
from bprlab.errors import DataFormatError, bad_utf8

log = logging.getLogger(__name__)
CORPUS, QUERIES, QRELS = "corpus.jsonl", "queries.jsonl", "qrels"
QRELS_HEADER = ("query-id", "corpus-id", "score")


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    with open(path, "rb") as handle:
        for line, raw_bytes in enumerate(handle, start=1):
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError:
                raise bad_utf8(path) from None
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataFormatError(path, f"line {line}", f"not valid JSON ({exc.msg})") from None
            if not isinstance(item, dict):
                raise DataFormatError(path, f"line {line}", "expected a JSON object")
            yield line, item


def _string(item: dict, keys: tuple[str, ...], path: Path, line: int, required: bool = True) -> str | None:
    for key in keys:
        if key in item:
            value = item[key]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key in ("_id", "id"):
                return str(value)  # numeric ids are common in jsonl corpora
            if not isinstance(value, str):
                raise DataFormatError(path, f"line {line}", f"'{key}' must be a string, got {type(value).__name__}")
            if key in ("_id", "id") and not value.strip():
                raise DataFormatError(path, f"line {line}", f"empty '{key}'")
            return value
    if required:
        raise DataFormatError(path, f"line {line}", f"missing '{' or '.join(keys)}'")
    return None


def iter_corpus(path: str | Path, id_keys: tuple[str, ...] = ("_id", "id")) -> Iterator[Passage]:
    """Stream corpus.jsonl as passages, document ids kept; duplicate ids are an error (they would make the
    qrels ambiguous). The ids seen are held in a set: BEIR corpora (up to ~9M documents) fit."""
    path, seen = Path(path), set()
    for line, item in _json_lines(path):
        doc_id = _string(item, id_keys, path, line)
        if doc_id in seen:
            raise DataFormatError(path, f"line {line}", f"duplicate document id {doc_id!r}")
        seen.add(doc_id)
        yield Passage(id=doc_id, title=_string(item, ("title",), path, line, required=False) or "",
                      text=_string(item, ("text",), path, line))


def _queries(path: Path, text_keys: tuple[str, ...]) -> dict[str, tuple[int, dict, str]]:
    out: dict[str, tuple[int, dict, str]] = {}
    for line, item in _json_lines(path):
        query_id = _string(item, ("_id", "id"), path, line, required=False) or str(line)
        if query_id in out:
            raise DataFormatError(path, f"line {line}", f"duplicate query id {query_id!r}")
        out[query_id] = (line, item, _string(item, text_keys, path, line))
    return out


def read_qrels(path: Path, queries: dict, doc_ids: set[str] | None) -> dict[str, dict[str, int]]:
    """qrels/<split>.tsv -> {query id: {doc id: grade}}. An unknown query, a repeated (query, document) pair or a
    negative grade is an error; a document absent from the corpus is left out with one warning (BEIR evaluates
    such folders: ArguAna's test qrels names one), and it is an error only when no line is left."""
    if not path.is_file():
        raise DataFormatError(path, None, "file not found (BEIR keeps relevance judgements in qrels/<split>.tsv; "
                                          "choose the split with data.split)")
    qrels: dict[str, dict[str, int]] = {}
    absent: list[int] = []
    for line, (query_id, doc_id, grade) in _qrels_lines(path):
        if query_id not in queries:
            raise DataFormatError(path, f"line {line}", f"query id {query_id!r} is not in {QUERIES}")
        if grade < 0:
            raise DataFormatError(path, f"line {line}", f"grade {grade} is negative; BEIR grades are 0 (not "
                                                        "relevant) or more")
        if doc_id in qrels.get(query_id, {}):
            raise DataFormatError(path, f"line {line}", f"query {query_id!r} and document {doc_id!r} are judged "
                                                        "twice; keep one line per pair")
        if doc_id_unknown(doc_id, doc_ids):
            absent.append(line)
            continue
        qrels.setdefault(query_id, {})[doc_id] = grade
    if not qrels:
        raise DataFormatError(path, None, "no relevance judgements" + (
            f" of documents in {CORPUS} ({len(absent)} lines name documents it does not hold)" if absent else ""))
    if absent:
        log.warning("%s: %d qrels line(s) name documents absent from %s (first: line %d); evaluated without them",
                    path, len(absent), CORPUS, absent[0])
    return qrels


def _qrels_lines(path: Path) -> Iterator[tuple[int, tuple[str, str, int]]]:
    """(line number, (query id, document id, grade)) of every judgement, the header checked."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle, delimiter="\t")
            header = next(rows, None)
            if header is None or tuple(h.strip() for h in header) != QRELS_HEADER:
                raise DataFormatError(path, "line 1", f"expected the header {'<TAB>'.join(QRELS_HEADER)}, "
                                                      f"got {header!r}")
            for line, row in enumerate(rows, start=2):
                if not row:
                    continue
                if len(row) != 3:
                    raise DataFormatError(path, f"line {line}", f"expected 3 tab-separated fields, got {len(row)}")
                query_id, doc_id, score = (field.strip() for field in row)
                try:
                    grade = int(score)
                except ValueError:
                    raise DataFormatError(path, f"line {line}", f"score {score!r} is not an integer") from None
                yield line, (query_id, doc_id, grade)
    except UnicodeDecodeError:
        raise bad_utf8(path) from None


def doc_id_unknown(doc_id: str, doc_ids: set[str] | None) -> bool:
    return doc_ids is not None and doc_id not in doc_ids


def read_beir_queries(folder: Path, split: str, doc_ids: set[str] | None = None) -> list[QARecord]:
    """The split's queries with their qrels, in queries.jsonl order."""
    queries = _queries(folder / QUERIES, ("text",))
    qrels = read_qrels(folder / QRELS / f"{split}.tsv", queries, doc_ids)
    return [QARecord(question=text, answers=[], id=query_id, relevant=qrels[query_id])
            for query_id, (_, _, text) in queries.items() if query_id in qrels]


def read_jsonl_queries(folder: Path, doc_ids: set[str] | None = None) -> list[QARecord]:
    path = folder / QUERIES
    records = []
    for query_id, (line, item, text) in _queries(path, ("question", "text")).items():
        answers = item.get("answers", item.get("answer"))
        if answers is not None and (not isinstance(answers, list) or not all(isinstance(a, str) for a in answers)):
            raise DataFormatError(path, f"line {line}", "'answers' must be a list of strings")
        relevant = _relevant(item.get("relevant"), path, line, doc_ids)
        if not answers and not relevant:
            raise DataFormatError(path, f"line {line}", "a query needs 'answers' or 'relevant' to be evaluated")
        records.append(QARecord(question=text, answers=answers or [], id=query_id, relevant=relevant))
    return records


def _relevant(value, path: Path, line: int, doc_ids: set[str] | None) -> dict[str, int] | None:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        value = {str(v): 1 for v in value}
    if not isinstance(value, dict) or not all(isinstance(g, int) and not isinstance(g, bool) for g in value.values()):
        raise DataFormatError(path, f"line {line}", "'relevant' must be a list of document ids or {id: integer grade}")
    for doc_id in value:
        if doc_id_unknown(str(doc_id), doc_ids):
            raise DataFormatError(path, f"line {line}", f"relevant document {doc_id!r} is not in {CORPUS}")
    return {str(k): v for k, v in value.items()}
