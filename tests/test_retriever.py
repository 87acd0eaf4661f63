"""The Python API and `bprlab search`: the same passages as the run's own evaluation (`bprlab export`:
tests/test_export.py)."""

from __future__ import annotations

import doctest
import io
import json

import numpy as np
import pytest
from conftest import empty_config, evaluated_rows, questions_of

from bprlab.cli import stages
from bprlab.cli.main import main
from bprlab.config import load_config
from bprlab.retriever import Retriever
from bprlab.runs import RunPaths


def test_retriever_returns_the_runs_own_evaluation(bpr_run):
    cfg, overrides = bpr_run
    retriever = Retriever.from_config(None, overrides)
    hits = retriever.search(questions_of(cfg), k=3)
    assert [[h.row for h in per] for per in hits] == evaluated_rows(cfg, 3).tolist()
    first = hits[0][0]
    assert first.id and first.title and first.text and first.rank == 1
    same = Retriever.from_run(RunPaths(cfg).root).search(questions_of(cfg)[:2], k=3)
    assert [[h.row for h in per] for per in same] == evaluated_rows(cfg, 3)[:2].tolist()
    assert retriever.encode_passages([("Oslo", "Oslo is the capital of Norway.")]).shape == (1, 32)
    # the docstring example runs
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(Retriever.search, "search", globs={"retriever": retriever}):
        result.run(test)
    assert result.failures == 0 and result.tries == 2


