"""The synthetic corpus generator: deterministic, read by the project's own readers, answers where planted."""

from bprlab.bench.corpus import write_corpus
from bprlab.data.answers import has_answer
from bprlab.data.readers import iter_passages, read_biencoder, read_qa


def test_generated_files_are_deterministic_and_readable(tmp_path):
    a = write_corpus(tmp_path / "a", 500, num_questions=20, seed=3, words=30, chunk=64)
    write_corpus(tmp_path / "b", 500, num_questions=20, seed=3, words=30, chunk=500)  # other write chunking
    for name in ("psgs.tsv", "train.json", "test.qa.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    passages = list(iter_passages(a["passages"]))
    questions = read_qa(a["test"])
    records = read_biencoder(a["train"])
    assert len(passages) == 500 and len(questions) == 20 and len(records) == 20
    for question, row in zip(questions, a["planted"]):
        assert has_answer(question.answers, passages[row].text, "string")  # the answer is where it was planted
        assert passages[row].text.startswith(question.question)
    assert all(r.positives[0].text == passages[int(row)].text for r, row in zip(records, a["planted"]))


def test_a_store_built_from_another_tsv_is_rebuilt_not_reused(tmp_path):
    import os

    from bprlab.data.passage_store import PassageStore

    first = write_corpus(tmp_path / "d", 50, num_questions=2, seed=1, words=10)
    store = PassageStore.open(first["passages"])
    before = store[0].text
    stat = os.stat(first["passages"])
    write_corpus(tmp_path / "d", 50, num_questions=2, seed=2, words=10)  # same path and row count, other text
    os.utime(first["passages"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    rebuilt = PassageStore.open(first["passages"])
    assert rebuilt[0].text != before and rebuilt.fingerprint() != store.fingerprint()


def test_texts_and_ids_of_scattered_rows_are_the_rows_asked_for(tmp_path):
    import numpy as np

    from bprlab.data.passage_store import PassageStore

    files = write_corpus(tmp_path / "r", 3000, num_questions=2, seed=4, words=40)
    store = PassageStore.open(files["passages"])
    rows = np.random.default_rng(0).permutation(3000)[:500]
    want = [p.text for p in (store[int(r)] for r in rows)]
    assert store.texts(rows) == want and store.texts([]) == []
    assert store.ids(rows) == [store[int(r)].id for r in rows] and store.ids([]) == []
