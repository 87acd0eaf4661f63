import json

import pytest

from bprlab.config.schema import SquadConfig
from bprlab.data.answers import has_answer
from bprlab.data.readers import iter_passages, read_biencoder, read_qa
from bprlab.data.squad import prepare_squad

WORDS = " ".join(f"w{i}" for i in range(150))  # one paragraph -> passages of 100 and 50 words


def _squad(path, n_articles=6):
    data = []
    for a in range(n_articles):
        context = f"Article {a} says the answer{a} is here. " + WORDS + f" Late fact{a} appears at the end."
        qas = [
            {"id": f"{a}-1", "question": f"What is answer{a}?",
             "answers": [{"text": f"answer{a}", "answer_start": context.index(f"answer{a}")}]},
            {"id": f"{a}-2", "question": f"Which late fact{a}?",
             "answers": [{"text": f"fact{a}", "answer_start": context.index(f"fact{a}")}]},
        ]
        data.append({"title": f"Topic_{a}", "paragraphs": [{"context": context, "qas": qas}]})
    path.write_text(json.dumps({"version": "1.1", "data": data}))
    return path


@pytest.fixture
def squad_cfg(tmp_path):
    return SquadConfig(source=str(_squad(tmp_path / "dev.json")), dev_articles=1, test_articles=2,
                       hard_negatives=3, other_negatives=2)


def test_builds_dpr_format_task_split_by_article(tmp_path, squad_cfg):
    manifest = prepare_squad(squad_cfg, tmp_path / "squad")
    passages = list(iter_passages(tmp_path / "squad" / "psgs_w100.tsv"))
    assert len(passages) == 12 and max(len(p.text.split()) for p in passages) == 100
    assert passages[0].title == "Topic 0"  # underscores become spaces, as in DPR's titles
    train = read_biencoder(tmp_path / "squad" / "biencoder-squad-train.json")
    dev = read_biencoder(tmp_path / "squad" / "biencoder-squad-dev.json")
    test = read_qa(tmp_path / "squad" / "squad-test.qa.csv")
    assert (len(train), len(dev), len(test)) == (6, 2, 4)
    split_titles = manifest["articles"]
    assert not set(split_titles["test"]) & (set(split_titles["train"]) | set(split_titles["dev"]))
    test_topics = {t.replace("_", " ") for t in split_titles["test"]}
    for record in train + dev:
        assert has_answer(record.answers, record.positives[0].text)
        assert record.positives[0].title not in test_topics  # no test passage is a training positive
        assert all(not has_answer(record.answers, p.text) for p in record.hard_negatives + record.negatives)
        assert record.hard_negatives


def test_test_questions_carry_their_paragraph_as_cluster(tmp_path, squad_cfg):
    from bprlab.data.clusters import PARAGRAPH, question_clusters

    prepare_squad(squad_cfg, tmp_path / "squad")
    qa_file = tmp_path / "squad" / "squad-test.qa.csv"
    labels, unit = question_clusters(read_qa(qa_file), qa_file)
    # 2 test articles of one paragraph, 2 questions each: two clusters of two, in file order
    assert unit == PARAGRAPH and len(labels) == 4 and labels[0] == labels[1] != labels[2] == labels[3]


def test_queries_cluster_where_they_share_a_judged_document():
    from bprlab.data.clusters import SHARED_DOCUMENT, question_clusters
    from bprlab.data.records import QARecord

    queries = [QARecord("a", [], "q1", {"d1": 1}), QARecord("b", [], "q2", {"d2": 1, "d1": 1}),
               QARecord("c", [], "q3", {"d3": 1}), QARecord("d", [], "q4", {"d2": 2}),
               QARecord("e", [], "q5", {"d1": 0, "d5": 1})]  # grade 0 does not join
    labels, unit = question_clusters(queries, None)
    assert unit == SHARED_DOCUMENT
    assert labels[0] == labels[1] == labels[3] and len({labels[0], labels[2], labels[4]}) == 3
    assert question_clusters([QARecord("x", ["y"])], None) is None  # no judgements, no file: each its own


def test_is_deterministic_and_skips_when_current(tmp_path, squad_cfg):
    prepare_squad(squad_cfg, tmp_path / "a")
    prepare_squad(squad_cfg, tmp_path / "b")
    for name in ("psgs_w100.tsv", "biencoder-squad-train.json", "squad-test.qa.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    stamp = (tmp_path / "a" / "psgs_w100.tsv").stat().st_mtime_ns
    prepare_squad(squad_cfg, tmp_path / "a")
    assert (tmp_path / "a" / "psgs_w100.tsv").stat().st_mtime_ns == stamp


def test_malformed_source_fails_without_output(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"qas": []}]}]}))
    from bprlab.errors import DataFormatError

    with pytest.raises(DataFormatError, match="article 0, paragraph 0"):
        prepare_squad(SquadConfig(source=str(bad)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hard_negatives_of_equal_bm25_score_keep_corpus_order():
    """The ranking is the same on every machine: equal scores in corpus order, not in whatever order numpy's
    SIMD partition / sort variant leaves them (which made the prepared files differ between machines)."""
    from bprlab.data.records import Passage
    from bprlab.data.squad import Question, _bm25_negatives

    passages = [Passage("Topic", "alpha beta gamma", str(i)) for i in range(300)]
    for i in (250, 260):  # a higher score (the query term twice, same length) wherever it sits in the corpus
        passages[i] = Passage("Topic", "alpha alpha gamma", str(i))
    passages[5] = Passage("Topic", "alpha zeta gamma", "5")  # holds the answer: never a negative
    question = Question("What is alpha?", ["zeta"], None)
    cfg = SquadConfig(source="unused", bm25_depth=100, hard_negatives=30)
    got = [p.id for p in _bm25_negatives([question], passages, cfg)[id(question)]]
    assert got == ["250", "260"] + [str(i) for i in range(31) if i != 5][:28]
