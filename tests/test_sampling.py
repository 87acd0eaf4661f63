import pytest

from bprlab.data.readers import read_biencoder
from bprlab.data.records import BiencoderRecord, Passage
from bprlab.data.sampling import BiencoderSamples, normalize_question, usable_records


def test_question_mark_stripped():
    assert normalize_question("Who wrote Hamlet? ") == "Who wrote Hamlet"
    assert normalize_question("Who?  ?") == "Who?"
    assert normalize_question("no mark") == "no mark"


def test_negatives_are_deterministic_per_epoch_and_change_across_epochs(tiny_data):
    records = read_biencoder(tiny_data["train"])
    def titles(epoch):
        return [[p.title for p in BiencoderSamples(records, 1, 0, True, seed=1, epoch=epoch)[i].passages]
                for i in range(len(records))]
    assert titles(0) == titles(0)
    assert titles(0) != titles(1)  # 8 records x 2 hard negatives: identical draws are (1/2)^8 unlikely, seeded
    for i, sample in enumerate(titles(3)):
        assert sample[0] == records[i].positives[0].title  # the first positive, always first


def test_short_pools_are_topped_up_from_the_record_itself():
    p = [Passage(f"t{i}", "x") for i in range(3)]
    record = BiencoderRecord("q", ["a"], [p[0]], hard_negatives=[p[1]], negatives=[p[2]])
    sample = BiencoderSamples([record], num_hard=3, num_other=2, shuffle=True, seed=0)[0]
    assert len(sample.passages) == 6
    assert {x.title for x in sample.passages[1:]} <= {"t1", "t2"}


def test_records_without_positive_or_negatives_are_dropped():
    p = Passage("t", "x")
    records = [BiencoderRecord("a", [], [p], [p]), BiencoderRecord("b", [], []), BiencoderRecord("c", [], [p])]
    assert [r.question for r in usable_records(records, needs_negatives=True, source="x")] == ["a"]
    assert [r.question for r in usable_records(records, needs_negatives=False, source="x")] == ["a", "c"]


def test_an_epochs_order_comes_from_seed_and_epoch_alone_and_continues_part_way():
    """The order never draws from the global generator (dropout's), differs between epochs, and a resumed epoch
    continues its own permutation."""
    import torch

    from bprlab.data.sampling import EpochShuffle

    state = torch.get_rng_state()
    first = list(EpochShuffle(50, seed=7, epoch=0))
    assert torch.equal(torch.get_rng_state(), state) and sorted(first) == list(range(50))
    torch.manual_seed(123)  # whatever ran before
    assert list(EpochShuffle(50, seed=7, epoch=0)) == first
    assert list(EpochShuffle(50, seed=7, epoch=1)) != first and list(EpochShuffle(50, seed=8, epoch=0)) != first
    resumed = EpochShuffle(50, seed=7, epoch=0)
    resumed.resume(20)
    assert list(resumed) == first[20:] and list(resumed) == first  # the skip applies to one pass


def test_ranks_share_one_epoch_order_and_a_resumed_rank_skips_only_its_own_trained_samples():
    """Under DDP every rank takes every w-th sample of the one (seed, epoch) permutation, as many on each rank, and
    Lightning keeps the sampler as it is (it wraps any sampler that is not a DistributedSampler, and its own order
    would restart a resumed epoch from its first batch)."""
    from torch.utils.data import DistributedSampler

    from bprlab.data.sampling import EpochShuffle

    whole = list(EpochShuffle(50, seed=7, epoch=3))
    shares = [list(EpochShuffle(50, seed=7, epoch=3, rank=r, world=4)) for r in range(4)]
    assert [len(s) for s in shares] == [12] * 4 and len(EpochShuffle(50, 7, 3, rank=1, world=4)) == 12
    assert [shares[i % 4][i // 4] for i in range(48)] == whole[:48]  # interleaved, the last 50 % 4 left out
    assert isinstance(EpochShuffle(50, 7, 3, rank=1, world=4), DistributedSampler)
    resumed = EpochShuffle(50, seed=7, epoch=3, rank=2, world=4)
    resumed.set_epoch(9)  # Lightning's call at each epoch: the loader was built for its epoch, which stays
    resumed.resume(5)  # 5 batches of 1 trained on every rank
    assert list(resumed) == shares[2][5:] and list(resumed) == shares[2]


def test_a_position_saved_part_way_resumes_on_as_many_ranks_and_is_refused_on_another_number():
    """Lightning counts the resumed epoch in the saved run's batches: on another number of ranks it would end early
    or run out, so that resume is one clear error; a checkpoint of one process (no world_size) is one rank's."""
    from bprlab.data.sampling import EpochShuffle
    from bprlab.errors import StageError
    from bprlab.lit.datamodule import ResumableLoader

    def loader(rank, world, epoch=0):
        return ResumableLoader(range(50), batch_size=2, sampler=EpochShuffle(50, 7, epoch, rank, world), epoch=epoch)

    share = list(EpochShuffle(50, 7, 0, 1, 2))
    same = loader(1, 2)
    same.load_state_dict({"epoch": 0, "batches": 3, "world_size": 2})
    assert list(same.sampler) == share[6:]
    single = loader(0, 1)
    single.load_state_dict({"epoch": 0, "batches": 3})
    assert list(single.sampler) == list(EpochShuffle(50, 7, 0))[6:]
    with pytest.raises(StageError, match="part-way through epoch 0 on 1 rank.*resume it on 1"):
        loader(0, 4).load_state_dict({"epoch": 0, "batches": 3})
    ended = loader(0, 4, epoch=1)  # the saved epoch had ended: a new epoch on any number of ranks
    ended.load_state_dict({"epoch": 0, "batches": 3, "world_size": 2})
    assert len(list(ended.sampler)) == 12
