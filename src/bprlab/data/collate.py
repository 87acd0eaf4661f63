"""Batches for the dual encoder, on the encoders' one tokenization (bprlab.core.inputs: `[CLS] title [SEP] text
[SEP]`, the passage text's token type by method). Nothing here knows about devices or Lightning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from bprlab.core.inputs import Tokenization
from bprlab.data.records import Passage


@dataclass
class Sample:
    """One question with its passages; `passages[0]` is the positive."""

    question: str
    passages: list[Passage]


class Collator(Tokenization):
    """Training batches (samples -> tensors) and encoding batches (rows travel along), on the one tokenization of
    bprlab.core.inputs; `Collator.from_config` is the one place a collator is made."""

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
