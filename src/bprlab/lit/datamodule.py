"""`RetrieverDataModule`: DPR-format biencoder files for training/validation, the passage store for encoding."""

from __future__ import annotations

import random

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from bprlab.config.schema import RunConfig
from bprlab.data.collate import Collator
from bprlab.data.ordering import ShardBatchSampler, text_lengths
from bprlab.data.passage_store import IndexedPassages, PassageStore
from bprlab.data.paths import data_paths
from bprlab.data.readers import read_biencoder
from bprlab.data.sampling import BiencoderSamples, EpochShuffle, epoch_generator, usable_records
from bprlab.errors import StageError


class ResumableLoader(DataLoader):
    """An epoch's training loader as Lightning resumes it part-way (it calls `state_dict` when it saves a checkpoint
    and `load_state_dict` before the resumed epoch's first batch): the epoch it was made for and the batches already
    trained, so a resumed run trains on the rest of that epoch's permutation (bprlab.data.sampling.EpochShuffle).

    Every rank trains the same number of batches, so rank 0's state (the one a checkpoint keeps) serves them all.
    A position saved part-way through an epoch resumes on as many ranks only: Lightning counts the resumed epoch
    in batches of the saved run, which another number of ranks would not fill (the epoch would end early, or run
    out before its end-of-epoch validation)."""

    def __init__(self, *args, epoch: int = 0, trainer=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch, self._trainer = epoch, trainer

    def state_dict(self) -> dict:
        if self._trainer is None:
            return {}
        return {"epoch": self.epoch, "batches": self._trainer.fit_loop.epoch_loop.batch_progress.current.processed,
                "world_size": self._trainer.world_size}

    def load_state_dict(self, state: dict) -> None:
        if state.get("epoch") != self.epoch or not state.get("batches"):  # no epoch of this loader stopped part-way
            return
        saved = state.get("world_size", 1)  # without it: saved by one process
        if saved != self.sampler.num_replicas:
            raise StageError(f"last.ckpt was saved part-way through epoch {self.epoch} on {saved} rank(s); resume it on "
                             f"{saved} (train.devices x train.num_nodes), not {self.sampler.num_replicas}, or retrain "
                             "with --force")
        self.sampler.resume(state["batches"] * self.batch_size)


class RetrieverDataModule(pl.LightningDataModule):
    """The train loader is rebuilt every epoch (Trainer(reload_dataloaders_every_n_epochs=1)) so that each epoch
    draws its own hard negatives from (seed, epoch), on every rank and after a resume alike."""

    def __init__(self, cfg: RunConfig, collator: Collator):
        super().__init__()
        self.cfg, self.collator = cfg, collator
        self.paths = data_paths(cfg.data)
        self.train_records = self.dev_records = None
        self.store = None
        self.encode_shards: list[int] | None = None  # shards still to encode (the encode stage sets them)
        # encode: ranks can outnumber the shards still to encode (a small corpus on 8 GPUs); a rank with none has
        # an empty loader, predicts nothing and waits for the others at the stage's barrier
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def setup(self, stage: str | None = None) -> None:
        data = self.cfg.data
        if stage in ("fit", "validate", None) and self.train_records is None:
            needs = data.num_hard_negatives + data.num_other_negatives > 0
            train_file, dev_file = self.paths.training()
            self.train_records = usable_records(read_biencoder(train_file), needs, str(train_file))
            dev = usable_records(read_biencoder(dev_file), True, str(dev_file))
            if data.max_val_questions and data.max_val_questions < len(dev):  # a seeded sample across all articles
                keep = sorted(random.Random(self.cfg.seed).sample(range(len(dev)), data.max_val_questions))
                dev = [dev[i] for i in keep]
            self.dev_records = dev
        if stage == "predict" and self.store is None:
            self.store = PassageStore.open(self.paths.passages)

    def train_dataloader(self) -> DataLoader:
        data = self.cfg.data
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        samples = BiencoderSamples(self.train_records, data.num_hard_negatives, data.num_other_negatives,
                                   shuffle=data.shuffle_negatives, seed=self.cfg.seed, epoch=epoch,
                                   strip_question_mark=data.strip_question_mark)
        # every rank its share of one (seed, epoch) permutation (Lightning keeps a DistributedSampler as it is);
        # drop_last: every step has a full batch, so all ranks gather equal shapes
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        workers = self.cfg.data.num_workers
        return ResumableLoader(samples, batch_size=self.cfg.train.batch_size,
                               sampler=EpochShuffle(len(samples), self.cfg.seed, epoch, rank, world), drop_last=True,
                               collate_fn=self.collator, num_workers=workers, persistent_workers=False,
                               pin_memory=self.cfg.train.accelerator != "cpu",
                               generator=epoch_generator(self.cfg.seed, epoch), epoch=epoch, trainer=self.trainer)

    def train_batches(self, world: int) -> int:
        """Training batches per epoch on each rank: its share of the epoch's order (EpochShuffle), in full batches."""
        return len(EpochShuffle(len(self.train_records), self.cfg.seed, 0, 0, world)) // self.cfg.train.batch_size

    def val_dataloader(self) -> DataLoader:
        data = self.cfg.data
        samples = BiencoderSamples(self.dev_records, data.val_hard_negatives, data.val_other_negatives,
                                   shuffle=False, seed=self.cfg.seed, strip_question_mark=data.strip_question_mark)
        # in order, and under DDP Lightning's DistributedSampler: the ranks' shares gathered form one pool
        return DataLoader(samples, batch_size=self.cfg.train.batch_size, shuffle=False, collate_fn=self.collator,
                          num_workers=self.cfg.data.num_workers, pin_memory=self.cfg.train.accelerator != "cpu",
                          generator=epoch_generator(self.cfg.seed, 0))

    def predict_dataloader(self) -> DataLoader:
        """This rank's share of the shards still to encode (every world_size-th), shard by shard, each shard's
        rows longest first (batches of similar length pad less); tokenised in `data.num_workers` workers."""
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        shards = self.encode_shards if self.encode_shards is not None else list(range(self.num_shards))
        sampler = ShardBatchSampler(text_lengths(self.store.table), self.cfg.encode.shard_size, shards[rank::world],
                                    self.cfg.encode.batch_size)
        return DataLoader(IndexedPassages(self.store), batch_sampler=sampler, collate_fn=self.collator.indexed_passages,
                          num_workers=self.cfg.data.num_workers, pin_memory=self.cfg.train.accelerator != "cpu")

    @property
    def num_shards(self) -> int:
        return -(-len(self.store) // self.cfg.encode.shard_size)
