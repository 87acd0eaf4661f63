"""Encoding order: passages sorted by length, so each batch pads to a similar length (less wasted compute).

Rows travel with every batch and shards are merged by row, so the order is free to choose.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler


def text_lengths(table) -> np.ndarray:
    """Character length of every passage text, computed by Arrow over the memory-mapped column."""
    import pyarrow.compute as pc

    return pc.utf8_length(table.data.column("text")).to_numpy(zero_copy_only=False)


class LengthOrderSampler(Sampler[int]):
    def __init__(self, lengths: np.ndarray):
        self.order = np.argsort(-np.asarray(lengths), kind="stable").tolist()

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        return iter(self.order)
