"""BEIR / jsonl datasets: readers, qrels metrics (against hand-computed values), evaluation of a run trained
elsewhere, TREC run files, malformed files (one line naming file and line, exit 2)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from bprlab.cli import stages
from bprlab.cli.main import main
from bprlab.config import load_config
from bprlab.data.beir_export import write_beir
from bprlab.data.readers import iter_passages, read_biencoder
from bprlab.data.records import QARecord
from bprlab.eval.relevance import relevance_metrics
from bprlab.runs import RunPaths


@pytest.fixture
def beir_folder(tiny_data, tmp_path) -> Path:
    """The tiny squad-like data as a BEIR folder: every training question, its gold passage as the qrel."""
    out = tmp_path / "beir"
    write_beir(out, iter_passages(tiny_data["passages"]), read_biencoder(tiny_data["train"]))
    return out


def test_relevance_metrics_match_hand_computed_values():
    questions = [QARecord("a", [], id="q1", relevant={"d1": 1, "d2": 2}),
                 QARecord("b", [], id="q2", relevant={"d3": 1}),
                 QARecord("c", [], id="q3", relevant={"d9": 1})]
    entries = [("q1", "d2", 1, 3.0), ("q1", "dx", 2, 2.0), ("q1", "d1", 3, 1.0),  # q1: grade 2 at 1, grade 1 at 3
               ("q2", "dy", 1, 5.0), ("q2", "d3", 2, 4.0),  # q2: its one relevant document at rank 2
               ("q3", "dz", 1, 1.0)]  # q3: nothing relevant retrieved
    metrics = relevance_metrics(questions, entries)
    ndcg_q1 = (2 / math.log2(2) + 1 / math.log2(4)) / (2 / math.log2(2) + 1 / math.log2(3))  # trec_eval: linear gain
    ndcg_q2 = (1 / math.log2(3)) / 1.0
    assert metrics["ndcg@10"] == pytest.approx(100 * (ndcg_q1 + ndcg_q2 + 0) / 3)
    assert metrics["mrr@10"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    assert metrics["recall@10"] == pytest.approx(100 * (1 + 1 + 0) / 3)
    assert metrics["num_judged"] == 3


def test_a_query_whose_search_found_nothing_still_counts_as_zero():
    questions = [QARecord("a", [], id="q1", relevant={"d1": 1}), QARecord("b", [], id="q2", relevant={"d2": 1})]
    metrics = relevance_metrics(questions, [("q1", "d1", 1, 1.0)])  # q2 absent from the run
    assert metrics["recall@10"] == pytest.approx(50.0)


def test_a_compressed_run_file_holds_the_trec_lines_and_the_same_run_gives_the_same_bytes(tmp_path):
    from bprlab.eval.relevance import write_trec_run

    entries = [("q1", "d3", 1, 2.5), ("q1", "d1", 2, 1.25), ("q2", "d2", 1, 0.5)]
    write_trec_run(tmp_path / "a.trec.gz", entries, "bpr l=1000")
    write_trec_run(tmp_path / "b.trec.gz", entries, "bpr l=1000")
    write_trec_run(tmp_path / "plain.trec", entries, "bpr l=1000")
    text = gzip.decompress((tmp_path / "a.trec.gz").read_bytes()).decode()
    assert text == (tmp_path / "plain.trec").read_text()
    assert text.splitlines()[1] == "q1 Q0 d1 2 1.250000 bpr_l_1000"
    assert (tmp_path / "a.trec.gz").read_bytes() == (tmp_path / "b.trec.gz").read_bytes()


def _cli(tmp_path: Path, *args: str) -> int:
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    return main([args[0], str(config), *args[1:]])


def _eval_overrides(tiny_overrides, folder: Path) -> list[str]:
    drop = ("data.dataset=", "data.train_file=", "data.dev_file=", "data.test_file=", "data.passages_file=")
    return [o for o in tiny_overrides if not o.startswith(drop)] + ["data.dataset=beir", f"data.path={folder}"]


def test_trained_run_evaluates_on_a_beir_folder_without_its_training_files(tiny_overrides, beir_folder):
    trained = load_config(None, [*tiny_overrides, "name=dpr", "method=dpr", "index.kind=flat"])
    stages.train(trained)
    cfg = load_config(None, [*_eval_overrides(tiny_overrides, beir_folder), "name=dpr", "method=dpr",
                             "index.kind=flat", "eval.top_k=[1,5]"])
    metrics = stages.evaluate(cfg)  # encodes the folder's corpus and indexes it first
    assert {"ndcg@10", "mrr@10", "recall@10", "recall@100", "recall@1000"} <= set(metrics)
    assert "top1" not in metrics  # BEIR queries carry no answer strings
    assert metrics["num_questions"] == 8 and metrics["dataset"] == "beir"
    assert metrics["recall@10"] == pytest.approx(100.0)  # 8 documents: every gold one is in the top 10
    paths = RunPaths(cfg)
    assert paths.eval.is_relative_to(paths.root / "datasets")  # beside, not over, the run's own evaluation
    lines = gzip.decompress((paths.eval / "run.trec.gz").read_bytes()).decode().splitlines()
    assert len(lines) == 8 * 8 and lines[0].split()[0:2] == ["q1", "Q0"]
    assert {line.split()[2] for line in lines} == {str(i) for i in range(1, 9)}  # the corpus' own document ids
    # a checkpoint named directly gives the same numbers
    path = RunPaths(trained).checkpoint()
    direct = stages.evaluate(load_config(None, [*_eval_overrides(tiny_overrides, beir_folder), "name=other",
                                                "method=dpr", "index.kind=flat", "eval.top_k=[1,5]",
                                                f"checkpoint={path}"]))
    assert direct["ndcg@10"] == pytest.approx(metrics["ndcg@10"])


def test_a_folder_holding_the_runs_own_passages_reuses_their_encoding(tiny_overrides, beir_folder):
    """The BEIR fixture exports the run's own corpus: same rows, another file. Its encoding is the run's own
    (linked, no encoder pass) and searches exactly as a fresh encoding does."""
    from bprlab.index.build import MANIFEST

    trained = load_config(None, [*tiny_overrides, "name=dpr", "method=dpr", "index.kind=flat"])
    stages.run(trained)
    cfg = load_config(None, [*_eval_overrides(tiny_overrides, beir_folder), "name=dpr", "method=dpr",
                             "index.kind=flat", "eval.top_k=[1,5]"])
    metrics = stages.evaluate(cfg)
    encoded = RunPaths(cfg).passages("emb")
    manifest = json.loads((encoded / MANIFEST).read_text())
    assert manifest["reused_from"] == "passages/best-emb" and manifest["stamp"]["corpus"] != json.loads(
        (RunPaths(trained).passages("emb") / MANIFEST).read_text())["stamp"]["corpus"]
    stages.encode(cfg, force=True)  # the encoder over the folder's own file gives the same vectors
    fresh = stages.evaluate(load_config(None, [*_eval_overrides(tiny_overrides, beir_folder), "name=dpr",
                                               "method=dpr", "index.kind=flat", "eval.top_k=[1,5]"]))
    assert fresh["ndcg@10"] == metrics["ndcg@10"] and "reused_from" not in json.loads(
        (encoded / MANIFEST).read_text())


def test_a_folder_is_scored_against_its_own_corpus_whatever_the_experiment_names(tiny_overrides, tiny_data,
                                                                                  beir_folder):
    """An experiment with data.passages_file / test_file (custom data) evaluated on a BEIR folder reads the folder's
    corpus.jsonl and queries, not those files."""
    from bprlab.data.paths import data_paths

    cfg = load_config(None, [*_eval_overrides(tiny_overrides, beir_folder), f"data.passages_file={tiny_data['passages']}",
                             f"data.test_file={tiny_data['test']}"])
    paths = data_paths(cfg.data)
    assert paths.passages == beir_folder / "corpus.jsonl" and paths.test == beir_folder / "queries.jsonl"


def test_bm25_finds_the_gold_passages_of_the_lexical_fixture(tiny_overrides, beir_folder):
    cfg = load_config(None, [*_eval_overrides(tiny_overrides, beir_folder), "name=bm25", "checkpoint=pretrained",
                             "index.kind=bm25", "eval.top_k=[1,5]"])
    metrics = stages.evaluate(cfg)
    assert metrics["mrr@10"] == pytest.approx(100.0)  # "capital of Spain" -> the Madrid passage, and so on
    assert metrics["method"] == "bm25" and metrics["encoder"] is None and metrics["bytes_per_passage"] > 0


def test_bm25_ranks_equal_scores_in_corpus_order_and_retrieves_only_passages_sharing_a_term():
    """The same ranking on every machine: bm25s's own top-k leaves equal scores in whatever order the machine's
    numpy SIMD variant does."""
    from bprlab.config.schema import IndexConfig
    from bprlab.index.bm25 import BM25Index

    index = BM25Index.create(IndexConfig(kind="bm25"))
    index.build(["green pear"] * 5 + ["red apple"] * 60)
    found = index.search(["red", "blue", "red"], k=70)
    assert found.rows[0].tolist() == list(range(5, 65)) + [-1] * 10  # 60 equal scores, then nothing
    assert (found.rows[1] == -1).all() and found.rows[2].tolist() == found.rows[0].tolist()
    assert index.search(["red"], k=50).rows[0].tolist() == list(range(5, 55))  # the first 50 of the 60 tied


def test_untrained_run_on_an_evaluation_only_folder_says_so(tiny_overrides, beir_folder, capsys, tmp_path):
    code = _cli(tmp_path, "evaluate", *_eval_overrides(tiny_overrides, beir_folder), "name=never-trained",
                "method=dpr", "index.kind=flat")
    assert code == 2
    assert "train.json missing" in capsys.readouterr().err


def _write(folder: Path, corpus: list[dict], queries: list[dict], qrels: str) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return folder


CORPUS = [{"_id": "d1", "title": "Oslo", "text": "Oslo is the capital of Norway."},
          {"_id": "d2", "title": "Rome", "text": "Rome is the capital of Italy."}]
QUERIES = [{"_id": "q1", "text": "capital of Norway"}, {"_id": "q2", "text": "capital of Italy"}]


@pytest.mark.parametrize("corpus, queries, qrels, where, message", [
    ([{"title": "x", "text": "y"}, *CORPUS], QUERIES, "q1\td1\t1\n", "corpus.jsonl: record line 1", "missing '_id"),
    ([*CORPUS, CORPUS[0]], QUERIES, "q1\td1\t1\n", "corpus.jsonl: record line 3", "duplicate document id 'd1'"),
    (CORPUS, [*QUERIES, QUERIES[0]], "q1\td1\t1\n", "queries.jsonl: record line 3", "duplicate query id 'q1'"),
    (CORPUS, QUERIES, "q1\td7\t1\n", "test.tsv", "no relevance judgements of documents in corpus.jsonl (1 lines"),
    (CORPUS, QUERIES, "q1\td1\t1\nq1\td1\t1\n", "test.tsv: record line 3", "judged twice"),
    (CORPUS, QUERIES, "q1\td1\t-1\n", "test.tsv: record line 2", "grade -1 is negative"),
    (CORPUS, QUERIES, "q1\td1\t1\nq9\td2\t1\n", "test.tsv: record line 3", "query id 'q9' is not in queries.jsonl"),
    (CORPUS, QUERIES, "q1\td1\thigh\n", "test.tsv: record line 2", "score 'high' is not an integer"),
])
def test_malformed_beir_files_exit_2_naming_file_and_line(tiny_overrides, tmp_path, capsys, corpus, queries, qrels,
                                                          where, message):
    folder = _write(tmp_path / "bad", corpus, queries, qrels)
    code = _cli(tmp_path, "evaluate", *_eval_overrides(tiny_overrides, folder), "name=bm25", "checkpoint=pretrained",
                "index.kind=bm25")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and where in err[0] and message in err[0], err
    assert "Traceback" not in "".join(err)


def test_qrels_in_latin_1_name_their_file_and_line(tiny_overrides, tmp_path, capsys):
    folder = _write(tmp_path / "latin", CORPUS, QUERIES, "q1\td1\t1\n")
    with open(folder / "qrels" / "test.tsv", "ab") as handle:
        handle.write("q2\td2\t1 \xe9t\xe9\n".encode("latin-1"))
    code = _cli(tmp_path, "evaluate", *_eval_overrides(tiny_overrides, folder), "name=bm25", "checkpoint=pretrained",
                "index.kind=bm25")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "test.tsv: record line 3: not UTF-8: byte 0xe9" in err[0], err


def test_qrels_naming_documents_outside_the_corpus_are_left_out_with_a_warning(tiny_overrides, tmp_path, caplog):
    folder = _write(tmp_path / "absent", CORPUS, QUERIES, "q1\td1\t1\nq1\td7\t1\nq2\td9\t2\n")
    metrics = stages.evaluate(load_config(None, [*_eval_overrides(tiny_overrides, folder), "name=bm25",
                                                 "checkpoint=pretrained", "index.kind=bm25", "eval.top_k=[1]"]))
    assert metrics["num_judged"] == 1  # q2 named only an absent document: nothing left to judge it by
    assert any("2 qrels line(s) name documents absent from corpus.jsonl (first: line 3)" in r.message
               for r in caplog.records)


def test_a_querys_own_id_is_not_among_its_results_unless_asked(tiny_overrides, tmp_path):
    """As BEIR's evaluation (ignore_identical_ids): ArguAna's and Quora's queries are documents of the corpus."""
    corpus = [*CORPUS, {"_id": "q1", "title": "Norway", "text": "capital of Norway"}]
    folder = _write(tmp_path / "own", corpus, QUERIES, "q1\td1\t1\nq2\td2\t1\n")
    common = [*_eval_overrides(tiny_overrides, folder), "checkpoint=pretrained", "index.kind=bm25", "eval.top_k=[1]"]
    ignored = stages.evaluate(load_config(None, [*common, "name=a"]))
    kept = stages.evaluate(load_config(None, [*common, "name=b", "data.ignore_identical_ids=false"]))
    assert ignored["ignore_identical_ids"] == {"enabled": True, "results_removed": 1}
    assert kept["ignore_identical_ids"] == {"enabled": False, "results_removed": 0}
    assert ignored["mrr@10"] == pytest.approx(100.0) and kept["mrr@10"] == pytest.approx(75.0)  # q1 itself ranks 1st
    run = gzip.decompress((RunPaths(load_config(None, [*common, "name=a"])).eval / "run.trec.gz").read_bytes()).decode()
    run = run.split("\n")
    assert not any(line.startswith("q1 Q0 q1 ") for line in run)


