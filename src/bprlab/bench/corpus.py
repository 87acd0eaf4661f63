"""A synthetic corpus in DPR's formats, deterministic, at any size: psgs_w100-style passages (id, text, title),
biencoder train/dev JSON and test qa TSV whose answers occur in known passages.

Passage i has `words` words drawn from a fixed vocabulary by a generator seeded with (seed, i), so any passage
can be regenerated alone and two runs write byte-identical files. Question j is planted in passage
planted[j]: the passage carries a unique answer token `a<j>x`, and the question is the passage's first
`question_words` words (all of them with None): a retriever that works finds its passage, and the answer string
checks the whole chain down to has_answer.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

VOCAB = 20_000


def _words(rng: np.random.Generator, n: int) -> list[str]:
    return [f"w{i}" for i in rng.integers(0, VOCAB, n)]


def passage(i: int, seed: int, words: int) -> tuple[str, str]:
    rng = np.random.default_rng([seed, i])
    return " ".join(_words(rng, words)), "t" + " t".join(str(x) for x in rng.integers(0, VOCAB, 2))


def write_corpus(out: Path, num_passages: int, num_questions: int = 1000, seed: int = 0, words: int = 100,
                 chunk: int = 100_000, question_words: int | None = 12) -> dict:
    """Writes out/{psgs.tsv, train.json, dev.json, test.qa.csv}; returns their paths and the planted rows."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    planted = np.sort(rng.choice(num_passages, min(num_questions, num_passages), replace=False))
    answer_of = {int(row): j for j, row in enumerate(planted)}
    questions: list[tuple[str, str, int]] = []
    with open(out / "psgs.tsv", "w", newline="") as handle:
        handle.write("id\ttext\ttitle\n")
        for start in range(0, num_passages, chunk):
            lines = []
            for i in range(start, min(num_passages, start + chunk)):
                text, title = passage(i, seed, words)
                if i in answer_of:
                    j = answer_of[i]
                    parts = text.split(" ")
                    parts[words // 2] = f"a{j}x"
                    text = " ".join(parts)
                    questions.append((" ".join(parts[:question_words]), f"a{j}x", i))
                lines.append(f"{i + 1}\t{text}\t{title}\n")
            handle.write("".join(lines))
    with open(out / "test.qa.csv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        for question, answer, _ in questions:
            writer.writerow([question, repr([answer])])
    train = [_biencoder(q, a, row, seed, words, num_passages) for q, a, row in questions]
    (out / "train.json").write_text(json.dumps(train))
    (out / "dev.json").write_text(json.dumps(train[: max(1, len(train) // 10)]))
    return {"passages": out / "psgs.tsv", "train": out / "train.json", "dev": out / "dev.json",
            "test": out / "test.qa.csv", "planted": planted}


def _biencoder(question: str, answer: str, row: int, seed: int, words: int, num_passages: int) -> dict:
    def ctx(i):
        text, title = passage(i, seed, words)
        return {"title": title, "text": text, "passage_id": str(i + 1)}

    positive = ctx(row)
    parts = positive["text"].split(" ")
    parts[words // 2] = answer  # as in the corpus file
    positive["text"] = " ".join(parts)
    negative = (row + 1) % num_passages
    return {"question": question, "answers": [answer], "positive_ctxs": [positive],
            "hard_negative_ctxs": [ctx(negative)], "negative_ctxs": []}
