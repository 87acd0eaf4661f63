"""The rerank kernels against the float rerank and numpy: lookup tables (bytes; nibbles in registers), the top-k
selection, scoring every code, and the scan and rerank fused in one call."""

import os
import subprocess
import sys

import numpy as np
import pytest

from bprlab.core.hashing import pack_codes, unpack_codes
from bprlab.index.kernels import nibble
from bprlab.index.kernels.hamming import hamming_top_l
from bprlab.index.kernels.layout import BlockedCodes
from bprlab.index.kernels.lut import rerank_top_k, score_all_top_k
from bprlab.index.kernels.select import best_k


@pytest.mark.parametrize("nibbles", [False, True], ids=["byte-tables", "nibble-registers"])
@pytest.mark.parametrize("bits", [64, 72, 384, 768])
def test_lookup_rerank_equals_the_float_rerank(bits, nibbles):
    """Both lookups (byte tables; 4-bit tables in registers, emulated where the CPU has no AVX-512), both layouts,
    codes whose last word is padding (72 bits), every prefetch burst and thread split."""
    rng = np.random.default_rng(bits)
    passages = rng.standard_normal((3000, bits)).astype(np.float32)
    questions = rng.standard_normal((7, bits)).astype(np.float32)
    codes = pack_codes(passages)
    truth = questions @ unpack_codes(codes, bits).T  # <e_q, sign(e_p)>
    candidates = rng.integers(-1, 3000, (7, 400))  # -1: no candidate, never returned
    for layout in (BlockedCodes.from_rows(codes), codes):
        scores, rows = rerank_top_k(layout, questions, candidates, 10, nibbles=nibbles)
        picked = np.where(candidates >= 0, np.take_along_axis(truth, np.maximum(candidates, 0), 1), -np.inf)
        want = -np.sort(-picked, axis=1)[:, :10]
        assert np.allclose(scores, want, rtol=1e-5, atol=1e-4)
        assert np.allclose(np.take_along_axis(truth, rows, 1), scores, rtol=1e-5, atol=1e-4)
        for burst in (0, 1, 7, 5000):  # prefetch bursts: none, one candidate, a last one cut short, all at once
            for n_threads, batch in ((1, 7), (2, 7), (2, 1)):  # a lone question splits its candidates
                again = rerank_top_k(layout, questions[:batch], candidates[:batch], 10, n_threads, burst, nibbles)
                assert np.array_equal(again[1], rows[:batch]) and np.array_equal(again[0], scores[:batch])


GENERIC_TARGET_CHECK = """
import numpy as np
from bprlab.core.hashing import pack_codes, unpack_codes
from bprlab.index.kernels import nibble
from bprlab.index.kernels.layout import BlockedCodes
from bprlab.index.kernels.lut import rerank_top_k, score_all_top_k
assert not nibble.AVAILABLE
rng = np.random.default_rng(5)
passages, questions = rng.standard_normal((300, 384)), rng.standard_normal((3, 384)).astype(np.float32)
codes = pack_codes(passages.astype(np.float32))
truth = questions @ unpack_codes(codes, 384).T
candidates = rng.integers(0, 300, (3, 40))
for nibbles in (False, True):
    scores, rows = rerank_top_k(codes, questions, candidates, 5, nibbles=nibbles)
    assert np.allclose(np.take_along_axis(truth, rows, 1), scores, rtol=1e-5, atol=1e-4)
    assert np.allclose(scores[:, 0], np.take_along_axis(truth, candidates, 1).max(1), rtol=1e-5, atol=1e-4)
    scores, rows = score_all_top_k(BlockedCodes.from_rows(codes), questions, 5, 2, nibbles)
    assert np.array_equal(rows, np.argsort(-truth, axis=1, kind="stable")[:, :5])
print("ok")
"""