def test_jsonl_kind_scores_answers_and_relevance_and_rejects_a_query_without_either(tiny_overrides, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"id": d["_id"], "title": d["title"], "text": d["text"]})
                                                 + "\n" for d in CORPUS))
    (folder / "queries.jsonl").write_text(
        json.dumps({"question": "capital of Norway", "answers": ["Oslo"], "relevant": ["d1"]}) + "\n"
        + json.dumps({"question": "capital of Italy", "answers": ["Rome"]}) + "\n")
    base = [o for o in _eval_overrides(tiny_overrides, folder) if o != "data.dataset=beir"]
    metrics = stages.evaluate(load_config(None, [*base, "data.dataset=jsonl", "name=bm25", "checkpoint=pretrained",
                                                 "index.kind=bm25", "eval.top_k=[1,2]"]))
    assert metrics["top1"] == pytest.approx(100.0) and metrics["num_judged"] == 1 and metrics["ndcg@10"] == 100.0
    with open(folder / "queries.jsonl", "a") as f:
        f.write(json.dumps({"question": "capital of nowhere"}) + "\n")
    code = _cli(tmp_path, "evaluate", *base, "data.dataset=jsonl", "name=bm25", "checkpoint=pretrained",
                "index.kind=bm25")
    err = capsys.readouterr().err
    assert code == 2 and "queries.jsonl: record line 3" in err and "needs 'answers' or 'relevant'" in err


def test_a_mixed_jsonl_folder_divides_each_metric_by_the_queries_it_applies_to(tiny_overrides, tmp_path):
    """Half the queries carry answers, half relevance judgements: top-k is over the answered half, nDCG over the
    judged half, and metrics.json says how many each counted."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"id": d["_id"], "title": d["title"], "text": d["text"]})
                                                 + "\n" for d in CORPUS))
    (folder / "queries.jsonl").write_text(
        json.dumps({"question": "capital of Norway", "answers": ["Oslo"]}) + "\n"
        + json.dumps({"question": "capital of Italy", "relevant": ["d2"]}) + "\n")
    base = [o for o in _eval_overrides(tiny_overrides, folder) if o != "data.dataset=beir"]
    metrics = stages.evaluate(load_config(None, [*base, "data.dataset=jsonl", "name=bm25", "checkpoint=pretrained",
                                                 "index.kind=bm25", "eval.top_k=[1,2]"]))
    assert metrics["top1"] == pytest.approx(100.0) and metrics["num_answered"] == 1  # not 50: q2 has no answers
    assert metrics["ndcg@10"] == pytest.approx(100.0) and metrics["num_judged"] == 1
