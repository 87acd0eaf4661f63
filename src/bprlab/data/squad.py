"""The embedded default task: open-domain retrieval built from SQuAD v1.1 the way DPR built its data
(docs/method.md#the-squad-task).

- corpus: every paragraph of every article, cut into passages of at most 100 words, titled with the article;
- questions split by article into train / dev / test, so no test question's passage is a training positive;
- positive: the passage that holds the answer span (SQuAD gives its character offset); a span cut by a passage
  boundary has no single positive and its question is left out of train/dev (counted in the manifest);
- hard negatives: the top BM25 passages (bm25s, Lucene-style scoring) that contain no answer;
- other negatives: random answer-free passages (DPR's `negative_ctxs`);
- test: the test articles' questions with all their answer strings, in DPR's qa format, evaluated over the
  whole corpus with has_answer.
Outputs are DPR-format files, so the rest of the pipeline treats `squad` exactly like NQ or TriviaQA.
"""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from bprlab.artifacts import atomic_dir, file_sha256, fingerprint, read_sound_json, write_json
from bprlab.config.schema import SquadConfig
from bprlab.core.scoring import bm25_top
from bprlab.data.answers import has_answer
from bprlab.data.clusters import PARAGRAPH, write_clusters
from bprlab.data.readers import write_biencoder, write_passages, write_qa
from bprlab.data.records import BiencoderRecord, Passage, QARecord
from bprlab.errors import DataFormatError

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
FORMAT = 3  # the prepared folder: 2 added squad-test.clusters.txt (each test question's paragraph); 3 ranks BM25 ties
#   in corpus order (_bm25_negatives), so a folder prepared before is rebuilt
_WORD = re.compile(r"\S+")


@dataclass
class Chunk:
    passage: Passage
    start: int  # character span of the chunk inside its paragraph
    end: int


@dataclass
class Question:
    question: str
    answers: list[str]
    positive: Passage | None
    paragraph: str = ""  # <article index>/<paragraph index>: the cluster its question was written in


def prepare_squad(cfg: SquadConfig, out_dir: str | Path, force: bool = False) -> dict:
    """Write passages, biencoder train/dev and test qa files under `out_dir`; skip when already current."""
    out_dir, source = Path(out_dir), _find_source(cfg.source)
    if not source.is_file() and cfg.source == SquadConfig.source:  # a clone without ../shared: the official file
        from bprlab.data.download import SQUAD_DEV, fetch_verified

        source = fetch_verified(SQUAD_DEV["url"], out_dir.parent / "downloads" / "dev-v1.1.json",
                                SQUAD_DEV["sha256"], SQUAD_DEV["bytes"])
    if not source.is_file():
        raise DataFormatError(source, None, "SQuAD v1.1 JSON not found (set data.squad.source)")
    stamp = fingerprint(asdict(cfg), file_sha256(source), FORMAT)
    manifest = _manifest(out_dir / MANIFEST)
    if not force and isinstance(manifest, dict) and manifest.get("fingerprint") == stamp:
        log.info("%s is current (fingerprint %s)", out_dir, stamp)
        return manifest

    articles = _load_articles(source)
    splits = _split_articles([a["title"] for a in articles], cfg)
    chunks_by_paragraph, passages = _chunk_corpus(articles, cfg.words_per_passage)
    questions, dropped = _questions(articles, chunks_by_paragraph, splits)
    train_dev = questions["train"] + questions["dev"]
    hard = _bm25_negatives(train_dev, passages, cfg)
    rng = random.Random(cfg.seed)
    records = {
        split: [
            BiencoderRecord(q.question, q.answers, [q.positive], hard[id(q)], _random_negatives(q, passages, cfg, rng))
            for q in questions[split]
        ]
        for split in ("train", "dev")
    }
    with atomic_dir(out_dir) as tmp:
        write_passages(tmp / "psgs_w100.tsv", passages)
        write_biencoder(tmp / "biencoder-squad-train.json", records["train"])
        write_biencoder(tmp / "biencoder-squad-dev.json", records["dev"])
        write_qa(tmp / "squad-test.qa.csv", (QARecord(q.question, q.answers) for q in questions["test"]))
        write_clusters(tmp / "squad-test.qa.csv", [q.paragraph for q in questions["test"]], PARAGRAPH)
        manifest = {
            "fingerprint": stamp,
            "source": str(source),
            "source_sha256": file_sha256(source),
            "config": asdict(cfg),
            "articles": {split: titles for split, titles in splits.items()},
            "counts": {
                "passages": len(passages),
                **{f"{split}_questions": len(questions[split]) for split in questions},
                "dropped_span_across_passages": dropped,
            },
        }
        write_json(tmp / MANIFEST, manifest)
    return manifest


def _manifest(path: Path) -> dict | None:
    """The prepared folder's manifest; None where it is missing or damaged (the folder is then prepared again)."""
    return read_sound_json(path, log, "preparing the squad files again")


def _find_source(source: str) -> Path:
    """A relative path is tried from the working directory, then from the repository root (so the default
    `../shared/data/...` works from any folder of a checkout that sits beside `shared/`)."""
    path = Path(source)
    repo_root = Path(__file__).resolve().parents[3]
    if path.is_absolute() or path.is_file() or not (repo_root / path).is_file():
        return path
    return repo_root / path


