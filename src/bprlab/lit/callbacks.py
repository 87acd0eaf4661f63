"""Callbacks: model selection from an epoch on, random state and a history of resumes across a resume, one config on
every rank, and sharded, atomic writing of encoded passages."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter, ModelCheckpoint

from bprlab.artifacts import atomic_path, fingerprint
from bprlab.data.ordering import shard_rows


class SelectionCheckpoint(ModelCheckpoint):
    """Keep the best `val/avg_rank` checkpoint among epochs >= `start_epoch` (from epoch 30:
    docs/method.md#model-selection)."""

    def __init__(self, start_epoch: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.start_epoch = start_epoch

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch >= self.start_epoch:
            super().on_validation_end(trainer, pl_module)


class ResumeCheckpoint(ModelCheckpoint):
    """last.ckpt every n optimizer steps and at validations, never between the batches of one accumulated step:
    their gradients are in no checkpoint, so a run resumed from such a file would go on without them. (Lightning
    skips a step it has saved, but after a resume it has not saved the resumed step yet, and the first batch of the
    next accumulation passes its test; a validation every k batches can land mid-accumulation too.)"""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.fit_loop.epoch_loop._should_accumulate():
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.fit_loop.epoch_loop._should_accumulate():
            super().on_validation_end(trainer, pl_module)


# batches between malloc_trim calls: every batch when they come from DataLoader workers (where the freed blocks
# piled up, growing with the corpus), every 16 when the main process builds them itself (trimming every batch there
# re-faults the pages it gave back; experiments/SCALE.md has the measurements)
TRIM_EVERY = {"workers": 1, "in_process": 16}


class RandomState(pl.Callback):
    """Every random generator's state in the checkpoint (torch, CUDA, numpy, Python), put back on resume just before
    the first batch trains. The data loaders draw from (seed, epoch) only (bprlab.lit.datamodule), so the global
    generators serve dropout alone and nothing else draws between a saved step and the next batch (validation runs
    in eval mode): a killed and resumed run ends with the weights of an uninterrupted one. Under DDP each rank's
    generators are its own (its batches differ, so its dropout draws do): every rank's states are gathered into
    the checkpoint rank 0 writes, and each rank takes its own back when the job resumes on as many ranks (on another
    number they start fresh). The loader's position is the loader's own (bprlab.lit.datamodule.ResumableLoader).
    """

    KEY = "random_state"

    def __init__(self):
        self._pending = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # every rank saves (Lightning dumps a checkpoint on all of them and rank 0 writes it): the gather is collective
        state = _random_state()
        if trainer.world_size > 1:
            import torch.distributed as dist

            ranks = [None] * trainer.world_size
            dist.all_gather_object(ranks, state)
            checkpoint[self.KEY] = {"world_size": trainer.world_size, "ranks": ranks}
        else:
            checkpoint[self.KEY] = {**state, "world_size": 1}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        state = checkpoint.get(self.KEY)
        if state is not None and state["world_size"] == trainer.world_size:
            self._pending = state["ranks"][trainer.global_rank] if trainer.world_size > 1 else state

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, words, gauss_next = state["python"]
        random.setstate((version, tuple(words), gauss_next))
        if state["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class ResumeHistory(pl.Callback):
    """The resumes on the path to the run's weights, carried from checkpoint to checkpoint: the optimizer step, epoch
    and number of ranks training went on from. A run killed and resumed several times lists each resume whose
    training reached a checkpoint (a resumed session killed before it saved anything leaves the next one to go on
    from the same file, as if it had never started). train.json's `resumes`, which `bprlab reproduce` copies into
    its unit records, so a record says how its model was trained after the run folder is gone; [] for a run
    trained in one go."""

    KEY = "resume_history"

    def __init__(self):
        self.resumes: list[dict] = []

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self.resumes = list(checkpoint.get(self.KEY, []))  # a checkpoint from before this history: no earlier ones

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.ckpt_path:  # fit(ckpt_path=...): the checkpoint is restored by now
            self.resumes.append({"step": trainer.global_step, "epoch": trainer.current_epoch,
                                 "world_size": trainer.world_size})

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[self.KEY] = list(self.resumes)


def _random_state() -> dict:
    """This process's generators: tensors, numbers and lists only (checkpoints are read with
    torch.load(weights_only=True))."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, words, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": [version, list(words), gauss_next],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


class SameConfigOnEveryRank(pl.Callback):
    """Every rank trains the config rank 0 trains. Ranks started by srun each read the command line and the
    environment themselves, so a config that reaches rank 0 only (a sweep's parameters passed to one task) would
    train a different model on each rank and average their gradients. Once the process group exists, rank 0's
    config is sent to every rank; where any rank's differs, every rank stops with the keys that differ (all of them
    together: a rank that stopped alone would leave the others waiting in the next collective)."""

    def __init__(self, config: dict):
        self.config = config
        self.hash = fingerprint(config)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.world_size < 2:
            return
        theirs = trainer.strategy.broadcast(self.config, src=0)
        differ = _differences(self.config, theirs)
        flag = torch.tensor(float(bool(differ)), device=trainer.strategy.root_device)  # NCCL reduces GPU tensors
        flag = trainer.strategy.reduce(flag, reduce_op="max")
        if float(flag) > 0:
            from bprlab.errors import ConfigError

            what = f"its config differs from rank 0's at {', '.join(differ[:8])}" if differ else \
                "another rank's config differs from rank 0's (see that rank's error)"
            raise ConfigError(f"rank {trainer.global_rank}: {what}: every rank must be started with the same "
                              "experiment and overrides")


def _differences(mine: dict, theirs: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested config dicts."""
    keys = sorted(set(mine) | set(theirs))
    out = []
    for key in keys:
        a, b = mine.get(key), theirs.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} ({b!r} on rank 0, {a!r} here)")
    return out


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc `malloc_trim`). Batches from DataLoader workers and the
    activations they cause vary in size, and glibc keeps the freed blocks: a 200k-passage encode grew to 1.7 GB
    of anonymous memory without this. No-op where glibc is absent."""
    global _TRIM
    if _TRIM is None:
        import ctypes
        import ctypes.util

        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM = None


class ShardWriter(BasePredictionWriter):
    """Writes shard s (rows s * shard_size ..) as `shard-<s>.npz` (rows + values), atomically, the moment its
    last row arrives. Shards are defined by rows, not by ranks, so a rerun with any number of devices finds the
    finished ones and encodes only the rest."""

    def __init__(self, directory: str | Path, shard_size: int, num_rows: int, workers: bool = False):
        super().__init__(write_interval="batch")
        self.directory, self.shard_size, self.num_rows = Path(directory), shard_size, num_rows
        self.trim_every = TRIM_EVERY["workers" if workers else "in_process"]
        self._rows: dict[int, list[np.ndarray]] = {}
        self._values: dict[int, list[np.ndarray]] = {}
        self._count: dict[int, int] = {}

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        rows, values = prediction["rows"], prediction["values"]
        shards = rows // self.shard_size
        for shard in np.unique(shards):
            mine = shards == shard
            self._rows.setdefault(int(shard), []).append(rows[mine])
            self._values.setdefault(int(shard), []).append(values[mine])
            self._count[int(shard)] = self._count.get(int(shard), 0) + int(mine.sum())
            if self._count[int(shard)] == len(shard_rows(int(shard), self.shard_size, self.num_rows)):
                self._flush(int(shard))
        if batch_idx % self.trim_every == 0:
            release_freed_memory()

    def _flush(self, shard: int) -> None:
        path = self.directory / shard_file(shard)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, rows=np.concatenate(self._rows.pop(shard)), values=np.concatenate(self._values.pop(shard)))
        del self._count[shard]


def shard_file(shard: int) -> str:
    return f"shard-{shard:06d}.npz"