@pytest.mark.slow
def test_nibble_lookups_compile_and_agree_without_avx512(tmp_path):
    """On a CPU without AVX-512 (here: numba told to compile for a generic x86-64) the nibble lookup is emitted as
    plain vector IR: it must compile and score the same (the byte tables stay the default there)."""
    env = dict(os.environ, NUMBA_CPU_NAME="generic", NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CPU_FEATURES", None)
    done = subprocess.run([sys.executable, "-c", GENERIC_TARGET_CHECK], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_nibble_lookups_are_the_default_exactly_where_the_cpu_has_avx512():
    import llvmlite.binding as llvm

    host = "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")
    assert nibble.AVAILABLE == (host and os.environ.get("NUMBA_CPU_NAME") is None)


def test_top_k_selection_is_numpys_stable_order():
    """The rerank's selection: the k highest scores, best first, equal scores in their order (numpy's stable
    argsort), with -inf (no candidate) lowest, -0.0 equal to 0.0, and few distinct values (the cut bucket full)."""
    rng = np.random.default_rng(11)
    cases = [np.full(50, 1.5, np.float32), np.array([-np.inf, 0.0, -0.0, 0.0, -np.inf], np.float32),
             np.array([], np.float32), np.array([3e38, -3e38, 1e-38, 0.0], np.float32)]
    for trial in range(300):
        scores = np.round(rng.standard_normal(int(rng.integers(1, 400))) * 10, int(rng.integers(0, 3)))
        if trial % 3 == 0:
            scores[rng.integers(0, len(scores), len(scores) // 3)] = -np.inf
        if trial % 5 == 0:
            scores[rng.integers(0, len(scores), len(scores) // 4)] = -0.0
        cases.append(scores.astype(np.float32))
    for scores in cases:
        for k in (0, 1, 7, 100, len(scores), len(scores) + 3):
            assert np.array_equal(best_k(scores, k), np.argsort(-scores, kind="stable")[:k]), (scores, k)


@pytest.mark.parametrize("nibbles", [False, True], ids=["byte-tables", "nibble-registers"])
@pytest.mark.parametrize("n", [2000, 37, 10])
def test_scoring_every_code_equals_brute_force(n, nibbles):
    """The no-candidate-generation ablation: chunks of whole blocks, a last block cut short (2000 = 31 x 64 + 16
    rows; 37 rows: the second thread's chunk empty), fewer codes than k (10)."""
    rng = np.random.default_rng(4)
    passages, questions = rng.standard_normal((n, 128)).astype(np.float32), rng.standard_normal((5, 128)).astype(np.float32)
    codes = pack_codes(passages)
    truth = questions @ unpack_codes(codes, 128).T
    for n_threads in (1, 2):
        scores, rows = score_all_top_k(BlockedCodes.from_rows(codes), questions, 15, n_threads, nibbles)
        found = min(15, n)
        assert np.array_equal(rows[:, :found], np.argsort(-truth, axis=1, kind="stable")[:, :found])
        assert np.allclose(scores[:, :found], -np.sort(-truth, axis=1)[:, :found], atol=1e-4)
        assert (rows[:, found:] == -1).all() and (scores[:, found:] == -np.inf).all()


@pytest.mark.parametrize("bits", [72, 768])
def test_scan_and_rerank_in_one_call_equals_the_two_calls(bits):
    """`fused.scan_and_rerank` (kept codes, reranked row-major in the same call) against `hamming_top_l` then
    `rerank_top_k` on the index: identical scores and rows, ties included, with fewer codes than l, 1 and 2
    threads, the byte tables and (where compiled for) the nibble lookups."""
    from bprlab.index.kernels.fused import scan_and_rerank

    rng = np.random.default_rng(bits)
    for n, l, k in ((4000, 300, 100), (90, 200, 120)):
        emb = rng.standard_normal((n, bits)).astype(np.float32)
        codes = BlockedCodes.from_rows(np.packbits(emb >= 0, axis=1)[rng.integers(0, n, n)])  # duplicates: ties
        questions = rng.standard_normal((3, bits)).astype(np.float32)
        for n_threads in (1, 2):
            for nibbles in (False, nibble.AVAILABLE):
                scores, rows, (scan, rerank) = scan_and_rerank(codes, questions, l, k, n_threads, nibbles=nibbles)
                _, candidates = hamming_top_l(codes, questions, l, n_threads)
                want = rerank_top_k(codes, questions, candidates, k, n_threads, nibbles=nibbles)
                assert np.array_equal(scores, want[0]) and np.array_equal(rows, want[1])
                assert scan > 0 and rerank >= 0

