"""binary_pca: sign codes of a post-hoc PCA (+ rotation) reduction of float embeddings, searched as BPR searches
(bprlab.index.reduced), and the pipeline that builds it from a trained model's float encoding."""

from __future__ import annotations

import dataclasses
import json

import faiss
import numpy as np
import pytest

from bprlab.cli import stages
from bprlab.config import load_config
from bprlab.config.enums import IndexKind, Rotation
from bprlab.config.schema import IndexConfig
from bprlab.errors import ConfigError, InputError, StageError
from bprlab.index.base import create_index, load_index, save_index
from bprlab.index.reduced import fit_reduction
from bprlab.runs import RunPaths

DIM, BITS = 32, 8


@pytest.fixture(scope="module")
def vectors():
    """Passages whose variance falls off by coordinate (so the principal components are the first axes), off
    centre; questions near the first 10 passages."""
    rng = np.random.default_rng(0)
    scales = (10.0 * 1.5 ** -np.arange(DIM)).astype(np.float32)  # each variance 2.25 times the next
    passages = rng.standard_normal((600, DIM)).astype(np.float32) * scales + 3.0
    questions = passages[:10] - 3.0 + 0.05 * rng.standard_normal((10, DIM)).astype(np.float32)
    return passages, questions


def test_pca_keeps_the_leading_components_and_the_codes_are_their_signs(vectors):
    passages, questions = vectors
    cfg = IndexConfig(kind=IndexKind.binary_pca, rotation=Rotation.none, code_bits=BITS, num_candidates=50)
    index = create_index(cfg, DIM)
    index.build(passages)
    # the rows of R are the first BITS axes, up to sign: the codes are the signs of the centred leading coordinates
    np.testing.assert_allclose(np.abs(index.matrix), np.eye(DIM, dtype=np.float32)[:BITS], atol=0.05)
    centred = (passages - passages.mean(axis=0)) @ index.matrix.T
    assert np.array_equal(index.inner.codes, np.packbits(centred >= 0, axis=1))
    assert index.bytes_per_passage == BITS // 8
    # the rerank scores <R e_q, sign(R (e_p - mean))>, the question not centred
    result = index.search(questions, 5)
    signs = np.where(centred >= 0, 1.0, -1.0)
    expected = np.einsum("qb,qkb->qk", questions @ index.matrix.T, signs[result.rows])
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5, atol=1e-4)
    assert index.candidate_order(questions, 20).rows.shape == (10, 20)


@pytest.mark.parametrize("rotation", [Rotation.none, Rotation.random, Rotation.itq])
def test_the_reduction_gives_the_signs_faiss_gives(vectors, rotation):
    passages, _ = vectors
    matrix, offset = fit_reduction(passages, BITS, rotation)
    if rotation is Rotation.itq:
        transform = faiss.ITQTransform(DIM, BITS, True)
    else:
        transform = faiss.PCAMatrix(DIM, BITS, 0.0, rotation is Rotation.random)
    transform.train(passages)
    ours = passages @ matrix.T + offset
    assert np.array_equal(ours >= 0, transform.apply(passages) >= 0)
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(BITS), atol=1e-4)  # orthonormal rows


def test_saved_and_loaded_it_searches_the_same_and_refuses_other_settings(vectors, tmp_path):
    passages, questions = vectors
    cfg = IndexConfig(kind=IndexKind.binary_pca, rotation=Rotation.itq, code_bits=16, num_candidates=40)
    index = create_index(cfg, DIM)
    index.build(passages)
    meta = save_index(index, cfg, DIM, tmp_path / "ix")
    assert meta["bytes_per_passage"] == 2 and meta["index_bytes"] > 600 * 2 + 16 * DIM * 4  # codes + R
    loaded, _ = load_index(cfg, tmp_path / "ix")
    first, again = index.search(questions, 5), loaded.search(questions, 5)
    assert np.array_equal(first.rows, again.rows) and np.allclose(first.scores, again.scores)
    assert (first.rows[:, 0] == np.arange(10)).mean() >= 0.9  # a question finds the passage it was made from
    for other in (dataclasses.replace(cfg, rotation=Rotation.none), dataclasses.replace(cfg, code_bits=8)):
        with pytest.raises(StageError, match="rebuild it"):
            load_index(other, tmp_path / "ix")
    with pytest.raises(InputError, match="another model"):
        loaded.search(questions[:, :16], 5)


def test_more_bits_than_dimensions_or_passages_is_one_clear_error(vectors):
    with pytest.raises(ConfigError, match="at most 32"):
        create_index(IndexConfig(kind=IndexKind.binary_pca, code_bits=64), DIM)
    index = create_index(IndexConfig(kind=IndexKind.binary_pca, code_bits=16), DIM)
    with pytest.raises(StageError, match="16 passage vectors span fewer than the 16 principal components"):
        index.build(vectors[0][:16])


def test_a_trained_model_reduced_after_training_runs_through_the_stages(tiny_overrides, tiny_data):
    """The float encoding of a BPR run, reduced to 16 of its 32 dimensions: the eval reports 16-bit codes and
    measures the candidate stage."""
    with open(tiny_data["passages"], "a") as handle:  # PCA to 16 components needs more than 16 passages
        handle.writelines(f"{100 + i}\tFiller passage number {i}, about nothing in particular.\tFiller {i}\n"
                          for i in range(16))
    base = [*tiny_overrides, "name=bpr"]
    cfg = load_config(None, [*base, "index.kind=binary_pca", "index.code_bits=16", "index.rotation=itq"])
    metrics = stages.run(cfg)
    assert metrics["code_bits"] == 16 and metrics["bytes_per_passage"] == 2
    assert RunPaths(cfg).passages("emb").is_dir() and not RunPaths(cfg).passages("code").exists()
    assert "reduction" in json.loads((RunPaths(cfg).eval / "metrics.json").read_text())
    with np.load(RunPaths(cfg).eval / "retrieval.npz") as saved:
        assert "hamming_first" in saved
    with pytest.raises(ConfigError, match="index.hash_bits=8 means nothing for index.kind=binary_pca"):
        load_config(None, [*base, "index.kind=binary_pca", "index.hash_bits=8"])


def test_a_reduction_fitted_on_a_sample_is_another_index():
    """index.train_size names the folder (never a reduction fitted on other passages reused), and only when set."""
    from bprlab.runs import index_build_tag

    full = IndexConfig(kind=IndexKind.binary_pca, code_bits=128, rotation=Rotation.itq)
    sampled = dataclasses.replace(full, train_size=1000)
    assert index_build_tag(full) == "binary_pca-itq-128bits"
    assert index_build_tag(sampled) == "binary_pca-itq-128bits-train1000"
    assert index_build_tag(IndexConfig(kind=IndexKind.binary_flat)) == "binary_flat"
