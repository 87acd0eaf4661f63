"""Post-hoc compressions behind the index protocol (int8, RaBitQ, rescoring, sign(DPR) codes derived from the
float encoding), pooling, and the plots that compare them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bprlab.cli import stages
from bprlab.config import load_config
from bprlab.config.enums import IndexKind
from bprlab.config.schema import IndexConfig
from bprlab.errors import ConfigError
from bprlab.index.base import create_index, load_index, save_index
from bprlab.index.build import read_encoded
from bprlab.runs import RunPaths


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    passages = rng.standard_normal((2000, 64)).astype(np.float32)
    questions = passages[:20] + 0.3 * rng.standard_normal((20, 64)).astype(np.float32)
    return passages, questions


def _exact(passages, questions, k):
    return np.argsort(-(questions @ passages.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("kind, code_bytes", [(IndexKind.int8, 64), (IndexKind.rabitq, 64 // 8 + 8)])
def test_quantised_kinds_report_their_code_size_and_rescoring_restores_exact_order(vectors, tmp_path, kind,
                                                                                   code_bytes):
    passages, questions = vectors
    plain = create_index(IndexConfig(kind=kind), 64)
    plain.build(passages)
    assert plain.bytes_per_passage == code_bytes and plain.rescore_bytes_per_passage == 0
    cfg = IndexConfig(kind=kind, rescore=True, num_candidates=200)
    rescored = create_index(cfg, 64)
    rescored.build(passages)
    assert rescored.bytes_per_passage == code_bytes and rescored.rescore_bytes_per_passage == 64 * 4
    result = rescored.search(questions, 10)
    exact = _exact(passages, questions, 10)
    recall = lambda rows: np.mean([len(set(r) & set(e)) / 10 for r, e in zip(rows, exact)])  # noqa: E731
    # the scores are exact inner products, and the exact order wherever the top-10 is among the candidates
    np.testing.assert_allclose(result.scores, np.einsum("qd,qkd->qk", questions, passages[result.rows]), rtol=1e-4)
    assert recall(result.rows) >= recall(plain.search(questions, 10).rows)
    assert recall(result.rows) > (0.99 if kind is IndexKind.int8 else 0.8)  # RaBitQ: 1 bit/dim of 64-d noise
    save_index(rescored, cfg, 64, tmp_path / "ix")
    loaded, meta = load_index(cfg, tmp_path / "ix")
    assert (loaded.search(questions, 10).rows == result.rows).all()
    assert meta["index_bytes"] > 2000 * (code_bytes + 256)  # the kept floats are on disk too
    with pytest.raises(Exception, match="rescore"):  # an index built without them cannot be searched as if
        load_index(dataclasses.replace(cfg, rescore=False), tmp_path / "ix")


def test_rescoring_is_a_config_error_where_it_means_nothing(tiny_overrides):
    with pytest.raises(ConfigError, match="binary kinds rerank from the codes"):
        load_config(None, [*tiny_overrides, "index.kind=binary_flat", "index.rescore=true"])
    with pytest.raises(ConfigError, match="index.kind=flat"):
        load_config(None, [*tiny_overrides, "index.kind=flat", "index.rescore=true"])


def test_binary_rows_of_a_dpr_run_derive_their_codes_from_its_float_encoding(tiny_overrides, caplog):
    base = [*tiny_overrides, "name=dpr", "method=dpr"]
    flat = load_config(None, [*base, "index.kind=flat"])
    stages.train(flat)
    stages.encode(flat)
    binary = load_config(None, [*base, "index.kind=binary_flat"])
    with caplog.at_level("INFO"):
        stages.encode(binary)
    assert "no encoder pass" in caplog.text
    derived, _ = read_encoded(RunPaths(binary).passages("code"))
    stages.encode(binary, force=True)  # the encoder's own codes
    encoded, _ = read_encoded(RunPaths(binary).passages("code"))
    assert np.array_equal(derived, encoded)
    emb, _ = read_encoded(RunPaths(flat).passages("emb"))
    assert np.array_equal(derived, np.packbits(emb >= 0, axis=1))


def test_mean_pooling_is_the_masked_mean_and_normalising_gives_unit_vectors(tiny_bert):
    from bprlab.core.encoder import BiEncoder

    cls_model = BiEncoder.from_pretrained(tiny_bert).eval()
    mean_model = BiEncoder.from_pretrained(tiny_bert, pooling="mean", normalize=True).eval()
    mean_model.load_state_dict(cls_model.state_dict())
    ids = torch.tensor([[101, 2054, 2003, 102, 0, 0], [101, 2054, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        states = cls_model.question_tower.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        out = mean_model.encode_question(ids, mask)
    expected = torch.stack([states[0, :4].mean(0), states[1, :3].mean(0)])
    torch.testing.assert_close(out, torch.nn.functional.normalize(expected, dim=-1))
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))


def test_the_own_pooling_experiment_matches_what_the_packaged_encoder_declares():
    from bprlab.core.encoder import declared_pooling

    cfg = load_config("experiments/squad/zero_shot_own.yaml", [])
    assert declared_pooling(cfg.model.name) == {"pooling": cfg.model.pooling.value, "normalize": cfg.model.normalize}
    assert declared_pooling("experiments") is None  # a folder without sentence-transformers modules: [CLS]


def test_new_model_keys_at_their_defaults_keep_existing_runs_current(tiny_overrides):
    from bprlab.stamps import train_stamp

    base = load_config(None, tiny_overrides)
    assert train_stamp(base) == train_stamp(load_config(None, [*tiny_overrides, "model.pooling=cls"]))
    assert train_stamp(base) != train_stamp(load_config(None, [*tiny_overrides, "model.pooling=mean"]))


def test_frontier_joins_only_a_familys_budgets_and_bars_for_categories(tmp_path):
    from bprlab.report import plots

    rows = [{"method": "dpr-flat", "bytes_per_passage": 1536, "top20": 92.0, "ms_per_query": 0.2},
            {"method": "bpr-linear", "bytes_per_passage": 48, "top20": 90.0, "ms_per_query": 0.08},
            *({"method": f"pq-{b}", "family": "dpr-pq", "bytes_per_passage": b, "top20": 80 + b / 20,
               "ms_per_query": 0.1} for b in (24, 48, 96)),
            {"method": "dpr-pq", "bytes_per_passage": 12, "top20": 79.0}]  # another table's row: joins the family
    drawn = {}
    real_plot = plots.pyplot().Axes.plot

    def spy(ax, xs, ys, **kwargs):
        drawn.setdefault(kwargs["label"], []).append((list(xs), kwargs["linestyle"]))
        return real_plot(ax, xs, ys, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots.pyplot().Axes, "plot", spy)
        path = plots.frontier(rows, "t", tmp_path / "f.png")
    assert path.is_file()
    assert drawn["dpr-pq"][0] == ([12, 24, 48, 96], "-")  # one method over its budgets: a line
    assert drawn["dpr-flat"][0][1] == "none" and drawn["bpr-linear"][0][1] == "none"  # categories: points
    assert plots.bars(rows, "t", tmp_path / "b.png").is_file()


def test_same_projection_init_starts_both_towers_in_one_space(tiny_bert):
    from bprlab.core.encoder import BiEncoder

    torch.manual_seed(0)
    tied = BiEncoder.from_pretrained(tiny_bert, projection_dim=16, same_projection_init=True)
    free = BiEncoder.from_pretrained(tiny_bert, projection_dim=16)
    for a, b in zip(tied.question_tower.projection.parameters(), tied.passage_tower.projection.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()  # equal values, separate weights
    weight = lambda m, side: getattr(m, f"{side}_tower").projection[0].weight  # noqa: E731
    assert not torch.equal(weight(free, "question"), weight(free, "passage"))  # the official code's default
