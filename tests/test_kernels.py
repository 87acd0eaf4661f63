"""The Hamming scan kernels against numpy brute force, faiss and each other (exact distances, ties, edge sizes,
threads, the torch kernels, the compiled cache)."""

import os
import subprocess
import sys

import faiss
import numpy as np
import pytest

from bprlab.core.hashing import pack_codes
from bprlab.index.kernels import torch_search
from bprlab.index.kernels.distance import MAX_FIXED_WORDS
from bprlab.index.kernels.hamming import hamming_top_l, sign_words
from bprlab.index.kernels.layout import BlockedCodes, to_words
from bprlab.index.kernels.lut import rerank_top_k, score_all_top_k

POPCOUNT8 = np.array([bin(v).count("1") for v in range(256)], np.int64)


def brute_hamming(codes: np.ndarray, questions: np.ndarray, l: int):
    """(distance, row) order by numpy: the definition the kernels must meet, ties by row."""
    dist = np.stack([POPCOUNT8[codes ^ q].sum(1) for q in questions]).reshape(len(questions), len(codes))
    order = np.lexsort((np.broadcast_to(np.arange(len(codes)), dist.shape), dist), axis=1)[:, :l]
    return np.take_along_axis(dist, order, 1), order


def random_codes(rng, n, nbytes, distinct=None):
    """Random packed codes; with `distinct`, drawn from that many patterns (many equal distances and duplicates)."""
    if distinct is None:
        return rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    pool = rng.integers(0, 256, (distinct, nbytes), dtype=np.uint8)
    return pool[rng.integers(0, distinct, n)]


