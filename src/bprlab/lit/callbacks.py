"""Callbacks: model selection from an epoch on, and sharded, atomic writing of encoded passages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pytorch_lightning.callbacks import BasePredictionWriter, ModelCheckpoint

from bprlab.artifacts import atomic_path


class SelectionCheckpoint(ModelCheckpoint):
    """Keep the best `val/avg_rank` checkpoint among epochs >= `start_epoch` (SPEC §3: from epoch 30)."""

    def __init__(self, start_epoch: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.start_epoch = start_epoch

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch >= self.start_epoch:
            super().on_validation_end(trainer, pl_module)


class ShardWriter(BasePredictionWriter):
    """Each rank writes its own shards `<rank>-<part>.npz` (rows + values), each atomically, every `shard_size`
    rows, so a corpus of any size is encoded on N devices without gathering it anywhere."""

    def __init__(self, directory: str | Path, shard_size: int):
        super().__init__(write_interval="batch")
        self.directory, self.shard_size = Path(directory), shard_size
        self._rows: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._buffered = self._part = 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        self._rows.append(prediction["rows"])
        self._values.append(prediction["values"])
        self._buffered += len(prediction["rows"])
        if self._buffered >= self.shard_size:
            self._flush(trainer.global_rank)

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self._flush(trainer.global_rank)

    def _flush(self, rank: int) -> None:
        if not self._rows:
            return
        path = self.directory / f"{rank:05d}-{self._part:05d}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, rows=np.concatenate(self._rows), values=np.concatenate(self._values))
        self._rows, self._values, self._buffered = [], [], 0
        self._part += 1
