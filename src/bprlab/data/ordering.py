"""Encoding order: passages sorted by length, so each batch pads to a similar length (less wasted compute).

Rows travel with every batch and shards are merged by row, so the order is free to choose. The corpus is cut into
shards of `encode.shard_size` consecutive rows; a shard is encoded as a unit (its rows ordered by length) and
written when it is complete, so a killed encode keeps every finished shard and a rerun encodes only the rest.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler


def text_lengths(table) -> np.ndarray:
    """Byte length of every passage text, read from the Arrow column's offsets only: the texts themselves are
    never touched (at 21M passages they are ~13 GB of mapped pages)."""
    import pyarrow as pa

    column = table.data.column("text")
    parts = []
    for chunk in column.chunks:
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], dtype=width)[chunk.offset : chunk.offset + len(chunk) + 1]
        parts.append(np.diff(offsets).astype(np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def shard_rows(shard: int, shard_size: int, num_rows: int) -> range:
    return range(shard * shard_size, min(num_rows, (shard + 1) * shard_size))


class ShardBatchSampler(Sampler[list[int]]):
    """Batches of row numbers, one shard after another; within a shard, longest passages first."""

    def __init__(self, lengths: np.ndarray, shard_size: int, shards: list[int], batch_size: int):
        self.lengths, self.shard_size, self.shards, self.batch_size = np.asarray(lengths), shard_size, shards, batch_size

    def _shard_batches(self, shard: int):
        rows = np.array(shard_rows(shard, self.shard_size, len(self.lengths)), dtype=np.int64)
        order = rows[np.argsort(-self.lengths[rows], kind="stable")]
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size].tolist()

    def __iter__(self):
        for shard in self.shards:
            yield from self._shard_batches(shard)

    def __len__(self) -> int:
        return sum(-(-len(shard_rows(s, self.shard_size, len(self.lengths))) // self.batch_size) for s in self.shards)
