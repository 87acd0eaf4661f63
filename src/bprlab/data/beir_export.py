"""Write a DPR-format dataset as a BEIR folder: its passages as corpus.jsonl, a biencoder file's questions as
queries.jsonl and their positive passages as qrels (grade 1). The squad task exported this way is the fixture
the transfer table and the tests evaluate on (`make beir-fixture`: data/squad-beir/ from data/squad/'s dev
questions, which no squad model trains on).

    python -m bprlab.data.beir_export data/squad data/squad-beir
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable

from bprlab.artifacts import atomic_dir
from bprlab.data.beir import CORPUS, QRELS, QRELS_HEADER, QUERIES
from bprlab.data.records import BiencoderRecord, Passage
from bprlab.errors import DataFormatError


def write_beir(out: str | Path, passages: Iterable[Passage], records: list[BiencoderRecord], split: str = "test",
               source: str = "") -> dict:
    """Positives are matched to corpus documents by passage id; a question whose positive is not in the corpus
    is an error (the qrels would name an unknown document)."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        ids = set()
        with open(tmp / CORPUS, "w", encoding="utf-8") as handle:
            for passage in passages:
                ids.add(passage.id)
                handle.write(json.dumps({"_id": passage.id, "title": passage.title, "text": passage.text}) + "\n")
        (tmp / QRELS).mkdir()
        with open(tmp / QUERIES, "w", encoding="utf-8") as queries, \
                open(tmp / QRELS / f"{split}.tsv", "w", encoding="utf-8") as qrels:
            qrels.write("\t".join(QRELS_HEADER) + "\n")
            for i, record in enumerate(records):
                qid = f"q{i + 1}"
                gold = [p.id for p in record.positives if p.id]
                if not gold or not set(gold) <= ids:
                    raise DataFormatError(source or "biencoder", f"entry {i}",
                                          "positive passages need ids that are in the corpus")
                queries.write(json.dumps({"_id": qid, "text": record.question,
                                          "metadata": {"answers": record.answers}}) + "\n")
                for doc in dict.fromkeys(gold):
                    qrels.write(f"{qid}\t{doc}\t1\n")
    return {"documents": len(ids), "queries": len(records), "folder": str(out)}


def main(argv: list[str]) -> int:
    from bprlab.data.readers import iter_passages, read_biencoder

    if len(argv) != 2:
        print("usage: python -m bprlab.data.beir_export <squad data folder> <out folder>", file=sys.stderr)
        return 2
    source, out = Path(argv[0]), Path(argv[1])
    dev = source / "biencoder-squad-dev.json"
    print(json.dumps(write_beir(out, iter_passages(source / "psgs_w100.tsv"), read_biencoder(dev), source=str(dev))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
