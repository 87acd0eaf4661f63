"""Typed records for DPR's data formats (docs/method.md#data)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Passage:
    title: str
    text: str
    id: str | None = None  # psgs_w100 id ("1" .. "21015324"); biencoder ctxs often carry it as passage_id


@dataclass
class BiencoderRecord:
    """One entry of biencoder-{nq,trivia}-{train,dev}.json."""

    question: str
    answers: list[str]
    positives: list[Passage]
    hard_negatives: list[Passage] = field(default_factory=list)
    negatives: list[Passage] = field(default_factory=list)


@dataclass
class QARecord:
    """A test question: a row of {nq,trivia}-{dev,test}.qa.csv (question + answer strings or regexes), or a BEIR /
    jsonl query with its id and relevance judgements {document id: grade}."""

    question: str
    answers: list[str]
    id: str | None = None
    relevant: dict[str, int] | None = None