def test_search_command_prints_ranked_passages_and_reads_stdin(bpr_run, tmp_path, capsys, monkeypatch):
    cfg, overrides = bpr_run
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    question = questions_of(cfg)[0]
    assert main(["search", str(config), question, *overrides, "--k", "2", "--answers", "Paris"]) == 0
    out = capsys.readouterr().out
    assert question in out and " 1. " in out and " 2. " in out and " 3. " not in out
    monkeypatch.setattr("sys.stdin", io.StringIO(question + "\n\n" + questions_of(cfg)[1] + "\n"))
    assert main(["search", str(config), *overrides, "--k", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [len(line["hits"]) for line in lines] == [3, 3] and lines[0]["question"] == question
    assert [h["row"] for h in lines[0]["hits"]] == evaluated_rows(cfg, 3)[0].tolist()


def test_a_clone_without_shared_data_fetches_squad_once_and_checks_it(tmp_path, monkeypatch):
    import hashlib
    from pathlib import Path

    from bprlab.data import download
    from bprlab.errors import StageError

    official = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad" / "dev-v1.1.json"
    if official.is_file():  # the pinned size and hash are those of the file the demo reads
        payload = official.read_bytes()
        assert len(payload) == download.SQUAD_DEV["bytes"]
        assert hashlib.sha256(payload).hexdigest() == download.SQUAD_DEV["sha256"]
    else:  # a clone without ../shared: the mechanism, on a stand-in file
        payload = b'{"version": "1.1", "data": []}'
    size, sha = len(payload), hashlib.sha256(payload).hexdigest()
    calls = []

    def fake_urlopen(url, timeout):
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(download.urllib.request, "urlopen", fake_urlopen)
    url = download.SQUAD_DEV["url"]
    target = download.fetch_verified(url, tmp_path / "dev-v1.1.json", sha, size)
    assert target.read_bytes() == payload
    download.fetch_verified(url, target, sha, size)
    assert calls == [url]  # once
    with pytest.raises(StageError, match="not using it"):
        download.fetch_verified(url, tmp_path / "other.json", "0" * 64, size)
    assert not (tmp_path / "other.json").exists()

    def offline(url, timeout):
        raise download.urllib.error.URLError("no route to host")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(StageError, match="Offline\\? Copy the file"):
        download.fetch_verified(url, tmp_path / "third.json", sha, size)


@pytest.mark.parametrize("extra", [["method=dpr", "index.kind=flat"], ["method=dpr", "index.kind=pq",
                                   "index.pq_subquantizers=4", "index.pq_bits=2"],
                                   ["checkpoint=pretrained", "index.kind=bm25"]])
def test_retriever_serves_every_index_kind_as_the_evaluation_did(tiny_overrides, extra):
    overrides = [*tiny_overrides, "name=kinds", *extra, "eval.top_k=[1,3]"]
    cfg = load_config(None, overrides)
    stages.run(cfg)
    hits = Retriever.from_config(None, overrides).search(questions_of(cfg), k=3)
    assert [[h.row for h in per] for per in hits] == evaluated_rows(cfg, 3).tolist()


def test_overrides_and_questions_may_follow_an_option():
    from bprlab.cli.parser import build_parser, parse_args

    parser = build_parser()
    args = parse_args(parser, ["export", "exp.yaml", "--to", "out", "index.kind=flat", "method=dpr"])
    assert args.to == "out" and args.overrides == ["index.kind=flat", "method=dpr"]
    args = parse_args(parser, ["search", "exp.yaml", "--k", "2", "Who wrote it?", "name=bpr"])
    assert args.k == 2 and args.items == ["Who wrote it?", "name=bpr"]
    args = parse_args(parser, ["evaluate", "exp.yaml", "--force", "eval.top_k=[1]"])
    assert args.force and args.overrides == ["eval.top_k=[1]"]
    for bad in (["export", "exp.yaml", "--to", "out", "stray"], ["export", "exp.yaml", "--to", "out", "--tto=x"]):
        with pytest.raises(SystemExit) as exit_:
            parse_args(parser, bad)
        assert exit_.value.code == 2


def test_search_and_export_refuse_an_index_from_weights_retrained_since(bpr_run, tmp_path, capsys):
    cfg, overrides = bpr_run
    retrained = [*overrides, "seed=7"]  # another training: new weights in the same run folder, the index left as it was
    stages.train(load_config(None, retrained))
    with pytest.raises(Exception, match="other weights than"):
        Retriever.from_config(None, retrained)
    code = main(["export", str(empty_config(tmp_path)), *retrained, "--to", str(tmp_path / "out")])
    assert code == 2 and "other weights than" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_run_that_fails_at_its_index_stage_keeps_the_last_good_config(bpr_run):
    """config.yaml names weights and an index the run holds: a later `run` whose index cannot be built leaves it."""
    from bprlab.errors import ConfigError

    cfg, overrides = bpr_run
    before = (RunPaths(cfg).root / "config.yaml").read_text()
    bad = load_config(None, [*overrides, "method=bpr", "index.kind=pq", "index.pq_subquantizers=5"])
    with pytest.raises(ConfigError, match="must divide the embedding dimension"):
        stages.run(bad)
    assert (RunPaths(cfg).root / "config.yaml").read_text() == before
    hits = Retriever.from_run(RunPaths(cfg).root).search(questions_of(cfg)[:2], k=3)
    assert [[h.row for h in per] for per in hits] == evaluated_rows(cfg, 3)[:2].tolist()


def test_evaluate_and_the_retriever_encode_questions_alike(bpr_run, tmp_path):
    """One question encoder: evaluate's vectors are Retriever's, for the run's own checkpoint and for the same
    checkpoint named by path under another experiment's lengths; an override a trained run cannot honour is the
    same error in both."""
    from bprlab.errors import ConfigError
    from bprlab.eval.retrieval import encode_questions

    cfg, overrides = bpr_run
    questions = questions_of(cfg)
    checkpoint = RunPaths(cfg).checkpoint()
    evaluated, _, _ = encode_questions(cfg, checkpoint, questions)
    assert np.array_equal(Retriever.from_config(None, overrides).encode_questions(questions), evaluated)
    foreign = [*overrides, "name=other", f"checkpoint={checkpoint}", "data.max_question_length=16"]
    stages.run(load_config(None, foreign))  # encodes and indexes with the checkpoint's own settings
    by_path, _, used = encode_questions(load_config(None, foreign), checkpoint, questions)
    assert used.data.max_question_length == cfg.data.max_question_length and np.array_equal(by_path, evaluated)
    retriever = Retriever.from_config(None, foreign)
    assert np.array_equal(retriever.encode_questions(questions), evaluated)
    rows = [[h.row for h in per] for per in retriever.search(questions, k=3)]
    assert rows == evaluated_rows(cfg, 3).tolist()
    changed = [*overrides, "data.max_question_length=16"]
    with pytest.raises(ConfigError, match="data.max_question_length=16: .* was trained with data.max_question_length"):
        encode_questions(load_config(None, changed), checkpoint, questions)
    with pytest.raises(ConfigError, match="data.max_question_length=16: .* was trained with"):
        Retriever.from_config(None, changed).encode_questions(questions)


def test_search_takes_vectors_refuses_bad_input_and_never_imports_lightning(bpr_run):
    import subprocess
    import sys

    from bprlab.errors import ConfigError  # the API's InputError is one, and a ValueError

    cfg, overrides = bpr_run
    retriever = Retriever.from_config(None, overrides)
    questions = questions_of(cfg)
    vectors = retriever.encode_questions(questions)
    by_vector = [[h.row for h in per] for per in retriever.search(vectors, k=3)]
    assert by_vector == [[h.row for h in per] for per in retriever.search(questions, k=3)]
    assert len(retriever.search(questions[:1], k=10**9)[0]) == 8  # capped at the corpus, not a MemoryError
    for bad, message in ((-1, "k=-1"), (0, "k=0"), (2.5, "k=2.5"), (True, "k=True")):
        with pytest.raises(ConfigError, match=message):
            retriever.search(questions, k=bad)
    for bad, message in ((b"bytes", "decode bytes"), ([questions[0], 3], "item 1 is int"), (None, "NoneType")):
        with pytest.raises(ConfigError, match=message):
            retriever.search(bad, k=2)
    with pytest.raises(ConfigError, match="vectors must be a \\(Q, D\\) float array"):
        retriever.search(np.zeros(5, np.float32), k=2)
    code = ("import sys\nfrom bprlab import Retriever\n"
            f"r = Retriever.from_config(None, {overrides!r})\nr.search({questions[:2]!r}, k=2)\n"
            "print([m for m in sys.modules if m.startswith(('pytorch_lightning', 'lightning'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_search_reads_utf8_from_stdin_and_names_the_line_that_is_not(bpr_run, tmp_path, capsys, monkeypatch):
    cfg, overrides = bpr_run
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("Où est Oslo?\ncaf\xe9\n".encode("latin-1"))))
    code = main(["search", str(empty_config(tmp_path)), *overrides, "--k", "2"])
    captured = capsys.readouterr()
    assert code == 2 and "stdin: line 1 is not UTF-8" in captured.err


KINDS = [["index.kind=flat"], ["index.kind=binary_flat"], ["index.kind=binary_hash", "index.hash_bits=4"],
         ["index.kind=binary_pca", "index.code_bits=8", "index.rotation=itq"], ["index.kind=lsh"],
         ["index.kind=pq", "index.pq_subquantizers=4", "index.pq_bits=2"], ["index.kind=int8"], ["index.kind=rabitq"],
         ["index.kind=hnsw"], ["index.kind=bm25"]]


def test_every_index_kind_refuses_bad_questions_with_one_value_error(tiny_overrides, tiny_data):
    """NaN / inf rows, the wrong width or rank, integers, None items, bytes and impossible k: one ValueError naming
    the input, on every kind, before faiss or a compiled kernel sees it (a NaN once ended the process); an empty
    batch is no questions, not an error."""
    from bprlab.errors import InputError

    with open(tiny_data["passages"], "a") as handle:  # binary_pca fits 8 components on more than 8 passages
        handle.writelines(f"{100 + i}\tFiller passage {i}, about nothing.\tFiller {i}\n" for i in range(8))
    base = [*tiny_overrides, "name=kinds", "method=dpr", "eval.top_k=[1,3]"]
    stages.train(load_config(None, base))
    question = "What is the capital of Norway?"
    for kind in KINDS:
        overrides = [*base, *kind, *(["checkpoint=pretrained"] if "bm25" in kind[0] else [])]
        cfg = load_config(None, overrides)
        stages.encode(cfg)
        stages.index(cfg)
        retriever = Retriever.from_config(None, overrides)
        texts_only = "bm25" in kind[0]
        dim = 32
        good = retriever.search([question], k=2)[0]
        assert 1 <= len(good) <= 2
        bad_vectors = {"nan": np.full((1, dim), np.nan, np.float32), "inf": np.vstack([np.ones((1, dim)), [[np.inf] * dim]]),
                       "width": np.ones((1, dim + 1), np.float32), "rank": np.ones(dim, np.float32),
                       "ints": np.ones((1, dim), np.int64)}
        for name, vectors in bad_vectors.items():
            with pytest.raises(ValueError) as caught:
                retriever.search(vectors, k=2)
            assert isinstance(caught.value, InputError) and "\n" not in str(caught.value), (kind, name)
            expected = "texts, not vectors" if texts_only else {"nan": "not finite", "inf": "1 of 2 are not finite",
                                                               "width": "33 wide", "rank": "float array",
                                                               "ints": "float array"}[name]
            assert expected in str(caught.value), (kind, name, str(caught.value))
        for bad in ([question, None], b"bytes", [b"x"], 7):
            with pytest.raises(InputError, match="questions: "):
                retriever.search(bad, k=2)
        for k in (0, -1, 2.5, "3"):
            with pytest.raises(InputError, match="k="):
                retriever.search([question], k=k)
        assert retriever.search([], k=2) == []
        if not texts_only:
            assert retriever.search(np.zeros((0, dim), np.float32), k=2) == []
        assert len(retriever.search([question], k=10**9)[0]) <= 16  # capped at the corpus
