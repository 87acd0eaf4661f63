"""Where each dataset's files live. DPR's names are kept so that downloaded files drop straight in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bprlab.config.enums import AnswerMatch, DatasetName
from bprlab.config.schema import DataConfig
from bprlab.errors import ConfigError

# DPR's public release (facebookresearch/DPR, dpr/data/download_data.py): used by `bprlab download`.
DPR_URL = "https://dl.fbaipublicfiles.com/dpr"
DOWNLOADS = {
    "nq": {
        "biencoder-nq-train.json.gz": f"{DPR_URL}/data/retriever/biencoder-nq-train.json.gz",
        "biencoder-nq-dev.json.gz": f"{DPR_URL}/data/retriever/biencoder-nq-dev.json.gz",
        "nq-test.qa.csv": f"{DPR_URL}/data/retriever/nq-test.qa.csv",
    },
    "trivia": {
        "biencoder-trivia-train.json.gz": f"{DPR_URL}/data/retriever/biencoder-trivia-train.json.gz",
        "biencoder-trivia-dev.json.gz": f"{DPR_URL}/data/retriever/biencoder-trivia-dev.json.gz",
        "trivia-test.qa.csv.gz": f"{DPR_URL}/data/retriever/trivia-test.qa.csv.gz",
    },
    "wikipedia": {"psgs_w100.tsv.gz": f"{DPR_URL}/wikipedia_split/psgs_w100.tsv.gz"},
}


@dataclass(frozen=True)
class DataPaths:
    train: Path | None  # None: an evaluation-only dataset (beir / jsonl without data.train_file)
    dev: Path | None
    test: Path  # DPR qa file, or the folder's queries.jsonl
    passages: Path
    answer_match: AnswerMatch
    qrels: Path | None = None  # beir: qrels/<split>.tsv

    def training(self) -> tuple[Path, Path]:
        if self.train is None or self.dev is None:
            raise ConfigError("config: training needs data.train_file and data.dev_file (DPR biencoder JSON); this "
                              "dataset has none configured. Encoding and evaluating do not need them.")
        return self.train, self.dev


def _defaults(cfg: DataConfig) -> dict[str, Path]:
    root = Path(cfg.root)
    name = cfg.dataset.value
    if cfg.dataset is DatasetName.squad:
        base = root / "squad"
        return {
            "train": base / "biencoder-squad-train.json",
            "dev": base / "biencoder-squad-dev.json",
            "test": base / "squad-test.qa.csv",
            "passages": base / "psgs_w100.tsv",
        }
    if cfg.dataset in (DatasetName.nq, DatasetName.trivia):
        base = root / name
        return {
            "train": base / f"biencoder-{name}-train.json",
            "dev": base / f"biencoder-{name}-dev.json",
            "test": base / f"{name}-test.qa.csv",
            "passages": root / "wikipedia" / "psgs_w100.tsv",
        }
    if cfg.dataset.folder and cfg.path:
        from bprlab.data.beir import CORPUS, QRELS, QUERIES

        folder = Path(cfg.path)
        out = {"passages": folder / CORPUS, "test": folder / QUERIES}
        if cfg.dataset is DatasetName.beir:
            out["qrels"] = folder / QRELS / f"{cfg.split}.tsv"
        return out
    return {}


def data_paths(cfg: DataConfig) -> DataPaths:
    defaults = _defaults(cfg)
    given = {"train": cfg.train_file, "dev": cfg.dev_file, "test": cfg.test_file, "passages": cfg.passages_file}
    if cfg.dataset.folder:  # a folder brings its own corpus and queries: another dataset's files never replace them
        given["test"] = given["passages"] = None
    paths = {key: Path(value) if value else defaults.get(key) for key, value in given.items()}
    needed = ("test", "passages")  # train / dev only when training (DataPaths.training says so then)
    missing = [f"data.{key}_file" for key in needed if paths[key] is None]
    if missing:
        raise ConfigError(f"config: data.dataset={cfg.dataset.value} needs {', '.join(missing)}")
    return DataPaths(answer_match=cfg.answer_match, qrels=defaults.get("qrels"), **paths)