# Code widths in bits: one word, two (full and partial), the embedded default's, the paper's, the longest code with a
# distance loop compiled for its width (the slow tier: each width compiles kernels of its own) and one past it
LONGEST_FIXED = pytest.param(64 * MAX_FIXED_WORDS, marks=pytest.mark.slow)
WIDTHS = [64, 128, 384, 768, LONGEST_FIXED, 64 * MAX_FIXED_WORDS + 64, 72]


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("n,l", [(1000, 50), (130, 200), (1, 5), (777, 777)])
def test_scan_is_exact_with_ties_by_row(bits, n, l):
    rng = np.random.default_rng(bits + n)
    codes = random_codes(rng, n, bits // 8, distinct=max(1, n // 10))  # duplicates: ties everywhere
    questions = random_codes(rng, 6, bits // 8)
    want_dist, want_rows = brute_hamming(codes, questions, l)
    dist, rows = hamming_top_l(BlockedCodes.from_rows(codes), to_words(questions), l, 2)
    m = min(l, n)
    assert np.array_equal(dist[:, :m], want_dist) and np.array_equal(rows[:, :m], want_rows)
    assert (rows[:, m:] == -1).all() and (dist[:, m:] > bits).all()  # fewer codes than l: padded


@pytest.mark.parametrize("bits", WIDTHS)
def test_the_loop_compiled_for_a_width_equals_the_run_time_loop(bits):
    """Codes up to 16 words get a distance loop compiled for their width (1088 bits: past it, both are the run-time
    loop); on a batch with an odd last question, ties everywhere, 1 and 2 threads: the same as numpy's brute force."""
    from bprlab.index.kernels.distance import fixed_width

    assert len(fixed_width(bits // 64 + (bits % 64 > 0))) == (0 if bits > 64 * MAX_FIXED_WORDS else -(-bits // 64))
    rng = np.random.default_rng(bits)
    codes = random_codes(rng, 5000, bits // 8, distinct=700)
    questions = random_codes(rng, 5, bits // 8)
    want_dist, want_rows = brute_hamming(codes, questions, 300)
    blocked = BlockedCodes.from_rows(codes)
    for n_threads in (1, 2):
        for fixed in (True, False):
            dist, rows = hamming_top_l(blocked, to_words(questions), 300, n_threads, fixed=fixed)
            assert np.array_equal(dist, want_dist) and np.array_equal(rows, want_rows), (n_threads, fixed)


@pytest.mark.parametrize("bits", [8, 64, 72, 384, 768, LONGEST_FIXED])
def test_questions_packed_inside_the_scan_match_pack_codes(bits):
    """The compiled packing of float questions is core.hashing's sign (numpy order, -0.0 >= 0; NaN, which the index
    refuses before any kernel, would be bit 0), and the scan of embeddings is the scan of their packed codes."""
    rng = np.random.default_rng(bits)
    emb = rng.standard_normal((5, bits)).astype(np.float32)
    emb[0, :3] = [0.0, -0.0, -1e-30]
    assert np.array_equal(sign_words(emb, -(-bits // 64)), to_words(pack_codes(emb)))
    with_nan = emb.copy()
    with_nan[1, 0] = np.nan
    assert np.array_equal(sign_words(with_nan, -(-bits // 64)), to_words(np.packbits(with_nan >= 0, axis=1)))
    codes = BlockedCodes.from_rows(random_codes(rng, 3000, bits // 8, distinct=300))
    for n_threads in (1, 2):
        by_emb = hamming_top_l(codes, emb, 100, n_threads)
        by_words = hamming_top_l(codes, to_words(pack_codes(emb)), 100, n_threads)
        assert np.array_equal(by_emb[0], by_words[0]) and np.array_equal(by_emb[1], by_words[1])


SCAN_OF_WORDS_THEN_FLOATS = """
import sys
import numpy as np
from bprlab.index.kernels.hamming import hamming_top_l
from bprlab.index.kernels.layout import BlockedCodes, to_words
rng = np.random.default_rng(0)
blocked = BlockedCodes.from_rows(rng.integers(0, 256, (500, 96), dtype=np.uint8))
emb = rng.standard_normal((2, 768)).astype(np.float32)
if sys.argv[1] == "words-first":
    hamming_top_l(blocked, to_words(np.packbits(emb >= 0, axis=1)), 20, 2)
_, rows = hamming_top_l(blocked, emb, 20, 2)
print("ok" if (rows >= 0).all() else "no rows")
"""


def test_a_cached_kernel_runs_as_the_first_call_of_a_fresh_process(tmp_path):
    """The kernels call numba's threading layer by name. A scan of float questions compiled in a process that had
    loaded the scan of code words from the disk cache, then loaded from the cache as the first numba call of a
    fresh process (where nothing had started the threading layer), crashed with a segfault."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))

    def run(order: str) -> None:
        done = subprocess.run([sys.executable, "-c", SCAN_OF_WORDS_THEN_FLOATS, order], env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0 and done.stdout.strip() == "ok", (order, done.returncode, done.stderr[-2000:])

    run("words-first")  # compiles both scans into the empty cache
    for cached in tmp_path.rglob("hamming._top_l_of_embeddings*"):
        cached.unlink()
    run("words-first")  # the words' scan loaded from the cache, the floats' compiled after it
    run("floats-first")  # the floats' scan loaded as the process's first numba call


def test_whole_blocks_at_one_distance_keep_the_lowest_rows():
    """Every row ties: each block's 64 rows all enter the buffer, which is cut between blocks, many times over."""
    rng = np.random.default_rng(7)
    codes = np.repeat(random_codes(rng, 1, 96), 5000, axis=0)
    questions = random_codes(rng, 3, 96)
    for l in (1, 7, 300):
        dist, rows = hamming_top_l(BlockedCodes.from_rows(codes), to_words(questions), l, 2)
        assert (rows == np.arange(l)).all()
        assert (dist == brute_hamming(codes[:1], questions, 1)[0]).all()


def test_scan_of_an_empty_index_returns_nothing():
    empty = BlockedCodes.from_rows(np.zeros((0, 96), np.uint8))
    dist, rows = hamming_top_l(empty, to_words(np.zeros((3, 96), np.uint8)), 10, 2)
    assert rows.shape == (3, 10) and (rows == -1).all()


def test_thread_counts_and_batching_give_identical_results():
    rng = np.random.default_rng(1)
    codes = BlockedCodes.from_rows(random_codes(rng, 20_000, 96, distinct=3000))
    questions = to_words(random_codes(rng, 9, 96))
    one = hamming_top_l(codes, questions, 300, 1)
    two = hamming_top_l(codes, questions, 300, 2)
    alone = [hamming_top_l(codes, questions[i : i + 1], 300, 2) for i in range(len(questions))]
    assert np.array_equal(one[1], two[1]) and np.array_equal(one[0], two[0])
    assert np.array_equal(np.vstack([r for _, r in alone]), two[1])
    for prefetch_bytes in (0, 1, 1 << 16):  # prefetching is a hint: off, one block ahead, past the chunk's end
        for batch in (questions[:1], questions[:2], questions):
            want = hamming_top_l(codes, batch, 300, 2)
            for n_threads in (1, 2):
                got = hamming_top_l(codes, batch, 300, n_threads, prefetch_bytes)
                assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_speculative_bounds_keep_the_scan_exact():
    """Large chunks start from a bound sampled from one block in 64: on random codes it holds (no rescan) and the
    top-l is still exactly numpy's, ties by row, for one question and a batch, on 1 and 2 threads."""
    rng = np.random.default_rng(21)
    codes = random_codes(rng, 160_000, 96, distinct=120_000)  # duplicates: equal distances across the cut
    questions = random_codes(rng, 3, 96)
    blocked = BlockedCodes.from_rows(codes)
    for l in (100, 1000):
        want_dist, order = brute_hamming(codes, questions, l)
        for n_threads in (1, 2):
            stats = {}
            dist, rows = hamming_top_l(blocked, to_words(questions), l, n_threads, stats=stats)
            assert np.array_equal(rows, order) and np.array_equal(dist, want_dist)
            alone = hamming_top_l(blocked, to_words(questions[:1]), l, n_threads, stats=stats)
            assert np.array_equal(alone[1], order[:1])
            assert stats["speculative_chunks"] == 4 * n_threads and stats["rescanned_chunks"] == 0


def test_a_speculative_bound_that_misses_is_rescanned():
    """Near codes only in the sampled blocks (one in 64, from the 33rd of each chunk): the sample predicts far more
    near rows than the chunks hold, each chunk ends short of l, and rescanning it gives numpy's exact top-l."""
    rng = np.random.default_rng(22)
    n, l = 64 * 2048, 1500  # 2048 blocks: chunk starts are multiples of 64 blocks on 1 and 2 threads
    question = random_codes(rng, 1, 96)
    codes = random_codes(rng, n, 96)
    block = np.arange(n) // 64
    near = block % 64 == 32
    flips = np.unpackbits(question, axis=1).repeat(near.sum(), 0)
    flips ^= rng.random(flips.shape) < 0.1  # ~77 bits from the question
    codes[near] = np.packbits(flips, axis=1)
    want_dist, order = brute_hamming(codes, question, l)
    for n_threads in (1, 2):
        stats = {}
        dist, rows = hamming_top_l(BlockedCodes.from_rows(codes), to_words(question), l, n_threads, stats=stats)
        assert np.array_equal(rows, order) and np.array_equal(dist, want_dist)
        assert stats["rescanned_chunks"] == stats["speculative_chunks"] == n_threads


def test_non_contiguous_and_unaligned_codes_are_read_correctly():
    rng = np.random.default_rng(2)
    wide = rng.integers(0, 256, (500, 200), dtype=np.uint8)
    codes = wide[:, 3:99]  # a strided view, not 8-byte aligned
    questions = rng.integers(0, 256, (4, 96), dtype=np.uint8)
    want = brute_hamming(np.ascontiguousarray(codes), questions, 20)
    got = hamming_top_l(BlockedCodes.from_rows(codes), to_words(questions[:, ::1]), 20, 2)
    assert np.array_equal(got[1], want[1])
    assert np.array_equal(BlockedCodes.from_rows(codes).rows(np.arange(500)), codes)


def test_top_l_matches_faiss_linear_scan():
    rng = np.random.default_rng(3)
    codes, questions = random_codes(rng, 5000, 96), random_codes(rng, 10, 96)
    index = faiss.IndexBinaryFlat(768)
    index.add(codes)
    faiss_dist, faiss_rows = index.search(questions, 100)
    dist, rows = hamming_top_l(BlockedCodes.from_rows(codes), to_words(questions), 100, 2)
    assert np.array_equal(np.sort(faiss_dist, 1), dist)  # same distances; faiss orders ties its own way
    for q in range(10):
        cut = dist[q, -1]
        assert set(rows[q][dist[q] < cut]) == set(faiss_rows[q][faiss_dist[q] < cut])


def test_torch_kernels_equal_the_cpu_kernels_on_cpu_tensors():
    rng = np.random.default_rng(5)
    for n, bits in [(3000, 768), (500, 64), (9, 384)]:
        passages, questions = rng.standard_normal((n, bits)).astype(np.float32), rng.standard_normal((5, bits)).astype(np.float32)
        codes = pack_codes(passages)
        native, on_torch = BlockedCodes.from_rows(codes), torch_search.TorchCodes(codes, "cpu")
        dist, rows = hamming_top_l(native, to_words(pack_codes(questions)), 50, 2)
        t_dist, t_rows = torch_search.hamming_top_l(on_torch, pack_codes(questions), 50)
        assert np.array_equal(dist, t_dist) and np.array_equal(rows, t_rows)
        a, b = rerank_top_k(native, questions, rows, 10), torch_search.rerank_top_k(on_torch, questions, t_rows, 10)
        assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0], atol=1e-4)
        a, b = score_all_top_k(native, questions, 10, 2), torch_search.score_all_top_k(on_torch, questions, 10)
        assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0], atol=1e-4)


def test_kernels_leave_the_callers_thread_count_as_it_was():
    """Each kernel sets numba's thread count for its own loops and restores the caller's before returning."""
    import numba

    rng = np.random.default_rng(3)
    questions = rng.standard_normal((3, 128)).astype(np.float32)
    codes = BlockedCodes.from_rows(pack_codes(rng.standard_normal((500, 128)).astype(np.float32)))
    before = numba.get_num_threads()
    try:
        for caller in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(caller)
            for n in (1, 2, None):
                _, rows = hamming_top_l(codes, to_words(pack_codes(questions)), 20, n)
                rerank_top_k(codes, questions, rows, 5, n)
                score_all_top_k(codes, questions, 5, n)
                assert numba.get_num_threads() == caller
    finally:
        numba.set_num_threads(before)


def test_wrong_code_width_is_a_clear_error():
    codes = BlockedCodes.from_rows(np.zeros((10, 96), np.uint8))
    with pytest.raises(ValueError, match="words per code"):
        hamming_top_l(codes, to_words(np.zeros((2, 48), np.uint8)), 5, 1)
    with pytest.raises(ValueError, match="words per code"):
        hamming_top_l(codes, np.zeros((2, 384), np.float32), 5, 1)
    with pytest.raises(ValueError, match="a multiple of 8"):
        hamming_top_l(codes, np.zeros((2, 764), np.float32), 5, 1)
    with pytest.raises(ValueError, match="do not match"):
        rerank_top_k(codes, np.zeros((2, 384), np.float32), np.zeros((2, 5), np.int64), 5)


@pytest.mark.gpu
def test_cuda_search_equals_cpu_search():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(6)
    passages, questions = rng.standard_normal((50_000, 768)).astype(np.float32), rng.standard_normal((32, 768)).astype(np.float32)
    codes = pack_codes(passages)
    native, on_gpu = BlockedCodes.from_rows(codes), torch_search.TorchCodes(codes, "cuda")
    dist, rows = hamming_top_l(native, to_words(pack_codes(questions)), 1000, 2)
    g_dist, g_rows = torch_search.hamming_top_l(on_gpu, pack_codes(questions), 1000)
    assert np.array_equal(dist, g_dist) and np.array_equal(rows, g_rows)
    a, b = rerank_top_k(native, questions, rows, 100), torch_search.rerank_top_k(on_gpu, questions, g_rows, 100)
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0], atol=1e-3)


def test_an_edit_to_any_kernel_module_invalidates_every_cached_kernel(tmp_path):
    """numba checks a cached kernel against its own file only, and the scan inlines `buffers`: the kernels' cache
    stamp covers every module of the package, so an edited neighbour cannot leave stale machine code in use."""
    from pathlib import Path

    from bprlab.index import kernels
    from bprlab.index.kernels import hamming

    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    before = kernels._sources_digest(tmp_path)
    (tmp_path / "b.py").write_text("y = 30\n")
    assert kernels._sources_digest(tmp_path) != before
    locator = hamming._top_l._cache._impl.locator  # numba's cache locator of the scan
    assert getattr(type(locator), "bprlab_kernels", False)
    assert locator.get_source_stamp()[1] == kernels._sources_digest(Path(hamming.__file__).parent)


def test_kept_codes_are_the_candidates_codes_through_compaction_and_rescans():
    """The scan's copies of admitted codes follow their rows through every buffer cut, the merge and a rescan of
    chunks whose speculative bound missed (near codes only in the sampled blocks, as in the rescan test)."""
    rng = np.random.default_rng(23)
    n, l = 64 * 2048, 1500
    question = random_codes(rng, 1, 96)
    codes = random_codes(rng, n, 96)
    near = (np.arange(n) // 64) % 64 == 32
    flips = np.unpackbits(question, axis=1).repeat(near.sum(), 0)
    flips ^= rng.random(flips.shape) < 0.1
    codes[near] = np.packbits(flips, axis=1)
    blocked = BlockedCodes.from_rows(codes)
    for questions, size in ((question, l), (np.vstack([question, random_codes(rng, 2, 96)]), 300)):
        for n_threads in (1, 2):
            stats, kept = {}, np.empty((len(questions), size, 12), np.uint64)
            dist, rows = hamming_top_l(blocked, to_words(questions), size, n_threads, stats=stats, codes_out=kept)
            assert np.array_equal(rows, brute_hamming(codes, questions, size)[1])
            assert np.array_equal(kept, to_words(codes[rows.ravel()]).reshape(kept.shape))
            assert stats["rescanned_chunks"] >= n_threads  # the first question's chunks were scanned again
