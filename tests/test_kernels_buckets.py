"""The hash-bucket kernels against faiss's IndexBinaryHash and IndexBinaryMultiHash: keys read from the code,
probing with flipped bits."""


import faiss
import numpy as np
import pytest

from bprlab.core.hashing import pack_codes
from bprlab.index.kernels.buckets import BucketTable, flip_masks, probe, slice_keys
from bprlab.index.kernels.layout import BlockedCodes, to_words


@pytest.mark.parametrize("bits", range(1, 65))
def test_hash_keys_are_faiss_keys_at_every_width(bits):
    """Slice h's key is bits h*b .. h*b+b-1 of the code, as faiss's BitstringReader (IndexBinaryMultiHash) reads
    them; keys of 57-64 bits starting inside a byte run into a ninth byte."""
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 256, (16, 96), dtype=np.uint8)  # 768 bits
    tables = min(768 // bits, 12)
    ours = np.stack([slice_keys(codes, bits, t) for t in range(tables)], axis=1)
    theirs = np.zeros_like(ours)
    for i, code in enumerate(codes):
        reader = faiss.BitstringReader(faiss.swig_ptr(code), code.nbytes)
        theirs[i] = [reader.read(bits) for _ in range(tables)]
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("bits,tables,flips", [(8, 1, 1), (6, 2, 2), (8, 8, 1), (16, 1, 2), (62, 3, 1)])
def test_hash_probe_matches_faiss_scanned_codes_and_distances(bits, tables, flips):
    rng = np.random.default_rng(bits * tables)
    passages, questions = rng.standard_normal((3000, 768)).astype(np.float32), rng.standard_normal((20, 768)).astype(np.float32)
    codes, question_codes = pack_codes(passages), pack_codes(questions)
    buckets = [BucketTable.build(slice_keys(codes, bits, t)) for t in range(tables)]
    dist, rows, scanned = probe(BlockedCodes.from_rows(codes), to_words(question_codes), question_codes, buckets,
                                bits, flip_masks(bits, flips), 50, 2)
    index = faiss.IndexBinaryHash(768, bits) if tables == 1 else faiss.IndexBinaryMultiHash(768, tables, bits)
    index.add(codes)
    index.nflip = flips
    faiss.cvar.indexBinaryHash_stats.reset()
    faiss_dist, faiss_rows = index.search(question_codes, 50)
    assert faiss.cvar.indexBinaryHash_stats.ndis == scanned.sum()  # the same share of codes compared
    assert np.array_equal(np.where(faiss_rows >= 0, faiss_dist, 10**6).clip(max=769),
                          np.where(rows >= 0, dist, 10**6).clip(max=769))
    # each question's candidates are its nearest shortlisted codes, in (distance, row) order
    keys = dist.astype(np.int64) * 3000 + np.where(rows >= 0, rows, 2999)
    assert (np.diff(keys, axis=1) >= 0).all()

