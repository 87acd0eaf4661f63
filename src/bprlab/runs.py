"""The run directory: where each stage reads and writes (stages talk only through these files).

runs/<name>/
  config.yaml, provenance.json       resolved config, git revision, seed, library versions (after train and index)
  checkpoints/last.ckpt, best-*.ckpt train
  train.json                         train: which checkpoint is best, steps, val/avg_rank
  passages/<weights>-<emb|code>/     encode: one shard set per rank + manifest.json
  index/<weights>-<index>/           index: faiss files + index.json
  eval/<weights>-<index+search>/     evaluate: metrics.json, retrieval.npz
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bprlab.artifacts import provenance, read_json, write_json, write_text
from bprlab.config.enums import Checkpoint
from bprlab.config.index_kinds import build_tag as index_build_tag
from bprlab.config.index_kinds import search_tag
from bprlab.config.loader import to_dict, to_yaml
from bprlab.config.schema import RunConfig
from bprlab.errors import StageError

log = logging.getLogger(__name__)
NAMED_CHECKPOINTS = tuple(c.value for c in Checkpoint)


@contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """One bprlab process per run folder: a second one (same run name) is refused at once instead of resuming
    from the first's checkpoints mid-flight. DDP / SLURM ranks other than 0 do not take it (rank 0 holds it for
    the job). The lock is an flock: it goes with the process, so a killed run leaves nothing to clean."""
    import fcntl
    import os

    from pytorch_lightning.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    path = root / ".lock"
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise StageError(f"{root} is in use by another bprlab process (pid {holder}): wait for it to finish, "
                             "or give this run another name=") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


@dataclass(frozen=True)
class RunPaths:
    cfg: RunConfig

    @property
    def root(self) -> Path:
        return Path(self.cfg.runs_root) / self.cfg.name

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def train_summary(self) -> Path:
        return self.root / "train.json"

    @property
    def weights_tag(self) -> str:
        value = str(self.cfg.checkpoint)
        if value in NAMED_CHECKPOINTS:
            return value
        return "ckpt-" + re.sub(r"[^A-Za-z0-9]+", "_", Path(value).stem)  # the stamps inside hold its content hash

    @property
    def data_root(self) -> Path:
        """Where this run's encodings, indexes and evaluations of the configured corpus live: the run folder for
        its own dataset, runs/<name>/datasets/<kind>-<folder>/ for a BEIR / jsonl folder it is evaluated on."""
        data = self.cfg.data
        if not data.dataset.folder:
            return self.root
        return self.root / "datasets" / f"{data.dataset.value}-{Path(data.path or '').name or 'data'}"

    def passages(self, representation: str) -> Path:
        return self.data_root / "passages" / f"{self.weights_tag}-{representation}"

    @property
    def index(self) -> Path:
        return self.data_root / "index" / f"{self.weights_tag}-{index_build_tag(self.cfg.index)}"

    @property
    def eval(self) -> Path:
        return self.data_root / "eval" / f"{self.weights_tag}-{search_tag(self.cfg.index)}"

    def record(self) -> None:
        """Write the resolved config and provenance beside the run's artifacts."""
        write_text(self.data_root / "config.yaml", to_yaml(self.cfg))
        write_json(self.data_root / "provenance.json", provenance(to_dict(self.cfg), self.cfg.seed))

    def checkpoint(self) -> Path | None:
        """The weights `cfg.checkpoint` names: None for the pretrained (zero-shot) encoder."""
        if self.cfg.checkpoint == Checkpoint.pretrained:
            return None
        if str(self.cfg.checkpoint) not in NAMED_CHECKPOINTS:
            path = Path(self.cfg.checkpoint)
            if not path.is_file():
                raise StageError(f"checkpoint={self.cfg.checkpoint}: no such checkpoint file")
            return path
        if not self.train_summary.is_file():
            raise StageError(f"{self.root}: no finished training here (train.json missing); run `bprlab train` first")
        summary = read_json(self.train_summary)
        name = summary.get("best_checkpoint") if self.cfg.checkpoint == Checkpoint.best else None
        if self.cfg.checkpoint == Checkpoint.best and not name:
            log.warning("%s: no checkpoint was selected (train.select_from_epoch not reached); using last", self.root)
        path = self.checkpoints / (name or summary["last_checkpoint"])
        if not path.is_file():
            raise StageError(f"{path}: checkpoint named in {self.train_summary} is missing")
        return path
