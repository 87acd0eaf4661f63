"""A tower folder of an export as a sentence-transformers model: `SentenceTransformer(DIR/question_encoder)`
gives the run's own vectors, with its pooling, its projection and its normalisation.

Files written beside the Hugging Face weights (the format sentence-transformers reads; it is not needed here):
  modules.json                 Transformer -> Pooling ([CLS] or masked mean) [-> Dense -> LayerNorm] [-> Normalize]
  sentence_bert_config.json    max_seq_length = the run's question (or passage) length
  1_Pooling/config.json        the run's pooling
  2_Dense/, 3_LayerNorm/       the run's projection (Linear + LayerNorm), when it has one
Passages are encoded as (title, text) pairs: `model.encode([[title, text], ...])`. A DPR passage tower was trained
with token type 0 for the text too, while a tokenizer gives a second segment type 1: the export copies type 0's
embedding into type 1's row (a row DPR never trained or used), so pairs encode exactly as the run encoded them,
in sentence-transformers and in plain transformers alike. The projection's LayerNorm: sentence-transformers
builds it with eps 1e-5 where the run's uses the encoder's own (BERT: 1e-12), so a projection run's vectors agree
to about 1e-5 relative there (bit for bit elsewhere).
"""

from __future__ import annotations

from pathlib import Path

import torch

from bprlab.artifacts import write_json

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
DENSE = "sentence_transformers.models.Dense"
LAYER_NORM = "sentence_transformers.models.LayerNorm"
NORMALIZE = "sentence_transformers.models.Normalize"


def write_sentence_transformers(folder: Path, tower, pooling: str, normalize: bool, max_length: int) -> None:
    """Make `folder` (a tower's `save_pretrained` folder) load with SentenceTransformer as that tower."""
    from safetensors.torch import save_file

    hidden = tower.backbone.config.hidden_size
    modules = [{"idx": 0, "name": "0", "path": "", "type": TRANSFORMER}]
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
    write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False, "include_prompt": True})
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": POOLING})
    if tower.projection is not None:
        linear, norm = tower.projection[0], tower.projection[1]
        (folder / "2_Dense").mkdir(exist_ok=True)
        write_json(folder / "2_Dense" / "config.json", {
            "in_features": linear.in_features, "out_features": linear.out_features, "bias": True,
            "activation_function": "torch.nn.modules.linear.Identity"})
        save_file({"linear.weight": linear.weight.detach().contiguous(), "linear.bias": linear.bias.detach()},
                  str(folder / "2_Dense" / "model.safetensors"))
        (folder / "3_LayerNorm").mkdir(exist_ok=True)
        write_json(folder / "3_LayerNorm" / "config.json", {"dimension": norm.normalized_shape[0]})
        save_file({"norm.weight": norm.weight.detach().contiguous(), "norm.bias": norm.bias.detach()},
                  str(folder / "3_LayerNorm" / "model.safetensors"))
        modules += [{"idx": 2, "name": "2", "path": "2_Dense", "type": DENSE},
                    {"idx": 3, "name": "3", "path": "3_LayerNorm", "type": LAYER_NORM}]
    if normalize:
        (folder / f"{len(modules)}_Normalize").mkdir(exist_ok=True)
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": f"{len(modules)}_Normalize",
                        "type": NORMALIZE})
    write_json(folder / "modules.json", modules)


def pairs_as_one_segment(backbone) -> None:
    """For a tower trained with token type 0 on both segments (DPR's passages): type 1 embeds as type 0, so that a
    tokenizer's (title, text) pair, which marks the text type 1, gives the vectors the run gave."""
    embeddings = getattr(getattr(backbone, "embeddings", None), "token_type_embeddings", None)
    if embeddings is not None and embeddings.weight.shape[0] > 1:
        with torch.no_grad():
            embeddings.weight[1:] = embeddings.weight[0]
