"""The encoders' inputs: questions and passages as token tensors. One definition serves training (through the
batch collator, bprlab.data.collate), encoding, evaluation and the Python API, so the same text always gives the
same tensors. The tokenizer is passed in; nothing here knows about devices or Lightning.

Passages are encoded as the pair `[CLS] title [SEP] text [SEP]` (docs/method.md#model). BPR gives the text
segment token type 1 and DPR token type 0 everywhere; `passage_text_token_type` picks, and `from_config` is the
one place the choice is made.
"""

from __future__ import annotations

from typing import Sequence

import torch


def passage_token_type(cfg) -> int:
    """The passage text segment's token type a run config resolves to: model.passage_text_token_type, else BPR's 1
    and DPR's 0 (docs/method.md#model)."""
    if cfg.model.passage_text_token_type is not None:
        return cfg.model.passage_text_token_type
    return 1 if cfg.method.value == "bpr" else 0


class Tokenization:
    def __init__(self, tokenizer, max_question_length: int, max_passage_length: int, passage_text_token_type: int):
        self.tokenizer = tokenizer
        self.max_question_length = max_question_length
        self.max_passage_length = max_passage_length
        self.passage_text_token_type = passage_text_token_type

    @classmethod
    def from_config(cls, cfg, tokenizer=None):
        """Lengths and the passage text's token type from a run config (the config saved in a checkpoint, for a
        trained run), the tokenizer of its model unless one is given."""
        from bprlab.core.encoder import load_tokenizer

        return cls(tokenizer or load_tokenizer(cfg.model.name), cfg.data.max_question_length,
                   cfg.data.max_passage_length, passage_token_type(cfg))

    def questions(self, questions: Sequence[str]) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(
                list(questions), padding=True, truncation=True, max_length=self.max_question_length, return_tensors="pt"
            )
        )

    def passages(self, passages: Sequence) -> dict[str, torch.Tensor]:
        """Passages: objects with `title` and `text` (bprlab.data.records.Passage)."""
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
