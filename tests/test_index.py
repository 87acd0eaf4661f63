"""Every index against numpy brute force on synthetic vectors (the faiss test-suite habit)."""

import numpy as np
import pytest

from bprlab.config.enums import IndexKind
from bprlab.config.schema import IndexConfig
from bprlab.core.hashing import pack_codes, unpack_codes
from bprlab.index.base import create_index, load_index, save_index

N, D, Q, K = 400, 64, 9, 10


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, D)).astype(np.float32), rng.standard_normal((Q, D)).astype(np.float32)


def brute_top(scores: np.ndarray, k: int) -> np.ndarray:
    return -np.sort(-scores, axis=1)[:, :k]


def build(cfg: IndexConfig, data: np.ndarray):
    index = create_index(cfg, D)
    index.build(pack_codes(data) if index.input_kind == "code" else data)
    return index


def test_flat_is_exact_inner_product(vectors):
    passages, questions = vectors
    result = build(IndexConfig(kind=IndexKind.flat), passages).search(questions, K)
    truth = questions @ passages.T
    assert np.allclose(result.scores, brute_top(truth, K), atol=1e-4)
    assert np.allclose(np.take_along_axis(truth, result.rows, 1), result.scores, atol=1e-4)


def test_binary_linear_scan_reranks_by_question_dot_sign(vectors):
    passages, questions = vectors
    truth = questions @ unpack_codes(pack_codes(passages), D).T  # <e_q, sign(e_p)>
    result = build(IndexConfig(kind=IndexKind.binary_flat, num_candidates=N), passages).search(questions, K)
    assert np.allclose(result.scores, brute_top(truth, K), atol=1e-4)
    assert np.allclose(np.take_along_axis(truth, result.rows, 1), result.scores, atol=1e-4)


@pytest.mark.parametrize("num_candidates", [50, N + 20])  # l above N: candidates padded with -1
def test_a_few_questions_scan_and_rerank_in_one_call_with_the_same_results(vectors, num_candidates):
    """Up to 8 questions take the fused native call (`kernels.fused`), a batch of 9 the two calls: same rows and
    scores, alone, in a group, on 1 and 2 threads; the call's time is split into scan and rerank."""
    passages, questions = vectors
    index = build(IndexConfig(kind=IndexKind.binary_flat, num_candidates=num_candidates), passages)
    for threads in (1, 2):
        index.threads = threads
        batched = index.search(questions, K)  # Q = 9: candidates, then rerank
        alone = [index.search(questions[i : i + 1], K) for i in range(Q)]
        group = index.search(questions[:3], K)
        assert np.array_equal(np.vstack([r.rows for r in alone]), batched.rows)
        assert np.array_equal(np.vstack([r.scores for r in alone]), batched.scores)
        assert np.array_equal(group.rows, batched.rows[:3]) and np.array_equal(group.scores, batched.scores[:3])
    assert index.stats.rerank_seconds > 0 and index.stats.candidate_seconds > 0


def test_binary_candidates_are_the_l_nearest_in_hamming(vectors):
    passages, questions = vectors
    l = 50
    signs_p, signs_q = unpack_codes(pack_codes(passages), D), unpack_codes(pack_codes(questions), D)
    hamming = (signs_q[:, None, :] != signs_p[None]).sum(-1)  # (Q, N)
    result = build(IndexConfig(kind=IndexKind.binary_flat, num_candidates=l), passages).search(questions, K)
    cutoff = np.sort(hamming, axis=1)[:, l - 1 : l]  # the l-th smallest distance
    assert (np.take_along_axis(hamming, result.rows, 1) <= cutoff).all()
    rerank = questions @ signs_p.T
    within = np.where(hamming < cutoff, rerank, -np.inf)  # passages surely among the candidates
    assert (result.scores[:, 0] >= within.max(axis=1) - 1e-4).all()


def test_no_rerank_returns_hamming_order(vectors):
    passages, questions = vectors
    signs_p, signs_q = unpack_codes(pack_codes(passages), D), unpack_codes(pack_codes(questions), D)
    hamming = (signs_q[:, None, :] != signs_p[None]).sum(-1)
    result = build(IndexConfig(kind=IndexKind.binary_flat, rerank=False), passages).search(questions, K)
    assert np.array_equal(result.scores, D - 2 * np.sort(hamming, axis=1)[:, :K])


