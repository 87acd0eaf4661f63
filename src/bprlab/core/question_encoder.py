"""The one way questions become vectors: a question tower, the tokenization it was trained with, and a device.

`evaluate`, `Retriever`, `export` and the benches all encode through this object, so a run's questions get the
same vectors everywhere. It is built from a checkpoint (the model and the lengths come from the config saved in
it), from a model config (the untrained encoder) or from an export folder (`bprlab export`). The tokenization is
bprlab.core.inputs' (`Tokenization.from_config`), the one the training batches use.
Nothing here imports Lightning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bprlab.artifacts import EXPORT_META
from bprlab.config.keys import encoding_keys, value_of
from bprlab.config.loader import from_dict
from bprlab.config.schema import RunConfig
from bprlab.core.devices import resolve_device
from bprlab.core.inputs import Tokenization
from bprlab.errors import ConfigError, StageError


class QuestionEncoder:
    def __init__(self, tower: torch.nn.Module, tokenization: Tokenization, config: RunConfig,
                 device: str | torch.device = "cpu"):
        self.device = resolve_device(device)
        self.tower = tower.to(self.device).eval()
        self.tokenization = tokenization
        self.config = config  # the config the vectors come from (a checkpoint's saved one, for a trained run)

    @property
    def dim(self) -> int:
        return self.tower.dim

    # ------------------------------------------------------------------------------------------ constructors

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str | torch.device = "cpu") -> "QuestionEncoder":
        from bprlab.core.encoder import load_biencoder

        model, saved = load_biencoder(checkpoint)
        config = from_dict(saved, source=f"{checkpoint}: saved config")
        return cls(model.question_tower, Tokenization.from_config(config), config, device)

    @classmethod
    def from_pretrained(cls, cfg: RunConfig, device: str | torch.device = "cpu") -> "QuestionEncoder":
        """The untrained encoder of `cfg.model` (both towers are built, as the encode stage builds them, so that
        a projection head starts from the same random state)."""
        from bprlab.core.encoder import BiEncoder

        return cls(BiEncoder.from_model_config(cfg.model).question_tower, Tokenization.from_config(cfg), cfg, device)

    @classmethod
    def from_export(cls, folder: str | Path, device: str | torch.device = "cpu") -> "QuestionEncoder":
        from bprlab.core.encoder import load_tokenizer

        folder = Path(folder)
        config = export_config(folder)
        tower = export_tower(folder, "question", config)
        return cls(tower, Tokenization.from_config(config, load_tokenizer(str(folder / "question_encoder"))), config,
                   device)

    @classmethod
    def for_run(cls, cfg: RunConfig, checkpoint: Path | None, device: str | torch.device = "cpu") -> "QuestionEncoder":
        """A run's question encoder: its checkpoint's, or the pretrained one (checkpoint None). For the run's own
        checkpoints (best / last) a current config that differs on what training fixed is an error naming the key;
        a checkpoint from elsewhere (`checkpoint=<path>`) encodes as it was trained, whatever this config says."""
        if checkpoint is None:
            return cls.from_pretrained(cfg, device)
        encoder = cls.from_checkpoint(checkpoint, device)
        if str(cfg.checkpoint) in ("best", "last"):
            check_trained_keys(cfg, encoder.config, checkpoint)
        return encoder

    # ------------------------------------------------------------------------------------------ use

    @torch.inference_mode()
    def encode(self, questions: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """e_q (Q, D) float32, in order."""
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(questions), batch_size):
            batch = {k: v.to(self.device) for k, v in self.tokenization.questions(list(questions[i: i + batch_size])).items()}
            out.append(self.tower(**batch).float().cpu().numpy())
        return np.concatenate(out)


def check_trained_keys(current: RunConfig, trained: RunConfig, checkpoint: Path) -> None:
    """What a trained run's saved config decides about encoding (the schema's `encoding` keys): a current config
    that differs there cannot apply to the run's weights (its towers and passages were made with the saved
    values)."""
    for name in encoding_keys():
        now, then = value_of(current, name), value_of(trained, name)
        if now != then:
            raise ConfigError(f"{name}={now}: {checkpoint} was trained with {name}={then}, and a trained run encodes "
                              "as it was trained; train a run with the new value, or evaluate the untrained encoder "
                              "with checkpoint=pretrained")


def export_config(folder: Path) -> RunConfig:
    """The config an export recorded (bprlab.json): what its towers need to encode as the run did."""
    from bprlab.config import load_config

    path = folder / EXPORT_META
    if not path.is_file():
        raise StageError(f"{folder}: not a bprlab export (no {EXPORT_META})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        overrides = [f"{k}={json.dumps(v)}" for k, v in meta["config"].items()]
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise StageError(f"{path}: damaged ({type(exc).__name__}); export the run again") from None
    return load_config(None, overrides)


def export_tower(folder: Path, side: str, config: RunConfig):
    """One tower of an export: the Hugging Face folder (+ the projection in projection.pt, when the run has one)."""
    from bprlab.core.encoder import Tower, load_backbone

    projection = None
    if config.model.projection_dim is not None:
        try:
            projection = torch.load(folder / "projection.pt", weights_only=True)[side]
        except Exception as exc:  # noqa: BLE001 - missing, truncated or foreign file
            raise StageError(f"{folder / 'projection.pt'}: missing or damaged ({type(exc).__name__}); export the run "
                             "again") from None
    try:
        backbone = load_backbone(str(folder / f"{side}_encoder"))
    except Exception:  # noqa: BLE001 - a missing folder, garbage weights (safetensors' own error), ...
        raise StageError(f"{folder / f'{side}_encoder'}: missing or damaged; export the run again") from None
    tower = Tower(backbone, config.model.projection_dim, config.model.pooling.value, config.model.normalize)
    if projection is not None:
        tower.projection.load_state_dict(projection)
    return tower
