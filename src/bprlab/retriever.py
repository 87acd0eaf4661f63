"""The Python API over the stages: ask a trained run (or an exported one) questions and read its passages.

    >>> from bprlab import Retriever
    >>> retriever = Retriever.from_run("runs/squad-bpr")             # or .from_config(yaml, overrides), .from_export(dir)
    >>> hits = retriever.search(["Who wrote Hamlet?"], k=3)[0]
    >>> [(hit.title, round(hit.score, 1)) for hit in hits]            # doctest: +SKIP

Everything loads lazily on first use: the question tower (from the run's checkpoint, or the pretrained encoder
for a zero-shot run), the index (memory-mapped codes or the faiss file) and the passage store (a memory-mapped
Arrow table): nothing the size of the corpus becomes Python objects. Works for every index kind the run built
(DPR, BPR, post-hoc, BM25); CPU by default, `device="cuda"` to encode on a GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bprlab.config import load_config
from bprlab.config.schema import RunConfig
from bprlab.data.records import Passage
from bprlab.errors import StageError

EXPORT_META = "bprlab.json"


@dataclass
class Hit:
    rank: int
    row: int  # passage-store row (index row)
    id: str | None  # the corpus' own passage / document id
    title: str | None
    text: str | None
    score: float


class Retriever:
    def __init__(self, cfg: RunConfig, checkpoint: Path | None, index_dir: Path, passages: Path | None,
                 device: str = "cpu", export_dir: Path | None = None):
        self.cfg, self.checkpoint, self.index_dir, self.passages_path = cfg, checkpoint, index_dir, passages
        self.device, self.export_dir = torch.device(device), export_dir
        self._model = self._collator = self._index = self._store = self._ids = None

    # ------------------------------------------------------------------------------------------ constructors

    @classmethod
    def from_config(cls, experiment: str | Path | None, overrides: Sequence[str] = (), device: str = "cpu") -> "Retriever":
        """The run an experiment YAML (plus overrides) names, with the index its config selects."""
        from bprlab.data.registry import data_paths
        from bprlab.runs import RunPaths, check_index_weights

        cfg = load_config(experiment, list(overrides))
        paths = RunPaths(cfg)
        checkpoint = paths.checkpoint()
        check_index_weights(paths.index, checkpoint, cfg)  # a run retrained since its index was built
        return cls(cfg, checkpoint, paths.index, data_paths(cfg.data).passages, device)

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
        """A folder written by `bprlab export`; `passages` (a TSV or corpus.jsonl) adds titles and texts to hits,
        else the corpus file the export recorded is used when it is still there (hits keep ids either way)."""
        folder = Path(folder)
        if not (folder / EXPORT_META).is_file():
            raise StageError(f"{folder}: not a bprlab export (no {EXPORT_META})")
        meta = json.loads((folder / EXPORT_META).read_text())
        cfg = load_config(None, [f"{k}={json.dumps(v)}" for k, v in meta["config"].items()])
        corpus = Path(passages) if passages else Path(meta.get("corpus", {}).get("path", ""))
        return cls(cfg, None, folder / "index", corpus if corpus.is_file() else None, device, export_dir=folder)

    # ------------------------------------------------------------------------------------------ parts, lazily

    @property
    def model(self):
        if self._model is None:
            from bprlab.core.encoder import BiEncoder, load_biencoder

            if self.export_dir is not None:
                from bprlab.export import load_exported_biencoder

                model = load_exported_biencoder(self.export_dir, self.cfg)
            elif self.checkpoint is None:
                model = BiEncoder.from_model_config(self.cfg.model)
            else:
                model, _ = load_biencoder(self.checkpoint)
            self._model = model.to(self.device).eval()
        return self._model

    @property
    def collator(self):
        if self._collator is None:
            from bprlab.core.encoder import load_tokenizer
            from bprlab.lit.train import make_collator

            name = str(self.export_dir / "question_encoder") if self.export_dir else self.cfg.model.name
            self._collator = make_collator(self.cfg, load_tokenizer(name))
        return self._collator

    @property
    def index(self):
        if self._index is None:
            if self.export_dir is not None:
                from bprlab.export import load_exported_index

                self._index = load_exported_index(self.export_dir, self.cfg)
            else:
                from bprlab.index.base import load_index

                self._index, _ = load_index(self.cfg.index, self.index_dir)
        return self._index

    @property
    def store(self):
        if self._store is None and self.passages_path is not None:
            from bprlab.data.passage_store import PassageStore

            self._store = PassageStore.open(self.passages_path)
        return self._store

    # ------------------------------------------------------------------------------------------ use

    @torch.inference_mode()
    def encode_questions(self, questions: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Continuous question embeddings e_q (Q, D), float32."""
        out = [np.zeros((0, self.model.dim), np.float32)]
        for i in range(0, len(questions), batch_size):
            batch = {k: v.to(self.device) for k, v in self.collator.questions(list(questions[i: i + batch_size])).items()}
            out.append(self.model.encode_question(**batch).float().cpu().numpy())
        return np.concatenate(out)

    @torch.inference_mode()
    def encode_passages(self, passages: Sequence[Passage | tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """Continuous passage embeddings e_p (N, D) of (title, text) pairs; BPR's codes are `pack_codes` of them."""
        passages = [p if isinstance(p, Passage) else Passage(title=p[0], text=p[1]) for p in passages]
        out = [np.zeros((0, self.model.dim), np.float32)]
        for i in range(0, len(passages), batch_size):
            batch = {k: v.to(self.device) for k, v in self.collator.passages(passages[i: i + batch_size]).items()}
            out.append(self.model.encode_passage(**batch).float().cpu().numpy())
        return np.concatenate(out)

    def search(self, questions: str | Sequence[str], k: int = 10) -> list[list[Hit]]:
        """Per question, its top-k passages best first (fewer where the index finds fewer).

        >>> hits = retriever.search(["What is the capital of Norway?"], k=2)[0]
        >>> [hit.rank for hit in hits], all(isinstance(hit.score, float) and hit.text for hit in hits)
        ([1, 2], True)
        """
        questions = [questions] if isinstance(questions, str) else list(questions)
        queries = questions if self.index.input_kind == "text" else self.encode_questions(questions)
        result = self.index.search(queries, k)
        return [self._hits(rows, scores) for rows, scores in zip(result.rows, result.scores)]

    def _hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        valid = [int(r) for r in rows if r >= 0]
        if self.store is not None:
            table = self.store.table[valid] if valid else {"id": [], "title": [], "text": []}
            ids, titles, texts = table["id"], table["title"], table["text"]
        else:
            ids, titles, texts = self._export_ids(valid), [None] * len(valid), [None] * len(valid)
        return [Hit(rank, row, ids[rank - 1], titles[rank - 1], texts[rank - 1], float(score))
                for rank, (row, score) in enumerate(zip(valid, scores), start=1)]

    def _export_ids(self, rows: list[int]) -> list[str | None]:
        if self.export_dir is None:
            return [None] * len(rows)
        if self._ids is None:
            self._ids = (self.export_dir / "index" / "ids.txt").read_text(encoding="utf-8").split("\n")
        return [self._ids[r] for r in rows]