def test_the_candidate_stage_alone_is_the_hamming_order_of_the_rerank_search(vectors):
    passages, questions = vectors
    signs_p, signs_q = unpack_codes(pack_codes(passages), D), unpack_codes(pack_codes(questions), D)
    hamming = (signs_q[:, None, :] != signs_p[None]).sum(-1)
    index = build(IndexConfig(kind=IndexKind.binary_flat, num_candidates=50), passages)
    stage = index.candidate_order(questions, 50)
    assert np.array_equal(stage.scores, D - 2 * np.sort(hamming, axis=1)[:, :50])
    # ties by row id, as the search orders them: the same rows as the search without its rerank
    plain = build(IndexConfig(kind=IndexKind.binary_flat, rerank=False), passages).search(questions, 50)
    assert np.array_equal(stage.rows, plain.rows)
    assert index.stats.queries == 0  # a measurement beside the search: not counted in its stats
    exhaustive = build(IndexConfig(kind=IndexKind.binary_flat, candidate_generation=False), passages)
    assert exhaustive.candidate_order(questions, 50) is None
    assert build(IndexConfig(kind=IndexKind.flat), passages).candidate_order(questions, 50) is None


def test_no_candidate_generation_scores_every_passage(vectors):
    passages, questions = vectors
    truth = questions @ unpack_codes(pack_codes(passages), D).T
    index = build(IndexConfig(kind=IndexKind.binary_flat, candidate_generation=False), passages)
    result = index.search(questions, K)
    assert np.allclose(result.scores, brute_top(truth, K), atol=1e-4)
    assert index.stats.scanned_fraction == 1.0


def test_hash_lookup_probing_every_bucket_equals_linear_scan(vectors):
    passages, questions = vectors
    exhaustive = IndexConfig(kind=IndexKind.binary_hash, hash_bits=4, hash_flips=4, num_candidates=N)
    linear = IndexConfig(kind=IndexKind.binary_flat, num_candidates=N)
    a, b = build(exhaustive, passages).search(questions, K), build(linear, passages).search(questions, K)
    assert np.allclose(a.scores, b.scores, atol=1e-4)


def test_hash_lookup_scans_a_share_and_only_returns_scanned_codes(vectors):
    passages, questions = vectors
    index = build(IndexConfig(kind=IndexKind.binary_hash, hash_bits=8, hash_flips=1, num_candidates=N), passages)
    result = index.search(questions, K)
    assert 0 < index.stats.scanned_fraction < 0.2  # radius 1 around an 8-bit key: 9 of 256 buckets
    keys_p = pack_codes(passages)[:, 0]
    keys_q = pack_codes(questions)[:, 0]
    for i in range(Q):
        found = result.rows[i][result.rows[i] >= 0]
        flips = np.unpackbits((keys_p[found] ^ keys_q[i])[:, None], axis=1).sum(1)
        assert (flips <= 1).all()


def test_multi_table_hash(vectors):
    passages, questions = vectors
    cfg = IndexConfig(kind=IndexKind.binary_hash, hash_bits=8, hash_flips=1, hash_tables=3, num_candidates=N)
    single = IndexConfig(kind=IndexKind.binary_hash, hash_bits=8, hash_flips=1, num_candidates=N)
    many, one = build(cfg, passages), build(single, passages)
    many.search(questions, K)
    one.search(questions, K)
    assert many.stats.scanned_fraction > one.stats.scanned_fraction


@pytest.mark.parametrize("cfg", [
    IndexConfig(kind=IndexKind.flat),
    IndexConfig(kind=IndexKind.binary_flat, num_candidates=100),
    IndexConfig(kind=IndexKind.binary_hash, hash_bits=6, hash_flips=2, num_candidates=100),
])
def test_save_load_roundtrip(vectors, tmp_path, cfg):
    passages, questions = vectors
    index = build(cfg, passages)
    meta = save_index(index, cfg, D, tmp_path / "idx")
    loaded, loaded_meta = load_index(cfg, tmp_path / "idx")
    before, after = index.search(questions, K), loaded.search(questions, K)
    assert np.array_equal(before.rows, after.rows)
    assert meta["index_bytes"] == loaded_meta["index_bytes"] > 0


@pytest.mark.parametrize("cfg", [IndexConfig(kind=IndexKind.flat), IndexConfig(kind=IndexKind.binary_flat)])
def test_a_faiss_file_is_faiss_format_and_a_full_disk_is_an_os_error_not_a_truncated_file(vectors, tmp_path, cfg):
    """faiss's own writer prints a full disk at close and returns, leaving a truncated file; /dev/full fails every write."""
    import errno
    import os

    import faiss

    passages, questions = vectors
    index = build(cfg, passages)
    index.write_faiss(tmp_path / "x.faissindex")
    loaded = type(index).read_faiss(cfg, tmp_path / "x.faissindex")
    assert np.array_equal(index.search(questions, K).rows, loaded.search(questions, K).rows)
    read = faiss.read_index_binary if cfg.kind == IndexKind.binary_flat else faiss.read_index
    assert read(str(tmp_path / "x.faissindex")).ntotal == N
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with pytest.raises(OSError) as raised:
        index.write_faiss("/dev/full")
    assert raised.value.errno == errno.ENOSPC


