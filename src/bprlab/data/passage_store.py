"""The passage corpus as a memory-mapped Arrow table (Hugging Face `datasets`), never held in RAM.

Built once from a passages TSV (psgs_w100: 21M rows, ~13 GB) and rebuilt only when the TSV's content changes
(its sha256, taken once per process: seconds for psgs_w100, against hours of encoding). Row numbers
are the passage keys used everywhere downstream (encoding shards, index rows); the TSV's `id` column is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from torch.utils.data import Dataset

from bprlab.artifacts import atomic_dir, file_sha256, read_sound_json, write_json
from bprlab.data.readers import iter_passages
from bprlab.data.records import Passage
from bprlab.errors import DataFormatError

log = logging.getLogger(__name__)
SOURCE = "source.json"
ROWS = "rows.json"  # the rows digest (PassageStore.rows_digest), computed on first use


def _rows(path: str) -> Iterator[dict]:
    for passage in iter_passages(path):
        yield {"id": passage.id, "title": passage.title, "text": passage.text}


_HASHED: dict[tuple, str] = {}  # (path, size, mtime, inode) -> sha256, for files hashed in this process


def _source_stamp(tsv: Path) -> dict:
    """What the store was built from, by content: the file's sha256 (and its size). An edit that keeps the size
    and puts the modification time back is still an edit; the hash is taken once per process and file."""
    stat = tsv.stat()
    key = (str(tsv.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _HASHED:
        _HASHED[key] = file_sha256(tsv)
    return {"bytes": stat.st_size, "sha256": _HASHED[key]}


class PassageStore:
    def __init__(self, table, source: dict | None = None, store_dir: Path | None = None):
        self.table = table  # datasets.Dataset with columns id, title, text
        self.source = source or {}
        self.store_dir = store_dir
        self._columns: dict = {}  # one-column views, see `_gather`

    def fingerprint(self) -> str:
        """The corpus by content: the sha256 of the TSV the store was built from."""
        return self.source.get("sha256", "")

    def rows_digest(self) -> str:
        """The passages themselves (id, title, text of every row, in order), whatever file format they came from:
        a BEIR corpus.jsonl and a TSV holding the same rows agree here, so an encoding of one serves the other.
        Computed once per store and kept beside it (ROWS), keyed by the source file's hash."""
        cached = self.store_dir / ROWS if self.store_dir else None
        if cached is not None and cached.is_file():
            saved = _cached(cached)
            if saved.get("source_sha256") == self.fingerprint() and saved.get("rows_sha256"):
                return saved["rows_sha256"]
        digest = hashlib.sha256()
        for start in range(0, len(self.table), 10_000):
            part = self.table[start : start + 10_000]
            for row in zip(part["id"], part["title"], part["text"]):
                digest.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
        value = digest.hexdigest()
        if cached is not None:
            try:
                write_json(cached, {"source_sha256": self.fingerprint(), "rows_sha256": value})
            except OSError:  # a read-only store still answers
                pass
        return value

    @classmethod
    def open(cls, tsv: str | Path, store_dir: str | Path | None = None) -> "PassageStore":
        import datasets

        tsv = Path(tsv)
        store_dir = Path(store_dir) if store_dir else tsv.with_name(tsv.name + ".arrow")
        stamp = _source_stamp(iter_passages_checked(tsv))
        if (store_dir / SOURCE).is_file():
            saved = _cached(store_dir / SOURCE)
            if {k: saved.get(k) for k in stamp} == stamp:
                return cls(datasets.load_from_disk(str(store_dir)), saved, store_dir)
        log.info("building the passage store %s from %s (once)", store_dir, tsv)
        datasets.disable_progress_bars()  # one log line says it; per-split bars would bury an error about a record
        features = datasets.Features({k: datasets.Value("string") for k in ("id", "title", "text")})
        with tempfile.TemporaryDirectory(dir=store_dir.parent) as cache, atomic_dir(store_dir) as tmp:
            try:
                table = datasets.Dataset.from_generator(
                    _rows, gen_kwargs={"path": str(tsv)}, features=features, cache_dir=cache
                )
            except Exception as exc:  # datasets wraps our reader's error: surface the record it names
                raise _data_error_in(exc) or _empty_error(exc, tsv) or exc
            _check_unique_ids(table, tsv)
            table.save_to_disk(str(tmp))
            write_json(tmp / SOURCE, stamp)
        return cls(datasets.load_from_disk(str(store_dir)), stamp, store_dir)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, row: int) -> Passage:
        item = self.table[int(row)]
        return Passage(title=item["title"], text=item["text"], id=item["id"])

    def texts(self, rows: Sequence[int]) -> list[str]:
        """The texts of `rows`, in order, from the text column alone (titles and ids are not read)."""
        return self._gather("text", rows)

    def _gather(self, column: str, rows: Sequence[int]) -> list[str]:
        """One column's values at `rows`, in order, through `datasets`' row lookup on a one-column view of the store
        (made once per column). An Arrow `take` on the whole chunked column would concatenate its chunks first, a
        cost that grows with the corpus on every call."""
        if not len(rows):
            return []
        if column not in self._columns:
            self._columns[column] = self.table.select_columns([column])
        return self._columns[column][[int(r) for r in rows]][column]

    def title_texts(self, batch_size: int = 10_000) -> Iterator[str]:
        """`title text` of every passage in row order, read a batch at a time (what lexical indexes consume)."""
        for start in range(0, len(self.table), batch_size):
            part = self.table[start : start + batch_size]
            yield from (f"{title} {text}" for title, text in zip(part["title"], part["text"]))

    def ids(self, rows: Sequence[int]) -> list[str]:
        """The passages' own ids, in the order of `rows`."""
        return self._gather("id", rows)


def _data_error_in(exc: BaseException) -> DataFormatError | None:
    while exc is not None:
        if isinstance(exc, DataFormatError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _empty_error(exc: BaseException, tsv: Path) -> DataFormatError | None:
    """A corpus with a header and no rows: datasets fails with an error about its split; say what it means."""
    if next(iter_passages(tsv), None) is None:
        return DataFormatError(tsv, None, "no passages (the file has a header and no rows)")
    return None


def _check_unique_ids(table, tsv: Path) -> None:
    """Passage ids name passages in qrels, run files and exports: two rows with one id is an error. Counted in
    Arrow (cheap at 21M rows); the first repeated one is located only when there is one."""
    import pyarrow.compute as pc

    ids = table.data.column("id")
    if pc.count_distinct(ids).as_py() == len(ids):
        return
    seen: dict[str, int] = {}
    for row, value in enumerate(ids.to_pylist()):
        if value in seen:
            line = f"line {row + 2}" if tsv.suffix != ".jsonl" else f"row {row + 1}"
            raise DataFormatError(tsv, line, f"duplicate passage id {value!r} (first at row {seen[value] + 1})")
        seen[value] = row


def iter_passages_checked(tsv: Path) -> Path:
    """Fail early, with the file named, when the TSV is missing or its header is wrong."""
    next(iter_passages(tsv), None)
    return tsv


class IndexedPassages(Dataset):
    """(row, passage) pairs for encoding the corpus."""

    def __init__(self, store: PassageStore):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, row: int) -> tuple[int, Passage]:
        return row, self.store[row]


def _cached(path: Path) -> dict:
    """A cache's record, or {} where it is damaged: a cache is rebuilt, never trusted or fatal."""
    return read_sound_json(path) or {}