def _load_articles(source: Path) -> list[dict]:
    try:
        data = json.loads(source.read_text(encoding="utf-8"))["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataFormatError(source, None, f"not a SQuAD v1.1 file ({exc})") from None
    for i, article in enumerate(data):
        if not isinstance(article, dict) or not isinstance(article.get("title"), str) or not isinstance(
            article.get("paragraphs"), list
        ):
            raise DataFormatError(source, f"article {i}", "expected {title: str, paragraphs: list}")
        for j, paragraph in enumerate(article["paragraphs"]):
            if not isinstance(paragraph.get("context"), str) or not isinstance(paragraph.get("qas"), list):
                raise DataFormatError(source, f"article {i}, paragraph {j}", "expected {context: str, qas: list}")
    return data


def _split_articles(titles: list[str], cfg: SquadConfig) -> dict[str, list[str]]:
    if cfg.dev_articles + cfg.test_articles >= len(titles):
        raise DataFormatError(cfg.source, None, f"only {len(titles)} articles: too few for the dev and test splits")
    order = sorted(titles)
    random.Random(cfg.seed).shuffle(order)
    test, dev = order[: cfg.test_articles], order[cfg.test_articles : cfg.test_articles + cfg.dev_articles]
    return {"train": sorted(set(order) - set(test) - set(dev)), "dev": sorted(dev), "test": sorted(test)}


def _chunk_corpus(articles: list[dict], words_per_passage: int) -> tuple[dict, list[Passage]]:
    """Cut each paragraph into runs of at most `words_per_passage` whitespace-separated words."""
    chunks_by_paragraph: dict[tuple[int, int], list[Chunk]] = {}
    passages: list[Passage] = []
    for a, article in enumerate(articles):
        title = article["title"].replace("_", " ")
        for p, paragraph in enumerate(article["paragraphs"]):
            spans = [m.span() for m in _WORD.finditer(paragraph["context"])]
            chunks = []
            for first in range(0, len(spans), words_per_passage):
                run = spans[first : first + words_per_passage]
                text = " ".join(paragraph["context"][s:e] for s, e in run)
                passage = Passage(title=title, text=text, id=str(len(passages) + 1))
                passages.append(passage)
                chunks.append(Chunk(passage, run[0][0], run[-1][1]))
            chunks_by_paragraph[(a, p)] = chunks
    return chunks_by_paragraph, passages


def _questions(articles, chunks_by_paragraph, splits) -> tuple[dict[str, list[Question]], int]:
    split_of = {title: split for split, titles in splits.items() for title in titles}
    out: dict[str, list[Question]] = {"train": [], "dev": [], "test": []}
    dropped = 0
    for a, article in enumerate(articles):
        split = split_of[article["title"]]
        for p, paragraph in enumerate(article["paragraphs"]):
            for qa in paragraph["qas"]:
                answers = list(dict.fromkeys(ans["text"] for ans in qa["answers"]))
                positive = None
                if split != "test":
                    first = qa["answers"][0]
                    start, end = first["answer_start"], first["answer_start"] + len(first["text"])
                    positive = next(
                        (c.passage for c in chunks_by_paragraph[(a, p)] if c.start <= start and end <= c.end), None
                    )
                    if positive is None or not has_answer(answers, positive.text):
                        dropped += 1
                        continue
                out[split].append(Question(qa["question"], answers, positive, f"{a}/{p}"))
    return out, dropped


def _bm25_negatives(questions: list[Question], passages: list[Passage], cfg: SquadConfig) -> dict[int, list[Passage]]:
    """Top BM25 passages without an answer, best first (DPR's hard negatives); equal scores in corpus order
    (core.scoring.bm25_top), so the prepared files are the same on every machine. bm25s's own top-k orders
    equal scores as the machine's numpy SIMD variant leaves them: a third of the training questions had their
    hard negatives in another order from one machine to the next."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([f"{p.title} {p.text}" for p in passages], stopwords="en", show_progress=False),
                    show_progress=False)
    queries = bm25s.tokenize([q.question for q in questions], stopwords="en", return_ids=False, show_progress=False)
    depth = min(cfg.bm25_depth, len(passages))
    negatives = {}
    for q, terms in zip(tqdm(questions, desc="BM25 hard negatives", unit="q"), queries):
        rows, _ = bm25_top(retriever, terms, depth, len(passages))
        found = (passages[r] for r in rows if not has_answer(q.answers, passages[r].text))
        negatives[id(q)] = [p for _, p in zip(range(cfg.hard_negatives), found)]
    return negatives


def _random_negatives(q: Question, passages: list[Passage], cfg: SquadConfig, rng: random.Random) -> list[Passage]:
    picked: list[Passage] = []
    for _ in range(cfg.other_negatives * 4):  # bounded retries: answer-bearing draws are skipped
        if len(picked) == cfg.other_negatives:
            break
        candidate = rng.choice(passages)
        if not has_answer(q.answers, candidate.text) and candidate not in picked:
            picked.append(candidate)
    return picked
