import numpy as np
import pytest

from bprlab.eval.metrics import top_k_accuracy
from bprlab.core.scoring import average_rank
import torch


def test_top_k_counts_first_hit():
    hits = np.array([
        [True, False, False, False],   # hit at rank 1
        [False, False, True, False],   # hit at rank 3
        [False, False, False, False],  # never
        [False, True, True, True],     # hit at rank 2
    ])
    assert top_k_accuracy(hits, [1, 2, 3, 4]) == {"top1": 25.0, "top2": 50.0, "top3": 75.0, "top4": 75.0}


def test_top_k_rejects_empty():
    with pytest.raises(ValueError):
        top_k_accuracy(np.zeros((0, 5), bool), [1])


def test_average_rank_counts_strictly_better_passages():
    question = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    passage = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    gold = torch.tensor([1, 2])  # q0's gold scores 1 and one passage scores 2 -> rank 1; q1's gold is best -> 0
    assert average_rank(question, passage, gold).item() == pytest.approx(0.5)
