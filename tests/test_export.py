"""`bprlab export`: a folder that plain transformers, faiss and sentence-transformers load as the run, written whole
or not at all."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import empty_config, evaluated_rows, questions_of

from bprlab.cli import stages
from bprlab.cli.main import main
from bprlab.config import load_config
from bprlab.retriever import Retriever
from bprlab.runs import RunPaths


def test_export_round_trip_with_plain_transformers_and_faiss(bpr_run, tmp_path):
    import faiss
    from transformers import AutoModel, AutoTokenizer

    from bprlab.core.encoder import load_biencoder

    cfg, overrides = bpr_run
    assert main(["export", str(empty_config(tmp_path)), *overrides, "--to", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    model, _ = load_biencoder(RunPaths(cfg).checkpoint())
    tokenizer = AutoTokenizer.from_pretrained(out / "question_encoder")
    plain = AutoModel.from_pretrained(out / "question_encoder").eval()
    batch = tokenizer(questions_of(cfg)[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model.eval().question_tower(**batch)
        theirs = plain(**batch).last_hidden_state[:, 0]
    assert torch.equal(ours, theirs)  # bit for bit on the CPU
    index = faiss.read_index_binary(str(out / "index" / "passages.faissindex"))
    codes = faiss.vector_to_array(index.xb).reshape(index.ntotal, -1)
    assert np.array_equal(codes, np.load(RunPaths(cfg).index / "codes.npy"))
    ids = (out / "index" / "ids.txt").read_text().split()
    assert ids == [str(i) for i in range(1, 9)]
    reloaded = Retriever.from_export(out)
    hits = reloaded.search(questions_of(cfg), k=3)
    assert [[h.row for h in per] for per in hits] == evaluated_rows(cfg, 3).tolist()
    assert hits[0][0].id == ids[hits[0][0].row]
    card = (out / "README.md").read_text()
    assert "packbits" in card and "bpr" in card


def test_export_never_replaces_what_it_did_not_write(bpr_run, tmp_path, capsys, monkeypatch):
    cfg, overrides = bpr_run
    config = empty_config(tmp_path)
    mine = tmp_path / "my-files"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("notes")
    monkeypatch.chdir(tmp_path)
    run_root = RunPaths(cfg).root
    for target, message in ((mine, "is not a bprlab export"), (a_file, "a file is there"),
                            (run_root, "holds"), (run_root.parent, "holds"), (tmp_path, "holds"),
                            (tmp_path / ".", "holds"), (run_root / "..", "holds")):
        code = main(["export", str(config), *overrides, "--to", str(target), "--force"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], (target, err)
    assert (mine / "thesis.tex").read_text() == "years of work" and a_file.read_text() == "notes"
    assert (run_root / "train.json").is_file() and not list(tmp_path.glob(".*.old"))
    out = tmp_path / "exported"
    assert main(["export", str(config), *overrides, "--to", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", str(config), *overrides, "--to", str(out)]) == 2  # an earlier export: only with --force
    assert "add --force" in capsys.readouterr().err
    assert main(["export", str(config), *overrides, "--to", str(out), "--force"]) == 0


@pytest.mark.parametrize("extra", [["method=bpr", "index.kind=binary_flat"],
                                   ["method=dpr", "index.kind=flat", "model.pooling=mean", "model.normalize=true"],
                                   ["method=bpr", "index.kind=binary_flat", "model.projection_dim=16"]],
                         ids=["bpr-cls", "dpr-mean-normalised", "bpr-projection"])
def test_exported_towers_load_in_sentence_transformers_as_the_run(tiny_overrides, tmp_path, extra):
    """SentenceTransformer(DIR/question_encoder) and (DIR/passage_encoder) give the run's own vectors (pooling,
    normalisation, projection; DPR's passage pairs as one segment), and quantize_embeddings(ubinary) gives BPR's
    packed codes bit for bit."""
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.quantization import quantize_embeddings

    from bprlab.core.hashing import pack_codes
    from bprlab.data.readers import iter_passages

    overrides = [*tiny_overrides, "name=st", *extra]
    cfg = load_config(None, overrides)
    stages.run(cfg)
    out = tmp_path / "exported"
    assert main(["export", str(empty_config(tmp_path)), *overrides, "--to", str(out)]) == 0
    retriever = Retriever.from_config(None, overrides)
    questions = questions_of(cfg)
    passages = list(iter_passages(cfg.data.passages_file))
    ours_q = retriever.encode_questions(questions)
    ours_p = retriever.encode_passages(passages)
    theirs_q = st.SentenceTransformer(str(out / "question_encoder"), device="cpu").encode(questions)
    theirs_p = st.SentenceTransformer(str(out / "passage_encoder"), device="cpu").encode(
        [[p.title, p.text] for p in passages])
    # a projection's LayerNorm: sentence-transformers' eps is 1e-5, the run's the encoder's own (export_st)
    tolerance = dict(rtol=1e-3, atol=1e-5) if cfg.model.projection_dim else {}
    assert torch.allclose(torch.from_numpy(theirs_q), torch.from_numpy(ours_q), **tolerance)
    assert torch.allclose(torch.from_numpy(theirs_p), torch.from_numpy(ours_p), **tolerance)
    if cfg.method.value == "bpr":
        codes = np.load(RunPaths(cfg).index / "codes.npy")
        assert np.array_equal(quantize_embeddings(theirs_p, precision="ubinary"), codes)
        assert np.array_equal(pack_codes(ours_p), codes)


def test_an_export_that_sentence_transformers_would_misread_is_not_written(bpr_run, tmp_path, monkeypatch):
    pytest.importorskip("sentence_transformers")
    from bprlab import export_st

    cfg, overrides = bpr_run
    real = export_st.write_sentence_transformers

    def without_modules(folder, *args):  # as if modules.json were lost: sentence-transformers mean-pools
        real(folder, *args)
        (folder / "modules.json").unlink()

    monkeypatch.setattr(export_st, "write_sentence_transformers", without_modules)
    out = tmp_path / "exp"
    assert main(["export", str(empty_config(tmp_path)), *overrides, "--to", str(out)]) == 2
    assert not out.exists()
    monkeypatch.setattr(export_st, "write_sentence_transformers", real)
    assert main(["export", str(empty_config(tmp_path)), *overrides, "--to", str(out)]) == 0
    assert "falls back to mean pooling" in (out / "README.md").read_text()


def test_a_damaged_export_is_one_clear_error(bpr_run, tmp_path):
    from bprlab.errors import StageError

    cfg, overrides = bpr_run
    out = tmp_path / "exp"
    assert main(["export", str(empty_config(tmp_path)), *overrides, "--to", str(out)]) == 0
    questions = questions_of(cfg)[:1]
    damages = [
        (lambda: (out / "index" / "passages.faissindex").write_bytes(b"\0" * 10), "passages.faissindex: damaged"),
        (lambda: (out / "index" / "passages.faissindex").unlink(), "passages.faissindex: missing"),
        (lambda: (out / "index" / "ids.txt").unlink(), "ids.txt: missing"),
        (lambda: (out / "bprlab.json").write_text("{not json"), "bprlab.json: damaged"),
        (lambda: (out / "question_encoder" / "model.safetensors").write_bytes(b"garbage"), "question_encoder: missing "
                                                                                            "or damaged"),
    ]
    for damage, message in damages:
        import shutil

        shutil.rmtree(out)
        assert main(["export", str(empty_config(tmp_path)), *overrides, "--to", str(out)]) == 0
        damage()
        with pytest.raises(StageError, match=message):
            Retriever.from_export(out).search(questions, k=2)
    import shutil

    from bprlab.errors import ConfigError

    shutil.rmtree(out)  # an export whose question tower lost its tokenizer: refused, not read as [UNK]s
    assert main(["export", str(empty_config(tmp_path)), *overrides, "--to", str(out)]) == 0
    for path in (out / "question_encoder").iterdir():
        if path.name.startswith(("tokenizer", "vocab")):
            path.unlink()
    with pytest.raises(ConfigError, match="question_encoder has no tokenizer files"):
        Retriever.from_export(out).search(questions, k=2)
    with pytest.raises(StageError, match="not the corpus this export was made from"):
        other = tmp_path / "other.tsv"
        other.write_text("id\ttext\ttitle\n1\tsomething else\tX\n")
        Retriever.from_export(out, passages=other)

