"""Shared fixtures: a tiny BERT built in-process (offline, seconds), a tiny DPR-format dataset on disk, and a tiny
BPR run trained and evaluated on them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one of `make test`'s worker processes, one per core: torch's and BLAS's thread pools stay at one thread each
    # (set before torch loads, and inherited by the ranks a test starts), so the workers do not oversubscribe the
    # cores; a test of thread counts sets its own
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parents[1]
SYSFS_CPUS = Path("/sys/devices/system/cpu")


def physical_cores(cpus: set[int], sysfs: Path | None = None) -> int:
    """The physical cores among these logical CPUs: a core is the set of CPUs that share it (Linux's topology files,
    core_cpus_list, or thread_siblings_list before Linux 5.3); the number of CPUs where the files are not there."""
    cores = set()
    for cpu in cpus:
        topology = (sysfs or SYSFS_CPUS) / f"cpu{cpu}" / "topology"
        for name in ("core_cpus_list", "thread_siblings_list"):
            if (topology / name).is_file():
                cores.add((topology / name).read_text().strip())
                break
        else:
            return len(cpus)
    return max(1, len(cores))


def pytest_xdist_auto_num_workers(config) -> int | None:
    """`-n auto` (make test): one worker per physical core this process may run on (`-n logical`: per CPU). xdist's
    own count is every core of the machine, so a SLURM job or a container given 2 of a node's 64 cores would start
    64 workers (then `--maxprocesses`' cap) on 2. PYTEST_XDIST_AUTO_NUM_WORKERS still decides where it is set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS") or not hasattr(os, "sched_getaffinity"):
        return None  # xdist's own answer
    cpus = os.sched_getaffinity(0)
    if getattr(config.option, "numprocesses", None) == "logical":
        return len(cpus)
    return physical_cores(cpus)


TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _tiny_bert(tmp_path_factory, name: str, dropout: float) -> str:
    import torch
    from transformers import BertConfig, BertModel

    from bprlab.core.encoder import resolve_model_name

    out = tmp_path_factory.mktemp(name)
    source = Path(resolve_model_name("minilm"))
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy(source / name, out / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    BertModel(config, add_pooling_layer=False).save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A 2-layer, 32-wide BERT with the packaged MiniLM's uncased WordPiece tokenizer, saved to a directory."""
    return _tiny_bert(tmp_path_factory, "tiny-bert", dropout=0.1)


@pytest.fixture(scope="session")
def tiny_bert_no_dropout(tmp_path_factory) -> str:
    """The same tiny BERT without dropout: two ways of computing one update can then be compared exactly."""
    return _tiny_bert(tmp_path_factory, "tiny-bert-no-dropout", dropout=0.0)


PASSAGES = [
    ("Paris", "Paris is the capital and most populous city of France."),
    ("Berlin", "Berlin is the capital and largest city of Germany."),
    ("Rome", "Rome is the capital city of Italy and a special comune."),
    ("Madrid", "Madrid is the capital and most populous city of Spain."),
    ("Lisbon", "Lisbon is the capital and largest city of Portugal."),
    ("Vienna", "Vienna is the capital and largest city of Austria."),
    ("Athens", "Athens is the capital and largest city of Greece."),
    ("Oslo", "Oslo is the capital and most populous city of Norway."),
]
QUESTIONS = [(f"What is the capital of {text.split(' of ')[-1].rstrip('.')}?", [title]) for title, text in PASSAGES]


def _ctx(i: int) -> dict:
    title, text = PASSAGES[i]
    return {"title": title, "text": text, "passage_id": str(i + 1)}


@pytest.fixture
def tiny_data(tmp_path) -> dict[str, Path]:
    """DPR-format files: passages TSV, biencoder train/dev JSON, test qa TSV (answers as list literals)."""
    root = tmp_path / "data"
    root.mkdir()
    with open(root / "psgs.tsv", "w") as f:
        f.write("id\ttext\ttitle\n")
        for i, (title, text) in enumerate(PASSAGES):
            f.write(f"{i + 1}\t{text}\t{title}\n")
    n = len(PASSAGES)
    entries = [
        {"question": q, "answers": a, "positive_ctxs": [_ctx(i)],
         "hard_negative_ctxs": [_ctx((i + 1) % n), _ctx((i + 2) % n)], "negative_ctxs": [_ctx((i + 3) % n)]}
        for i, (q, a) in enumerate(QUESTIONS)
    ]
    (root / "train.json").write_text(json.dumps(entries))
    (root / "dev.json").write_text(json.dumps(entries[:4]))
    with open(root / "test.qa.csv", "w") as f:
        for q, a in QUESTIONS:
            f.write(f"{q}\t{a!r}\n")
    return {"root": root, "passages": root / "psgs.tsv", "train": root / "train.json", "dev": root / "dev.json",
            "test": root / "test.qa.csv"}


@pytest.fixture
def tiny_overrides(tiny_bert, tiny_data, tmp_path) -> list[str]:
    """Config overrides that run the whole pipeline on the tiny model and data in seconds."""
    return [
        f"model.name={tiny_bert}", "data.dataset=custom",
        f"data.train_file={tiny_data['train']}", f"data.dev_file={tiny_data['dev']}",
        f"data.test_file={tiny_data['test']}", f"data.passages_file={tiny_data['passages']}",
        "data.val_hard_negatives=2", "data.val_other_negatives=1", "data.max_question_length=32",
        "data.max_passage_length=48", "train.batch_size=4", "train.accelerator=cpu", "train.devices=1",
        "train.epochs=2", "train.select_from_epoch=0", "train.log_every_n_steps=1",
        "train.checkpoint_every_n_steps=1", "encode.batch_size=4",
        "eval.top_k=[1,2,5]", "logger=none", f"runs_root={tmp_path / 'runs'}",
    ]


# --- a trained and evaluated BPR run, and what the retriever and export tests compare with it ---------------------


@pytest.fixture
def bpr_run(tiny_overrides):
    """(config, overrides) of a tiny BPR run through every stage, its evaluation included."""
    from bprlab.cli import stages
    from bprlab.config import load_config

    overrides = [*tiny_overrides, "name=bpr", "method=bpr", "index.kind=binary_flat", "eval.top_k=[1,3]"]
    cfg = load_config(None, overrides)
    stages.run(cfg)
    return cfg, overrides


def evaluated_rows(cfg, k):
    """The passage rows the run's own evaluation ranked first, k per test question."""
    import numpy as np

    from bprlab.runs import RunPaths

    with np.load(RunPaths(cfg).eval / "retrieval.npz") as saved:
        return saved["rows"][:, :k]


def questions_of(cfg):
    """The run's test questions, as text."""
    from bprlab.data.readers import read_qa

    return [q.question for q in read_qa(cfg.data.test_file)]


def empty_config(tmp_path):
    """An experiment file that sets nothing: the overrides say everything."""
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    return path
