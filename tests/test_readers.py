import json

import pytest

from bprlab.data.passage_store import PassageStore
from bprlab.data.readers import iter_passages, read_biencoder, read_qa
from bprlab.errors import DataFormatError


def test_reads_dpr_files(tiny_data):
    records = read_biencoder(tiny_data["train"])
    assert records[0].question.startswith("What is the capital of France")
    assert records[0].positives[0].title == "Paris" and records[0].positives[0].id == "1"
    assert len(records[0].hard_negatives) == 2 and len(records[0].negatives) == 1
    qa = read_qa(tiny_data["test"])
    assert qa[0].answers == ["Paris"]
    passages = list(iter_passages(tiny_data["passages"]))
    assert passages[1].id == "2" and passages[1].title == "Berlin"


def test_qa_reader_handles_csv_quoting(tmp_path):
    path = tmp_path / "q.csv"
    # a quoted field (inner quotes doubled) holding a tab, as 1,801 TriviaQA test rows are quoted
    path.write_text('"He said ""hi""\tthere?"\t"[\'a \"\"b\"\"\', \'c\']"\nplain\t["x"]\n')
    records = read_qa(path)
    assert records[0].question == 'He said "hi"\tthere?'
    assert records[0].answers == ['a "b"', "c"]
    assert records[1].answers == ["x"]


def test_qa_reader_reads_json_lines(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text('{"question": "q1", "answer": ["a"]}\n{"question": "q2", "answer": ["b", "c"]}\n')
    assert [r.answers for r in read_qa(path)] == [["a"], ["b", "c"]]


@pytest.mark.parametrize("line, message", [
    ("question\tnot a list literal", "line 2: answers are not a Python list literal"),
    ("question\t'just a string'", "line 2: field 'answers' must be a list of strings, got str"),
    ("question\t[1, 2]", "line 2: field 'answers' must hold strings only"),
    ("question only", "line 2: expected question<TAB>answer-list"),
    ("question\t__import__('os').system('true')", "line 2: answers are not a Python list literal"),
])
def test_qa_reader_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.qa.csv"
    path.write_text(f"fine\t['a']\n{line}\n")
    with pytest.raises(DataFormatError) as err:
        read_qa(path)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("entry, message", [
    ({"answers": ["a"], "positive_ctxs": []}, "entry 1: missing field 'question'"),
    ({"question": "q", "answers": "a", "positive_ctxs": []}, "entry 1: field 'answers' must be a list of strings, got str"),
    ({"question": "q", "answers": ["a"]}, "entry 1: missing field 'positive_ctxs'"),
    ({"question": "q", "answers": ["a"], "positive_ctxs": [{"title": "t"}]}, "entry 1, positive_ctxs[0]: missing field 'text'"),
    ({"question": "q", "answers": ["a"], "positive_ctxs": [], "hard_negative_ctxs": {}},
     "field 'hard_negative_ctxs' must be a list"),
])
def test_biencoder_reader_errors_name_entry(tmp_path, entry, message):
    good = {"question": "q", "answers": ["a"], "positive_ctxs": [{"title": "t", "text": "x"}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([good, entry]))
    with pytest.raises(DataFormatError) as err:
        read_biencoder(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_biencoder_reader_rejects_broken_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"question": "q",')
    with pytest.raises(DataFormatError, match="not valid JSON"):
        read_biencoder(path)


def test_passage_reader_checks_header_and_fields(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("id\ttitle\ttext\n1\tx\ty\n")
    with pytest.raises(DataFormatError, match="line 1: expected the header"):
        list(iter_passages(path))
    path.write_text("id\ttext\ttitle\n1\tsome text\tT\n2\tmissing title\n")
    with pytest.raises(DataFormatError, match="line 3: expected 3 tab-separated fields"):
        list(iter_passages(path))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataFormatError, match="file not found"):
        read_qa(tmp_path / "nope.csv")


def test_the_passage_store_follows_its_file_by_content(tmp_path):
    """An edit that keeps the size and puts the modification time back still rebuilds the store."""
    import os

    from bprlab.data import passage_store
    from bprlab.data.passage_store import PassageStore

    tsv = tmp_path / "psgs.tsv"
    tsv.write_text("id\ttext\ttitle\n1\tOslo is in Norway.\tOslo\n2\tRome is in Italy.\tRome\n")
    assert PassageStore.open(tsv)[0].text == "Oslo is in Norway."
    stat = tsv.stat()
    tsv.write_text("id\ttext\ttitle\n1\tOslo is in Sweden.\tOslo\n2\tRome is in Italy.\tRome\n")  # same size
    os.utime(tsv, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    passage_store._HASHED.clear()  # a new process
    store = PassageStore.open(tsv)
    assert store[0].text == "Oslo is in Sweden." and store.fingerprint() != ""


def test_an_unclosed_quote_in_a_qa_file_is_an_error_not_swallowed_questions(tmp_path):
    path = tmp_path / "test.qa.csv"
    path.write_text("who is a?\t['x']\n\"who is b?\t['y']\nwho is c?\t['z']\nwho is d?\t['w']\n")
    with pytest.raises(DataFormatError, match=r"test.qa.csv: record line 2: a quote opened here is not closed"):
        read_qa(path)


def test_duplicate_passage_ids_and_an_empty_corpus_are_named(tmp_path):
    dup = tmp_path / "dup.tsv"
    dup.write_text("id\ttext\ttitle\n1\ta\tA\n2\tb\tB\n1\tc\tC\n")
    with pytest.raises(DataFormatError, match=r"dup.tsv: record line 4: duplicate passage id '1' \(first at row 1\)"):
        PassageStore.open(dup)
    assert not (tmp_path / "dup.tsv.arrow").exists()
    empty = tmp_path / "empty.tsv"
    empty.write_text("id\ttext\ttitle\n")
    with pytest.raises(DataFormatError, match="empty.tsv: no passages"):
        PassageStore.open(empty)


@pytest.mark.parametrize("name, content, reader", [
    ("psgs.tsv", b"id\ttext\ttitle\n1\tcaf\xe9 au lait\tA\n", "passages"),
    ("test.qa.csv", b"who?\t['a']\nwh\xff?\t['b']\n", "qa"),
    ("train.json", b'[{"question": "caf\xe9", "answers": []}]', "biencoder"),
])
def test_non_utf8_bytes_name_the_file_line_and_byte(tmp_path, name, content, reader):
    from bprlab.data.readers import iter_passages, read_biencoder

    path = tmp_path / name
    path.write_bytes(content)
    read = {"passages": lambda p: list(iter_passages(p)), "qa": read_qa, "biencoder": read_biencoder}[reader]
    with pytest.raises(DataFormatError, match=rf"{name}: record line \d: not UTF-8: byte 0x(e9|ff)"):
        read(path)
