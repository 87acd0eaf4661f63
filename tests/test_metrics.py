import numpy as np
import pytest
import torch

from bprlab.core.scoring import average_rank
from bprlab.eval.metrics import top_k_accuracy


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


def test_timed_search_leaves_compilation_out_of_ms_per_query():
    """A search compiles its kernels the first time it sees a batch size (numba, on a cold cache): the timed batches
    must not pay for it, neither the full batches nor the shorter last one."""
    import time

    import numpy as np

    from bprlab.eval.retrieval import timed_search
    from bprlab.index.base import SearchResult, SearchStats

    class ColdIndex:
        stats = SearchStats()

        def __init__(self):
            self.compiled = set()

        def search(self, questions, k):
            if len(questions) not in self.compiled:  # a kernel per batch size, compiled on first use
                time.sleep(0.3)
                self.compiled.add(len(questions))
            return SearchResult(np.zeros((len(questions), k), np.float32), np.zeros((len(questions), k), np.int64))

    questions = np.zeros((70, 4), np.float32)  # batches of 32, 32 and 6
    cold = ColdIndex()
    result, seconds = timed_search(cold, questions, 3, 32)
    assert result.rows.shape == (70, 3) and cold.compiled == {32, 6}
    assert seconds < 0.1  # each compilation alone would be 0.3 s
