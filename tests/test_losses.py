import math

import pytest
import torch

from bprlab.config.enums import CandidateLoss
from bprlab.core.losses import BPRLoss, DPRLoss, margin_candidate_loss, nll_loss

Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
P = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 1.0], [1.0, 1.0]])  # positives: question 0 -> 0, question 1 -> 2
POS = torch.tensor([0, 2])


def test_dpr_nll_matches_hand_computation():
    # question 0 scores [1, 0, 0, 1]; question 1 scores [0, 2, 1, 1]
    expected_0 = -math.log(math.e / (math.e + 1 + 1 + math.e))
    expected_1 = -math.log(math.e / (1 + math.e**2 + math.e + math.e))
    assert nll_loss(Q, P, POS).item() == pytest.approx((expected_0 + expected_1) / 2, rel=1e-6)
    assert DPRLoss()(Q, P, POS).loss.item() == pytest.approx((expected_0 + expected_1) / 2, rel=1e-6)


def test_margin_loss_is_mean_over_all_negative_pairs():
    # q0: positive 1, negatives [0, 0, 1] -> hinge(m - (1-s)) with m = 0.5: [0, 0, 0.5]
    # q1: positive 1, negatives [0, 2, 1] -> [0, 1.5, 0.5]
    got = margin_candidate_loss(Q, P, POS, margin=0.5)
    assert got.item() == pytest.approx((0 + 0 + 0.5 + 0 + 1.5 + 0.5) / 6)


def test_bpr_loss_terms_and_weights():
    beta = 2.0
    loss = BPRLoss(margin=0.1)(Q, P, POS, beta=beta)
    q_code, p_code = torch.tanh(beta * Q), torch.tanh(beta * P)
    candidate = margin_candidate_loss(q_code, p_code, POS, 0.1)
    rerank = nll_loss(Q, p_code, POS)  # continuous question against tanh passage codes
    assert loss.terms["candidate_loss"].item() == pytest.approx(candidate.item())
    assert loss.terms["rerank_loss"].item() == pytest.approx(rerank.item())
    assert loss.loss.item() == pytest.approx(candidate.item() + rerank.item())
    weighted = BPRLoss(candidate_weight=3.0, rerank_weight=0.0)(Q, P, POS, beta=beta)
    assert weighted.loss.item() == pytest.approx(3 * candidate.item())


def test_ce_candidate_variant_uses_softmax_over_codes():
    beta = 1.5
    loss = BPRLoss(candidate_kind=CandidateLoss.ce)(Q, P, POS, beta=beta)
    expected = nll_loss(torch.tanh(beta * Q), torch.tanh(beta * P), POS)
    assert loss.terms["candidate_loss"].item() == pytest.approx(expected.item())


def test_candidate_weight_zero_trains_only_the_rerank_loss():
    q, p = Q.clone().requires_grad_(True), P.clone().requires_grad_(True)
    BPRLoss(candidate_weight=0.0)(q, p, POS, beta=2.0).loss.backward()
    q_ref, p_ref = Q.clone().requires_grad_(True), P.clone().requires_grad_(True)
    nll_loss(q_ref, torch.tanh(2.0 * p_ref), POS).backward()
    assert torch.allclose(q.grad, q_ref.grad) and torch.allclose(p.grad, p_ref.grad)
