"""LSH and PQ modules (a frozen DPR checkpoint + a quantiser) on synthetic vectors against numpy / faiss."""

import faiss
import numpy as np
import pytest

from bprlab.config import load_config, to_dict
from bprlab.core.hashing import pack_codes, unpack_codes
from bprlab.lit.posthoc import LSHModule, PQModule

D = 32  # the tiny BERT's hidden size


@pytest.fixture
def config(tiny_overrides):
    return to_dict(load_config(None, [*tiny_overrides, "method=dpr", "index.kind=flat"]))


def test_lsh_module_without_rotation_is_hamming_on_signs(config):
    config["index"]["rotation"] = "none"
    module = LSHModule(config)
    assert not any(p.requires_grad for p in module.model.parameters())  # the encoder stays frozen
    rng = np.random.default_rng(1)
    passages, questions = rng.standard_normal((200, D), dtype=np.float32), rng.standard_normal((5, D), dtype=np.float32)
    module.fit_quantizer(passages)
    hamming = (unpack_codes(pack_codes(questions), D)[:, None] != unpack_codes(pack_codes(passages), D)[None]).sum(-1)
    result = module.search(questions, 10)
    assert np.array_equal(-result.scores, np.sort(hamming, axis=1)[:, :10])
    assert module.bytes_per_passage == D // 8


def test_pq_module_matches_faiss_index_pq(config):
    config["index"].update(pq_subquantizers=4, pq_bits=4)
    module = PQModule(config)
    rng = np.random.default_rng(2)
    passages, questions = rng.standard_normal((300, D), dtype=np.float32), rng.standard_normal((5, D), dtype=np.float32)
    module.fit_quantizer(passages)
    reference = faiss.IndexPQ(D, 4, 4, faiss.METRIC_INNER_PRODUCT)
    reference.train(passages)
    reference.add(passages)
    scores, rows = reference.search(questions, 10)
    result = module.search(questions, 10)
    assert np.allclose(result.scores, scores, atol=1e-4) and module.bytes_per_passage == 2


def test_module_needs_a_fitted_quantizer(config):
    with pytest.raises(RuntimeError, match="fit_quantizer"):
        LSHModule(config).search(np.zeros((1, D), np.float32), 1)


def test_from_dpr_wraps_a_trained_checkpoint(tiny_overrides):
    import torch

    from bprlab.lit.train import train
    from bprlab.runs import RunPaths

    cfg = load_config(None, [*tiny_overrides, "name=dpr-for-lsh", "method=dpr", "index.kind=flat", "train.epochs=1"])
    train(cfg)
    checkpoint = RunPaths(cfg).last_checkpoint
    module = LSHModule.from_dpr(str(checkpoint), code_bits=16)
    trained = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    for name, value in module.model.state_dict().items():
        assert torch.equal(value, trained[f"model.{name}"]), name  # the DPR weights, unchanged
    assert module.index_cfg.kind.value == "lsh" and module.index_cfg.code_bits == 16