def test_binary_code_is_one_32nd_of_float(vectors):
    passages, _ = vectors
    flat = build(IndexConfig(kind=IndexKind.flat), passages)
    binary = build(IndexConfig(kind=IndexKind.binary_flat), passages)
    assert binary.bytes_per_passage * 32 == flat.bytes_per_passage == D * 4


# ------------------------------------------------------------------------------------- post-hoc baselines


def test_lsh_without_rotation_is_hamming_on_the_sign_of_dpr_embeddings(vectors):
    from bprlab.config.enums import Rotation

    passages, questions = vectors
    signs_p, signs_q = unpack_codes(pack_codes(passages), D), unpack_codes(pack_codes(questions), D)
    hamming = (signs_q[:, None, :] != signs_p[None]).sum(-1)
    index = build(IndexConfig(kind=IndexKind.lsh, rotation=Rotation.none), passages)
    result = index.search(questions, K)
    assert np.array_equal(-result.scores, np.sort(hamming, axis=1)[:, :K])
    assert index.bytes_per_passage == D // 8


def test_lsh_random_rotation_is_sign_of_a_fixed_orthogonal_projection(vectors):
    import faiss

    passages, questions = vectors
    index = build(IndexConfig(kind=IndexKind.lsh, code_bits=D), passages)
    rotation = faiss.vector_to_array(index.index.rrot.A).reshape(D, D)  # faiss's random rotation
    assert np.allclose(rotation @ rotation.T, np.eye(D), atol=1e-4)
    codes_p = pack_codes(passages @ rotation.T)
    codes_q = pack_codes(questions @ rotation.T)
    hamming = (unpack_codes(codes_q, D)[:, None] != unpack_codes(codes_p, D)[None]).sum(-1)
    result = index.search(questions, K)
    assert np.array_equal(-result.scores, np.sort(hamming, axis=1)[:, :K])


def test_lsh_itq_learns_a_rotation_at_the_bit_budget(vectors):
    from bprlab.config.enums import Rotation

    passages, questions = vectors
    index = build(IndexConfig(kind=IndexKind.lsh, rotation=Rotation.itq, code_bits=32), passages)
    assert index.bytes_per_passage == 4
    result = index.search(questions, K)
    assert (result.rows >= 0).all() and (np.diff(result.scores, axis=1) <= 0).all()


def test_pq_scores_are_inner_products_with_reconstructed_passages(vectors):
    passages, questions = vectors
    index = build(IndexConfig(kind=IndexKind.pq, pq_subquantizers=8, pq_bits=4), passages)
    assert index.bytes_per_passage == 4  # 8 sub-quantisers x 4 bits
    decoded = index.index.sa_decode(index.index.sa_encode(passages))  # what the index holds per passage
    truth = questions @ decoded.T
    result = index.search(questions, K)
    assert np.allclose(result.scores, brute_top(truth, K), atol=1e-3)


def test_pq_default_budget_matches_bpr_bytes(vectors):
    passages, _ = vectors
    assert build(IndexConfig(kind=IndexKind.pq, pq_bits=4), passages[:300]).bytes_per_passage * 2 == D // 8


def test_hnsw_finds_the_exact_neighbours_on_a_small_set(vectors):
    passages, questions = vectors
    truth = questions @ passages.T
    index = build(IndexConfig(kind=IndexKind.hnsw, hnsw_ef_search=400), passages)
    result = index.search(questions, K)
    assert np.allclose(result.scores, brute_top(truth, K), atol=1e-4)
    # distance computations per query / N: on 400 vectors with ef=400 the graph visits about all of them
    assert 0.5 < index.stats.scanned_fraction < 1.5


def test_factory_string_builds_any_faiss_index(vectors):
    passages, questions = vectors
    index = build(IndexConfig(kind=IndexKind.factory, factory="Flat"), passages)
    assert np.allclose(index.search(questions, K).scores, brute_top(questions @ passages.T, K), atol=1e-4)


@pytest.mark.parametrize("factory, stored", [("IVF4,PQ4", 4), ("IVF4,SQ8", D), ("IVF4,Flat", 4 * D),
                                             ("PQ4", 4), ("Flat", 4 * D)])
def test_factory_bytes_per_passage_are_what_each_passage_stores(vectors, factory, stored):
    """An inverted list stores each vector's code, not the list number faiss's standalone codec adds."""
    passages, _ = vectors
    assert build(IndexConfig(kind=IndexKind.factory, factory=factory), passages).bytes_per_passage == stored


