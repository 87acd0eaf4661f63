"""The candidate stage as a measurement (bprlab.eval.stage): the first answer-bearing or relevant candidate, the
`hamming@l` figures and their per-question outcomes."""

import numpy as np

from bprlab.data.records import QARecord
from bprlab.eval.outcomes import outcome_vector
from bprlab.eval.stage import first_found, stage_depth, stage_metrics


class Store:
    texts_by_row = ["the sky is blue", "paris is in france", "blue whales", "nothing here", "the louvre, paris"]

    def texts(self, rows):
        return [self.texts_by_row[r] for r in rows]

    def ids(self, rows):
        return [f"d{r}" for r in rows]


def test_the_first_answer_or_relevant_candidate_and_the_share_within_l():
    questions = [QARecord("capital?", ["Paris"]), QARecord("colour?", ["blue"]), QARecord("none", ["Rome"]),
                 QARecord("judged", [], "q4", {"d3": 1, "d0": 0})]
    rows = np.array([[3, 0, 1, 4], [1, 3, 2, 0], [0, 1, 2, -1], [0, 2, 3, -1]])
    first = first_found(questions, rows, Store(), "string")
    # Paris at rank 2 (row 1); blue at rank 2 (row 2, "blue whales"); Rome nowhere; d3 (grade 1) at rank 2, d0
    # (grade 0) does not count
    assert first.tolist() == [2, 2, -1, 2]
    assert stage_metrics(first, depth=1000) == {"hamming@10": 75.0, "hamming@20": 75.0, "hamming@50": 75.0,
                                                "hamming@100": 75.0, "hamming@1000": 75.0}
    assert set(stage_metrics(first, depth=stage_depth(60))) == {"hamming@10", "hamming@20", "hamming@50"}
    outcomes = {"hamming_first": [2, 0, -1, 12]}
    assert outcome_vector(outcomes, "hamming@1").tolist() == [0, 1, 0, 0]
    assert outcome_vector(outcomes, "hamming@10").tolist() == [1, 1, 0, 0]
    assert outcome_vector(outcomes, "hamming@20").tolist() == [1, 1, 0, 1]
