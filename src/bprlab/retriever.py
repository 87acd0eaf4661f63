"""The Python API over the stages: ask a trained run (or an exported one) questions and read its passages.

    >>> from bprlab import Retriever
    >>> retriever = Retriever.from_run("runs/squad-bpr")             # or .from_config(yaml, overrides), .from_export(dir)
    >>> hits = retriever.search(["Who wrote Hamlet?"], k=3)[0]
    >>> [(hit.title, round(hit.score, 1)) for hit in hits]            # doctest: +SKIP

A retriever is three parts, each loaded on first use: the question encoder (`bprlab.core.question_encoder`,
the same object `bprlab evaluate` encodes with, so a run's questions get the same vectors here), the index
(memory-mapped codes or the faiss file) and the passage store (a memory-mapped Arrow table): nothing the size of
the corpus becomes Python objects. `search` takes question texts or your own (Q, D) question vectors. Every
index kind the run built works (DPR, BPR, post-hoc, BM25); CPU by default, `device="cuda"` to encode on a GPU.
Nothing here imports Lightning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bprlab.artifacts import EXPORT_META
from bprlab.config import load_config
from bprlab.config.schema import RunConfig
from bprlab.data.records import Passage
from bprlab.errors import InputError, StageError


@dataclass
class Hit:
    rank: int
    row: int  # passage-store row (index row)
    id: str | None  # the corpus' own passage / document id
    title: str | None
    text: str | None
    score: float


class Retriever:
    def __init__(self, cfg: RunConfig, encoder: Callable, index: Callable, passages: Path | None,
                 ids: Callable | None = None, passage_tower: Callable | None = None):
        """`encoder`, `index`, `passage_tower` and `ids` are made on first use (they load weights and files)."""
        self.cfg, self.passages_path = cfg, passages
        self._make = {"encoder": encoder, "index": index, "passage_tower": passage_tower, "ids": ids}
        self._made: dict = {}
        self._store = None

    def _part(self, name: str):
        if name not in self._made:
            self._made[name] = self._make[name]()
        return self._made[name]

    # ------------------------------------------------------------------------------------------ constructors

    @classmethod
    def from_config(cls, experiment: str | Path | None, overrides: Sequence[str] = (), device: str = "cpu") -> "Retriever":
        """The run an experiment YAML (plus overrides) names, with the index its config selects."""
        from bprlab.config.loader import from_dict
        from bprlab.core.encoder import load_biencoder
        from bprlab.core.question_encoder import QuestionEncoder
        from bprlab.data.paths import data_paths
        from bprlab.index.base import load_index
        from bprlab.runs import RunPaths
        from bprlab.stamps import check_index_weights

        cfg = load_config(experiment, list(overrides))
        paths = RunPaths(cfg)
        checkpoint = paths.checkpoint()
        check_index_weights(paths.index, checkpoint, cfg)  # a run retrained since its index was built

        def passage_tower():
            if checkpoint is None:
                from bprlab.core.encoder import BiEncoder

                return BiEncoder.from_model_config(cfg.model).passage_tower, cfg
            model, saved = load_biencoder(checkpoint)
            return model.passage_tower, from_dict(saved, source=f"{checkpoint}: saved config")

        return cls(cfg, lambda: QuestionEncoder.for_run(cfg, checkpoint, device),
                   lambda: load_index(cfg.index, paths.index)[0], data_paths(cfg.data).passages,
                   passage_tower=passage_tower)

    @classmethod
    def from_run(cls, run_dir: str | Path, overrides: Sequence[str] = (), device: str = "cpu") -> "Retriever":
        """A run folder (runs/<name>), configured as its config.yaml records; overrides pick another index."""
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise StageError(f"{run_dir}: not a run folder (no config.yaml)")
        return cls.from_config(run_dir / "config.yaml",
                               [f"runs_root={run_dir.parent}", f"name={run_dir.name}", *overrides], device)

    @classmethod
    def from_export(cls, folder: str | Path, passages: str | Path | None = None, device: str = "cpu") -> "Retriever":
        """A folder written by `bprlab export`; `passages` (a TSV or corpus.jsonl, the corpus the export was made
        from: checked by content) adds titles and texts to hits, else the recorded corpus file when it is still
        there (hits keep ids either way)."""
        from bprlab.core.question_encoder import QuestionEncoder, export_config, export_tower
        from bprlab.export import load_exported_ids, load_exported_index

        folder = Path(folder)
        cfg = export_config(folder)  # a missing or damaged bprlab.json says so here
        for part in ("index/passages.faissindex", "index/ids.txt", "question_encoder", "passage_encoder"):
            if not (folder / part).exists():
                raise StageError(f"{folder / part}: missing; export the run again")
        meta = json.loads((folder / EXPORT_META).read_text(encoding="utf-8"))
        corpus = meta.get("corpus") or {}
        path = Path(passages) if passages else Path(corpus.get("path") or "")
        if passages is not None:
            _check_corpus(path, corpus)
        elif not path.is_file():
            path = None
        return cls(cfg, lambda: QuestionEncoder.from_export(folder, device), lambda: load_exported_index(folder, cfg),
                   path, ids=lambda: load_exported_ids(folder),
                   passage_tower=lambda: (export_tower(folder, "passage", cfg), cfg))

    # ------------------------------------------------------------------------------------------ parts

    @property
    def encoder(self):
        """The question encoder (bprlab.core.question_encoder.QuestionEncoder)."""
        return self._part("encoder")

    @property
    def index(self):
        return self._part("index")

    @property
    def store(self):
        if self._store is None and self.passages_path is not None:
            from bprlab.data.passage_store import PassageStore

            self._store = PassageStore.open(self.passages_path)
        return self._store

    # ------------------------------------------------------------------------------------------ use

    def encode_questions(self, questions: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Continuous question embeddings e_q (Q, D), float32: what `search` searches with."""
        return self.encoder.encode(_texts(questions), batch_size)

    def encode_passages(self, passages: Sequence[Passage | tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """Continuous passage embeddings e_p (N, D) of (title, text) pairs; BPR's codes are `pack_codes` of them."""
        import torch

        from bprlab.data.collate import Collator

        tower, config = self._part("passage_tower")
        tower = tower.to(self.encoder.device).eval()
        collator = Collator.from_config(config, self.encoder.tokenization.tokenizer)
        passages = [p if isinstance(p, Passage) else Passage(title=p[0], text=p[1]) for p in passages]
        out = [np.zeros((0, tower.dim), np.float32)]
        with torch.inference_mode():
            for i in range(0, len(passages), batch_size):
                batch = {k: v.to(self.encoder.device) for k, v in collator.passages(passages[i: i + batch_size]).items()}
                out.append(tower(**batch).float().cpu().numpy())
        return np.concatenate(out)

    def search(self, questions: str | Sequence[str] | np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Per question, its top-k passages best first (fewer where the index finds fewer). `questions` are texts,
        or question vectors (Q, D) of your own (what `encode_questions` returns).

        >>> hits = retriever.search(["What is the capital of Norway?"], k=2)[0]
        >>> [hit.rank for hit in hits], all(isinstance(hit.score, float) and hit.text for hit in hits)
        ([1, 2], True)
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"k={k!r}: the number of passages per question, a whole number >= 1")
        k = int(min(k, max(1, self.index.ntotal)))  # more than the corpus holds would only be padding
        if isinstance(questions, np.ndarray):
            if self.index.input_kind == "text":
                raise InputError("questions: this index (bm25) searches question texts, not vectors")
            queries = _vectors(questions)
        else:
            texts = _texts(questions)
            if not texts:
                return []
            queries = texts if self.index.input_kind == "text" else self.encoder.encode(texts)
        result = self.index.search(queries, k)  # every kind checks its vectors (shape, finite) before searching
        return [self._hits(rows, scores) for rows, scores in zip(result.rows, result.scores)]

    def _hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        valid = [int(r) for r in rows if r >= 0]
        if self.store is not None:
            table = self.store.table[valid] if valid else {"id": [], "title": [], "text": []}
            ids, titles, texts = table["id"], table["title"], table["text"]
        else:
            known = self._part("ids") if self._make["ids"] else None
            ids = [known[r] for r in valid] if known else [None] * len(valid)
            titles, texts = [None] * len(valid), [None] * len(valid)
        return [Hit(rank, row, ids[rank - 1], titles[rank - 1], texts[rank - 1], float(score))
                for rank, (row, score) in enumerate(zip(valid, scores), start=1)]


def _texts(questions) -> list[str]:
    """One question or a sequence of them, all text: bytes and other objects are refused, not str()-ed."""
    if isinstance(questions, (bytes, bytearray)) or (not isinstance(questions, str) and not isinstance(questions, Sequence)):
        raise InputError(f"questions: expected text (str) or a list of texts, got {type(questions).__name__}; "
                          "decode bytes first")
    questions = [questions] if isinstance(questions, str) else list(questions)
    bad = next((i for i, q in enumerate(questions) if not isinstance(q, str)), None)  # None is a bad item too
    if bad is not None:
        item = questions[bad]
        raise InputError(f"questions: every question must be text (str); item {bad} is {type(item).__name__} "
                         f"{item!r:.40}")
    return questions


def _vectors(questions: np.ndarray) -> np.ndarray:
    if questions.ndim != 2 or not np.issubdtype(questions.dtype, np.floating):
        raise InputError(f"questions: vectors must be a (Q, D) float array, got {questions.dtype} {questions.shape}")
    return np.ascontiguousarray(questions, dtype=np.float32)


def _check_corpus(path: Path, recorded: dict) -> None:
    """`passages` given to an export must be the corpus it was made from: hits would carry another's texts."""
    from bprlab.data.passage_store import PassageStore

    if not path.is_file():
        raise StageError(f"passages={path}: no such file")
    store = PassageStore.open(path)
    if recorded.get("sha256") and store.fingerprint() != recorded["sha256"]:
        raise StageError(f"passages={path}: not the corpus this export was made from ({len(store):,} passages, "
                         f"sha256 {store.fingerprint()[:12]}... against {recorded.get('num_passages', '?'):,} and "
                         f"{recorded['sha256'][:12]}...)")