def test_too_few_vectors_to_train_a_quantiser_is_a_clear_error(vectors):
    from bprlab.errors import StageError

    passages, _ = vectors
    with pytest.raises(StageError, match="could not train the pq index on 100 passage vectors"):
        build(IndexConfig(kind=IndexKind.pq, pq_subquantizers=8, pq_bits=8), passages[:100])


@pytest.mark.parametrize("settings", [
    dict(kind=IndexKind.binary_flat, num_candidates=50),
    dict(kind=IndexKind.binary_flat, rerank=False),
    dict(kind=IndexKind.binary_flat, candidate_generation=False),
    dict(kind=IndexKind.binary_hash, hash_bits=8, hash_flips=1, num_candidates=50),
    dict(kind=IndexKind.binary_hash, hash_bits=6, hash_flips=1, hash_tables=3, num_candidates=50),
])
def test_native_and_faiss_backends_agree(vectors, settings):
    passages, questions = vectors
    native = build(IndexConfig(**settings, backend="native"), passages)
    reference = build(IndexConfig(**settings, backend="faiss"), passages)
    a, b = native.search(questions, K), reference.search(questions, K)
    assert np.allclose(a.scores, b.scores, atol=1e-4)  # rows may differ only among equal scores
    assert native.stats.scanned_fraction == reference.stats.scanned_fraction


def test_hash_index_holds_the_codes_once(vectors):
    passages, questions = vectors
    index = build(IndexConfig(kind=IndexKind.binary_hash, hash_bits=8, hash_flips=1, hash_tables=2), passages)
    index.search(questions, K)
    search = index._search
    assert search.codes.ntotal == N and index._codes is None  # the blocked codes are the only copy
    assert all(not hasattr(t, "codes") and t.rows.dtype == np.int64 for t in search.tables)


def test_questions_of_another_width_are_a_clear_error(vectors):
    from bprlab.errors import InputError

    passages, questions = vectors
    index = build(IndexConfig(kind=IndexKind.binary_flat), passages)
    with pytest.raises(InputError, match="another model"):
        index.search(questions[:, :32], K)


def test_an_index_folder_without_codes_names_the_command(tmp_path):
    from bprlab.errors import StageError

    cfg = IndexConfig(kind=IndexKind.binary_flat)
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "index.json").write_text('{"kind": "binary_flat", "dim": 64, "ntotal": 1}')
    with pytest.raises(StageError, match="--force"):
        load_index(cfg, folder)


def test_saved_codes_are_plain_packbits_in_row_order(vectors, tmp_path):
    passages, questions = vectors
    cfg = IndexConfig(kind=IndexKind.binary_flat)
    index = build(cfg, passages)
    index.search(questions, K)  # after a search the codes live in the blocked layout; saving gives rows back
    save_index(index, cfg, D, tmp_path / "idx")
    assert np.array_equal(np.load(tmp_path / "idx" / "codes.npy"), pack_codes(passages))


def test_encoded_shards_merge_in_row_order(tmp_path):
    """Two ranks' interleaved shards, with the distributed sampler's padding row written twice."""
    from bprlab.artifacts import write_json
    from bprlab.index.build import MANIFEST, read_encoded

    values = np.arange(7 * 4, dtype=np.uint8).reshape(7, 4)
    write_json(tmp_path / MANIFEST, {"num_passages": 7, "dim": 32})
    np.savez(tmp_path / "rank0-0.npz", rows=np.array([0, 2, 4, 6]), values=values[[0, 2, 4, 6]])
    np.savez(tmp_path / "rank1-0.npz", rows=np.array([1, 3, 5, 0]), values=values[[1, 3, 5, 0]])
    merged, _ = read_encoded(tmp_path)
    assert np.array_equal(merged, values)
    (tmp_path / "rank1-0.npz").unlink()
    from bprlab.errors import StageError

    with pytest.raises(StageError, match="manifest says 7"):
        read_encoded(tmp_path)


def test_top_k_keeps_equal_scores_in_column_order_and_drops_missing_rows():
    """Columns arrive in Hamming order with ties by row id; the kept k keep that order among equal scores (on every
    machine: no partition whose SIMD variant picks among ties), and a -1 row never wins."""
    from bprlab.index.base import top_k

    scores = np.array([[1.0, 3.0, 3.0, 3.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0]], np.float32)
    rows = np.array([[10, 11, 12, 13, 14, 15], [-1, 21, 22, -1, 24, 25]])
    kept = top_k(scores, rows, 3)
    assert kept.rows.tolist() == [[11, 12, 13], [21, 22, 24]]
    padded = top_k(scores[:, :2], np.array([[10, 11], [-1, -1]]), 4)
    assert padded.rows.tolist() == [[11, 10, -1, -1], [-1, -1, -1, -1]] and np.isinf(padded.scores[1]).all()
