"""Training losses (docs/method.md#losses). Pure functions of embeddings: no trainer, no devices, no gathers.

`positive_idx[i]` is the column of question i's positive in the passage matrix; every other passage in the
(global) batch is a negative for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bprlab.config.enums import CandidateLoss, Estimator
from bprlab.core.hashing import relaxed_code


def nll_loss(question: torch.Tensor, passage: torch.Tensor, positive_idx: torch.Tensor) -> torch.Tensor:
    """mean_i CE(softmax(Q P^T)_i, pos(i)): DPR's loss, and BPR's rerank loss when P is the tanh code."""
    scores = question @ passage.T  # (B, N)
    return F.cross_entropy(scores, positive_idx)


def margin_candidate_loss(
    question_code: torch.Tensor, passage_code: torch.Tensor, positive_idx: torch.Tensor, margin: float
) -> torch.Tensor:
    """mean over all (i, j != pos(i)) of max(0, margin - (S[i, pos(i)] - S[i, j])), S = Q~ P~^T."""
    scores = question_code @ passage_code.T  # (B, N)
    rows = torch.arange(scores.shape[0], device=scores.device)
    positive = scores[rows, positive_idx].unsqueeze(1)  # (B, 1)
    is_negative = torch.ones_like(scores, dtype=torch.bool)
    is_negative[rows, positive_idx] = False
    hinge = F.relu(margin - (positive - scores))  # (B, N)
    return hinge[is_negative].mean()


@dataclass
class LossOutput:
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]  # logged as train/<name>


@dataclass
class DPRLoss:
    def __call__(self, question_emb, passage_emb, positive_idx, beta: float = 1.0) -> LossOutput:
        loss = nll_loss(question_emb, passage_emb, positive_idx)
        return LossOutput(loss, {"nll_loss": loss.detach()})


@dataclass
class BPRLoss:
    """L = w_c * L_cand(tanh(beta Q), tanh(beta P)) + w_r * L_rerank(Q, tanh(beta P))."""

    estimator: Estimator = Estimator.scaled_tanh
    candidate_kind: CandidateLoss = CandidateLoss.margin
    margin: float = 0.1
    candidate_weight: float = 1.0
    rerank_weight: float = 1.0
    fixed_beta: float = 1.0

    def __call__(self, question_emb, passage_emb, positive_idx, beta: float = 1.0) -> LossOutput:
        question_code = relaxed_code(question_emb, self.estimator, beta, self.fixed_beta)  # (B, D)
        passage_code = relaxed_code(passage_emb, self.estimator, beta, self.fixed_beta)  # (N, D)
        if self.candidate_kind is CandidateLoss.margin:
            candidate = margin_candidate_loss(question_code, passage_code, positive_idx, self.margin)
        else:
            candidate = nll_loss(question_code, passage_code, positive_idx)
        rerank = nll_loss(question_emb, passage_code, positive_idx)
        loss = self.candidate_weight * candidate + self.rerank_weight * rerank
        return LossOutput(loss, {"candidate_loss": candidate.detach(), "rerank_loss": rerank.detach()})
