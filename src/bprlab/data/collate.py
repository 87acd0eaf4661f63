"""Batches for the dual encoder. The tokenizer is passed in; nothing here knows about devices or Lightning.

Passages are encoded as the pair `[CLS] title [SEP] text [SEP]` (docs/method.md#model). BPR gives the text
segment token type 1 and DPR token type 0 everywhere; `passage_text_token_type` picks, and index time uses the
same collator (`Collator.from_config`, the one place a collator is made).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from bprlab.data.records import Passage


@dataclass
class Sample:
    """One question with its passages; `passages[0]` is the positive."""

    question: str
    passages: list[Passage]


class Collator:
    def __init__(self, tokenizer, max_question_length: int, max_passage_length: int, passage_text_token_type: int):
        self.tokenizer = tokenizer
        self.max_question_length = max_question_length
        self.max_passage_length = max_passage_length
        self.passage_text_token_type = passage_text_token_type

    @classmethod
    def from_config(cls, cfg, tokenizer=None) -> "Collator":
        """The one place a collator is made: lengths and the passage text's token type from a run config (the
        config saved in a checkpoint, for a trained run), the tokenizer of its model unless one is given."""
        from bprlab.core.encoder import load_tokenizer

        token_type = cfg.model.passage_text_token_type
        if token_type is None:  # docs/method.md#model: BPR gives the passage text token type 1, DPR 0 everywhere
            token_type = 1 if cfg.method.value == "bpr" else 0
        return cls(tokenizer or load_tokenizer(cfg.model.name), cfg.data.max_question_length,
                   cfg.data.max_passage_length, token_type)

    def questions(self, questions: Sequence[str]) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(
                list(questions), padding=True, truncation=True, max_length=self.max_question_length, return_tensors="pt"
            )
        )

    def passages(self, passages: Sequence[Passage]) -> dict[str, torch.Tensor]:
        encoded = dict(
            self.tokenizer(
                [p.title for p in passages],
                [p.text for p in passages],
                padding=True,
                truncation=True,  # longest_first, as DPR and BPR do
                max_length=self.max_passage_length,
                return_tensors="pt",
            )
        )
        if "token_type_ids" in encoded and self.passage_text_token_type == 0:
            encoded["token_type_ids"] = torch.zeros_like(encoded["token_type_ids"])
        return encoded

    def __call__(self, samples: Sequence[Sample]) -> dict:
        """-> question (B, Lq), passage (sum of passages, Lp), positive_idx (B,): column of each positive."""
        counts = torch.tensor([len(s.passages) for s in samples])
        positive_idx = torch.cumsum(counts, 0) - counts  # each sample's first passage
        return {
            "question": self.questions([s.question for s in samples]),
            "passage": self.passages([p for s in samples for p in s.passages]),
            "positive_idx": positive_idx,
        }

    def indexed_passages(self, items: Sequence[tuple[int, Passage]]) -> dict:
        """For encoding the corpus: rows (B,) travel with the batch so shards can be merged in row order."""
        return {"rows": torch.tensor([row for row, _ in items]), "passage": self.passages([p for _, p in items])}
