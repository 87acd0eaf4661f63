"""Readers and writers for DPR's files (docs/method.md#data). Every malformed record raises `DataFormatError` naming the
file and the record (JSON entry index or 1-based line number) and what was expected.

- passages: `psgs_w100.tsv`, tab-separated with CSV quoting, header `id text title`; streamed row by row.
- biencoder: a JSON list of {question, answers, positive_ctxs, negative_ctxs, hard_negative_ctxs}.
- qa: tab-separated, no header, CSV quoting: question, then a Python list literal of answers, parsed with
  `ast.literal_eval` (never `eval`). JSON lines with `question` and `answer(s)` are read too.
"""

from __future__ import annotations

import ast
import csv
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

from bprlab.artifacts import atomic_path
from bprlab.data.beir import iter_corpus
from bprlab.data.records import BiencoderRecord, Passage, QARecord
from bprlab.errors import DataFormatError, bad_utf8

PASSAGE_HEADER = ("id", "text", "title")
_HEADER_TEXT = "id<TAB>text<TAB>title"

csv.field_size_limit(sys.maxsize)  # psgs_w100 rows are short, but custom corpora need not be


def _open(path: Path):
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    return open(path, newline="", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- passages


def iter_passages(path: str | Path) -> Iterator[Passage]:
    """Stream passages from a DPR passages TSV (21M rows for psgs_w100: never materialised here), or from a
    BEIR / jsonl corpus.jsonl (bprlab.data.beir)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        yield from iter_corpus(path)
        return
    try:
        yield from _iter_passages_tsv(path)
    except UnicodeDecodeError:
        raise bad_utf8(path) from None


def _iter_passages_tsv(path: Path) -> Iterator[Passage]:
    with _open(path) as handle:
        rows = csv.reader(handle, delimiter="\t")
        header = next(rows, None)
        if header is None or tuple(h.strip() for h in header) != PASSAGE_HEADER:
            raise DataFormatError(path, "line 1", f"expected the header {_HEADER_TEXT}, got {header!r}")
        for line, row in enumerate(rows, start=2):
            if len(row) != 3:
                raise DataFormatError(path, f"line {line}", f"expected 3 tab-separated fields (id, text, title), got {len(row)}")
            if not row[0].strip():
                raise DataFormatError(path, f"line {line}", "empty passage id")
            yield Passage(id=row[0], text=row[1], title=row[2])


def write_passages(path: str | Path, passages: Iterable[Passage]) -> int:
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(PASSAGE_HEADER)
        for passage in passages:
            writer.writerow((passage.id, passage.text, passage.title))
            count += 1
    return count


# ---------------------------------------------------------------------------------------------- qa


def read_qa(path: str | Path) -> list[QARecord]:
    path = Path(path)
    try:
        return _read_qa(path)
    except UnicodeDecodeError:
        raise bad_utf8(path) from None


def _read_qa(path: Path) -> list[QARecord]:
    if path.suffix == ".jsonl" or _looks_like_jsonl(path):
        return _read_qa_jsonl(path)
    records = []
    with _open(path) as handle:
        reader, line = csv.reader(handle, delimiter="\t"), 0
        for row in reader:
            start, line = line + 1, reader.line_num
            if line > start:  # one record over several lines: an unclosed quote swallowed the lines after it
                raise DataFormatError(path, f"line {start}", f"a quote opened here is not closed on the line: it "
                                                             f"swallows lines {start + 1}-{line} (records are one line each)")
            if not row:
                continue
            if len(row) < 2:
                raise DataFormatError(path, f"line {line}", "expected question<TAB>answer-list")
            answers = _parse_answer_list(row[1], path, f"line {line}")
            records.append(QARecord(question=row[0], answers=answers))
    return records


def _looks_like_jsonl(path: Path) -> bool:
    with _open(path) as handle:
        first = handle.readline().lstrip()
    return first.startswith("{")


def _read_qa_jsonl(path: Path) -> list[QARecord]:
    records = []
    with _open(path) as handle:
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"line {line}"
            try:
                item = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataFormatError(path, where, f"not valid JSON ({exc.msg})") from None
            if not isinstance(item, dict):
                raise DataFormatError(path, where, "expected a JSON object")
            answers = item.get("answers", item.get("answer"))
            records.append(
                QARecord(
                    question=_require_str(item, "question", path, where),
                    answers=_require_str_list(answers, "answers", path, where),
                )
            )
    return records


def _parse_answer_list(raw: str, path: Path, where: str) -> list[str]:
    try:
        answers = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise DataFormatError(path, where, f"answers are not a Python list literal: {raw[:80]!r}") from None
    return _require_str_list(answers, "answers", path, where)


def write_qa(path: str | Path, records: Iterable[QARecord]) -> int:
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        for record in records:
            writer.writerow((record.question, repr(list(record.answers))))
            count += 1
    return count


# ---------------------------------------------------------------------------------------------- biencoder


def read_biencoder(path: str | Path) -> list[BiencoderRecord]:
    path = Path(path)
    with _open(path) as handle:
        try:
            entries = json.load(handle)
        except UnicodeDecodeError:
            raise bad_utf8(path) from None
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, None, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(entries, list):
        raise DataFormatError(path, None, f"expected a JSON list of entries, got {type(entries).__name__}")
    return [_biencoder_record(entry, path, f"entry {i}") for i, entry in enumerate(entries)]


def _biencoder_record(entry: Any, path: Path, where: str) -> BiencoderRecord:
    if not isinstance(entry, dict):
        raise DataFormatError(path, where, "expected a JSON object")
    return BiencoderRecord(
        question=_require_str(entry, "question", path, where),
        answers=_require_str_list(entry.get("answers"), "answers", path, where),
        positives=_contexts(entry, "positive_ctxs", path, where, required=True),
        hard_negatives=_contexts(entry, "hard_negative_ctxs", path, where),
        negatives=_contexts(entry, "negative_ctxs", path, where),
    )


def _contexts(entry: dict, key: str, path: Path, where: str, required: bool = False) -> list[Passage]:
    if key not in entry:
        if required:
            raise DataFormatError(path, where, f"missing field '{key}'")
        return []
    ctxs = entry[key]
    if not isinstance(ctxs, list):
        raise DataFormatError(path, where, f"field '{key}' must be a list, got {type(ctxs).__name__}")
    passages = []
    for j, ctx in enumerate(ctxs):
        at = f"{where}, {key}[{j}]"
        if not isinstance(ctx, dict):
            raise DataFormatError(path, at, "expected a JSON object with title and text")
        pid = ctx.get("passage_id", ctx.get("psg_id"))
        passages.append(
            Passage(
                title=_require_str(ctx, "title", path, at),
                text=_require_str(ctx, "text", path, at),
                id=None if pid is None else str(pid),
            )
        )
    return passages


def write_biencoder(path: str | Path, records: Iterable[BiencoderRecord]) -> int:
    def ctx(passage: Passage) -> dict:
        return {"title": passage.title, "text": passage.text, "passage_id": passage.id}

    entries = [
        {
            "question": r.question,
            "answers": r.answers,
            "positive_ctxs": [ctx(p) for p in r.positives],
            "negative_ctxs": [ctx(p) for p in r.negatives],
            "hard_negative_ctxs": [ctx(p) for p in r.hard_negatives],
        }
        for r in records
    ]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(entries, ensure_ascii=False, indent=1))
    return len(entries)


# ---------------------------------------------------------------------------------------------- fields


def _require_str(entry: dict, key: str, path: Path, where: str) -> str:
    if key not in entry:
        raise DataFormatError(path, where, f"missing field '{key}'")
    value = entry[key]
    if not isinstance(value, str):
        raise DataFormatError(path, where, f"field '{key}' must be a string, got {type(value).__name__}")
    return value


def _require_str_list(value: Any, key: str, path: Path, where: str) -> list[str]:
    if value is None:
        raise DataFormatError(path, where, f"missing field '{key}'")
    if not isinstance(value, list):
        raise DataFormatError(path, where, f"field '{key}' must be a list of strings, got {type(value).__name__}")
    bad = [v for v in value if not isinstance(v, str)]
    if bad:
        raise DataFormatError(path, where, f"field '{key}' must hold strings only, found {bad[0]!r}")
    return value
