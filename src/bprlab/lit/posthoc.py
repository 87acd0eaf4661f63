"""Post-hoc baselines as LightningModules: a trained DPR checkpoint whose passage embeddings are quantised after
training (docs/method.md#search). The encoders stay frozen; "fitting" learns the quantiser (faiss) on the passage
embeddings.

The CLI runs the same thing as stages (encode with the DPR checkpoint, then `index.kind=lsh|pq`, both through
`bprlab.index.create_index`), so the pipeline and these modules share one implementation; the modules are the
Python face of it, for notebooks and for code that wants a model it can `fit_quantizer` and `search` directly.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch

from bprlab.config.enums import IndexKind
from bprlab.index.base import RetrievalIndex, SearchResult, create_index
from bprlab.lit.modules import DPRModule


class PostHocModule(DPRModule):
    kind: ClassVar[IndexKind]

    def __init__(self, config: dict):
        super().__init__(config)
        self.model.requires_grad_(False).eval()
        self.index_cfg = dataclasses.replace(self.cfg.index, kind=self.kind)
        self.quantizer: RetrievalIndex | None = None

    @classmethod
    def from_dpr(cls, checkpoint: str, **index_settings) -> "PostHocModule":
        """Wrap a trained DPR checkpoint; `index_settings` override its index config (e.g. code_bits=256)."""
        from bprlab.core.encoder import load_checkpoint_weights

        state = load_checkpoint_weights(checkpoint)
        config = state["hyper_parameters"]["config"]
        config["index"] = {**config["index"], **index_settings, "kind": cls.kind.value}
        module = cls(config)
        module.load_state_dict(state["state_dict"])  # the DPR weights, loaded once
        return module

    def training_step(self, batch, batch_idx):  # pragma: no cover - guarded misuse
        raise RuntimeError(f"{type(self).__name__} does not train the encoder: call fit_quantizer(passage_emb)")

    def fit_quantizer(self, passage_emb: np.ndarray) -> RetrievalIndex:
        """Learn the quantiser on the passage embeddings (N, D) and index them."""
        self.quantizer = create_index(self.index_cfg, passage_emb.shape[1])
        self.quantizer.build(passage_emb)
        return self.quantizer

    @torch.inference_mode()
    def encode_questions(self, batch: dict) -> np.ndarray:
        return self.model.encode_question(**batch).float().cpu().numpy()

    def search(self, question_emb: np.ndarray, k: int) -> SearchResult:
        if self.quantizer is None:
            raise RuntimeError("call fit_quantizer(passage_emb) first")
        return self.quantizer.search(question_emb, k)

    @property
    def bytes_per_passage(self) -> int:
        return self.quantizer.bytes_per_passage


class LSHModule(PostHocModule):
    """Sign of projections of e_p: `index.rotation` none / random / itq (a learned rotation), `index.code_bits`."""

    kind = IndexKind.lsh


class PQModule(PostHocModule):
    """Product quantisation of e_p: `index.pq_subquantizers` x `index.pq_bits`, codebooks trained on e_p."""

    kind = IndexKind.pq

