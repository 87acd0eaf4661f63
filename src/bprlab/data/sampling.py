"""Training and validation samples from biencoder records (docs/method.md#losses).

Each training question brings its first positive and `num_hard` hard negatives (+ `num_other` other negatives),
re-shuffled every epoch from a seed, so a run is reproducible and a resumed epoch draws the same negatives.
A record with too few negatives is topped up by drawing again from its own pool, as the official BPR code does
(studio-ousia/bpr, bpr/biencoder.py, `_collate_fn`, at af29763); records without a positive, or without any
negative when negatives are asked for, cannot form a sample and are dropped (and counted).
"""

from __future__ import annotations

import logging
import random
from typing import Sequence

import torch
from torch.utils.data import Dataset, DistributedSampler

from bprlab.data.collate import Sample
from bprlab.data.records import BiencoderRecord, Passage

log = logging.getLogger(__name__)


def normalize_question(question: str) -> str:
    """Strip one trailing "?" (and surrounding blanks), as BPR does for its biencoder questions."""
    question = question.strip()
    return question[:-1].rstrip() if question.endswith("?") else question


def usable_records(records: Sequence[BiencoderRecord], needs_negatives: bool, source: str) -> list[BiencoderRecord]:
    kept = [r for r in records if r.positives and (r.hard_negatives or r.negatives or not needs_negatives)]
    if not kept:
        from bprlab.errors import DataFormatError

        why = "the file holds no records" if not records else (
            f"every one lacks a positive passage{' or any negative (data.num_*_negatives > 0)' if needs_negatives else ''}")
        raise DataFormatError(source, None, f"{len(records)} records read, none usable for training: {why}")
    if len(kept) < len(records):
        log.warning("%s: dropped %d of %d records without a positive%s", source, len(records) - len(kept),
                    len(records), " or any negative" if needs_negatives else "")
    return kept


class BiencoderSamples(Dataset):
    """Samples for one epoch: `epoch` and `seed` fix every random choice (train: shuffle=True; dev: False)."""

    def __init__(
        self,
        records: Sequence[BiencoderRecord],
        num_hard: int,
        num_other: int,
        shuffle: bool,
        seed: int,
        epoch: int = 0,
        strip_question_mark: bool = True,
    ):
        self.records = list(records)
        self.num_hard, self.num_other = num_hard, num_other
        self.shuffle, self.seed, self.epoch = shuffle, seed, epoch
        self.strip_question_mark = strip_question_mark

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        record = self.records[i]
        rng = random.Random(f"{self.seed}/{self.epoch}/{i}")  # str seeds hash deterministically
        question = normalize_question(record.question) if self.strip_question_mark else record.question
        return Sample(question, [record.positives[0], *self._negatives(record, rng)])

    def _negatives(self, record: BiencoderRecord, rng: random.Random) -> list[Passage]:
        hard, other = list(record.hard_negatives), list(record.negatives)
        if self.shuffle:
            rng.shuffle(hard)
            rng.shuffle(other)
        chosen = hard[: self.num_hard] + other[: self.num_other]
        pool = hard + other
        while len(chosen) < self.num_hard + self.num_other:
            chosen.append(rng.choice(pool))
        return chosen


class EpochShuffle(DistributedSampler):
    """An epoch's order of the training samples: a permutation drawn from (seed, epoch) alone, never from the global
    random generator (which then serves dropout only), so a run killed part-way through an epoch and resumed trains
    on the rest of the same permutation (`resume(skip)`), and validation or a resume in between changes nothing.

    Under DDP, rank r of w takes every w-th sample of that permutation from position r, the same number on every
    rank (size // w; the last size % w samples of the epoch's order are left out, as DistributedSampler does with
    drop_last), so a resumed rank skips its own samples already trained. It is a DistributedSampler so that
    Lightning uses it as it is and does not wrap it in its own, whose order a mid-epoch resume would restart."""

    def __init__(self, size: int, seed: int, epoch: int, rank: int = 0, world: int = 1):
        # the parent's bookkeeping (num_replicas, rank, epoch, seed) for whoever reads it; the order is ours
        super().__init__(range(size), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.size, self.epoch = size, epoch
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """The loader is built for one epoch (reload_dataloaders_every_n_epochs=1): its epoch is fixed then."""

    def resume(self, skip: int) -> None:
        """The next pass starts `skip` of this rank's indices in (the batches already trained); later passes start
        at 0."""
        self._skip = int(skip)

    def __iter__(self):
        skip, self._skip = self._skip, 0
        order = torch.randperm(self.size, generator=epoch_generator(self.seed, self.epoch)).tolist()
        yield from order[self.rank: len(self) * self.num_replicas: self.num_replicas][skip:]

    def __len__(self) -> int:
        return self.size // self.num_replicas


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A torch generator for (seed, epoch): the same draws on every machine, whatever ran before."""
    generator = torch.Generator()
    generator.manual_seed(int(seed) * 1_000_003 + int(epoch))
    return generator
