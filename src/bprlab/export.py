"""`bprlab export <experiment.yaml> --to DIR`: a trained run as plain Hugging Face models and faiss files.

DIR/
  question_encoder/, passage_encoder/   `save_pretrained` of each tower's transformer + the tokenizer:
                                        AutoModel.from_pretrained(DIR/question_encoder) gives the run's token states
  projection.pt                         the Linear + LayerNorm on top of each tower (model.projection_dim), if any
  index/passages.faissindex             the run's index in faiss's format: IndexBinaryFlat of the packed codes for
                                        BPR and binary kinds (it keeps the codes, unlike the hash index), the faiss
                                        index itself for float kinds
  index/ids.txt                         row -> passage id, one per line
  bprlab.json                           what `Retriever.from_export` needs: config keys, corpus, metrics
  README.md                             a model card: method, bits, training data and steps, metrics, how to binarise
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from bprlab.artifacts import atomic_dir, read_json, write_json, write_text
from bprlab.config.schema import IndexKind, RunConfig
from bprlab.errors import ConfigError, StageError

META = "bprlab.json"
CONFIG_KEYS = ("method", "model.name", "model.projection_dim", "model.pooling", "model.normalize",
               "model.passage_text_token_type", "data.max_question_length", "data.max_passage_length", "index.kind",
               "index.num_candidates", "index.rerank", "index.candidate_generation", "index.rescore", "eval.top_k")


def _get(cfg: RunConfig, dotted: str):
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return getattr(value, "value", value)


def check_destination(out: Path, force: bool, protected: list[Path]) -> None:
    """An export writes a new folder, or replaces an earlier export with --force; anything else there is the
    user's and is refused before any work: an existing file, a folder that is not an export (the run's own
    folder, the runs root, the project...), a folder holding one of `protected`."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--to {out}: a file is there; name a new folder")
    resolved = out.resolve()
    for path in protected:
        if resolved == path.resolve() or resolved in path.resolve().parents:
            raise ConfigError(f"--to {out}: holds {path}; name a new folder")
    if out.is_dir():
        if not (out / META).is_file():
            raise ConfigError(f"--to {out}: the folder exists and is not a bprlab export; name a new folder "
                              "(an export never replaces anything else)")
        if not force:
            raise ConfigError(f"--to {out}: holds an earlier export; add --force to replace it")


def export_run(cfg: RunConfig, out: str | Path, force: bool = False) -> Path:
    from bprlab.core.encoder import BiEncoder, load_biencoder, load_tokenizer
    from bprlab.data.passage_store import PassageStore
    from bprlab.data.registry import data_paths
    from bprlab.index.base import load_index
    from bprlab.runs import RunPaths, check_index_weights

    if cfg.index.kind is IndexKind.bm25:
        raise StageError("index.kind=bm25 has no encoder to export; export a dense or binary row")
    paths = RunPaths(cfg)
    out = Path(out)
    check_destination(out, force, [paths.root, Path(cfg.runs_root), Path.cwd()])
    checkpoint = paths.checkpoint()
    check_index_weights(paths.index, checkpoint, cfg)  # never the new towers beside the old index
    model = BiEncoder.from_model_config(cfg.model) if checkpoint is None else load_biencoder(checkpoint)[0]
    index, index_meta = load_index(cfg.index, paths.index)
    store = PassageStore.open(data_paths(cfg.data).passages)
    tokenizer = load_tokenizer(cfg.model.name)
    with atomic_dir(out) as tmp:
        for name, tower in (("question_encoder", model.question_tower), ("passage_encoder", model.passage_tower)):
            tower.backbone.save_pretrained(tmp / name)
            tokenizer.save_pretrained(tmp / name)
        if model.question_tower.projection is not None:
            torch.save({"question": model.question_tower.projection.state_dict(),
                        "passage": model.passage_tower.projection.state_dict()}, tmp / "projection.pt")
        (tmp / "index").mkdir()
        _write_index(index, tmp / "index" / "passages.faissindex")
        with open(tmp / "index" / "ids.txt", "w", encoding="utf-8") as handle:
            for start in range(0, len(store), 100_000):
                handle.write("\n".join(store.table[start: start + 100_000]["id"]) + "\n")
        metrics_file = paths.eval / "metrics.json"
        meta = {"config": {key: _get(cfg, key) for key in CONFIG_KEYS}, "run": str(paths.root),
                "checkpoint": str(checkpoint) if checkpoint else "pretrained",
                "code_bits": index_meta["dim"] if index.input_kind == "code" else None,
                "corpus": {"path": str(data_paths(cfg.data).passages.resolve()), "sha256": store.fingerprint(),
                           "num_passages": len(store)},
                "train": read_json(paths.train_summary) if paths.train_summary.is_file() else None,
                "metrics": read_json(metrics_file) if metrics_file.is_file() else None}
        write_json(tmp / META, meta)
        write_text(tmp / "README.md", model_card(cfg, meta))
    return out


def _write_index(index, path: Path) -> None:
    import faiss

    if index.input_kind == "code":
        codes = np.ascontiguousarray(index.codes)
        flat = faiss.IndexBinaryFlat(codes.shape[1] * 8)
        flat.add(codes)
        faiss.write_index_binary(flat, str(path))
    else:
        faiss.write_index(index.index, str(path))


def load_exported_biencoder(folder: Path, cfg: RunConfig):
    """Both towers from the exported Hugging Face folders (+ projection), as the run computed them."""
    from bprlab.core.encoder import BiEncoder, Tower, load_backbone

    towers = {}
    projection = torch.load(folder / "projection.pt", weights_only=True) if (folder / "projection.pt").is_file() else None
    for side, name in (("question", "question_encoder"), ("passage", "passage_encoder")):
        tower = Tower(load_backbone(str(folder / name)), cfg.model.projection_dim,
                      cfg.model.pooling.value, cfg.model.normalize)
        if projection is not None:
            tower.projection.load_state_dict(projection[side])
        towers[side] = tower
    return BiEncoder(towers["question"], towers["passage"])


def load_exported_index(folder: Path, cfg: RunConfig):
    import faiss

    from bprlab.index.binary import BinaryIndex
    from bprlab.index.dense import FaissIndex

    path = folder / "index" / "passages.faissindex"
    if cfg.index.kind.binary:
        flat = faiss.read_index_binary(str(path))
        codes = faiss.vector_to_array(flat.xb).reshape(flat.ntotal, flat.code_size)
        if cfg.index.kind is IndexKind.binary_hash:  # the export keeps the codes; search them with the scan
            cfg.index.kind = IndexKind.binary_flat
        return BinaryIndex(cfg.index, flat.d, codes)
    return FaissIndex(faiss.read_index(str(path)), cfg.index)


def model_card(cfg: RunConfig, meta: dict) -> str:
    train, metrics = meta.get("train") or {}, meta.get("metrics") or {}
    bits = meta.get("code_bits")
    lines = [f"# {cfg.name}: {cfg.method.value.upper()} retriever exported by bprlab", "",
             f"- method: {cfg.method.value}; index: {cfg.index.kind.value}" + (f"; {bits}-bit codes" if bits else ""),
             f"- encoder: {cfg.model.name}, pooling {cfg.model.pooling.value}"
             + (", L2-normalised" if cfg.model.normalize else "")
             + (f", projection to {cfg.model.projection_dim}" if cfg.model.projection_dim else ""),
             f"- training data: {cfg.data.dataset.value}; steps: {train.get('global_step', 'none (pretrained)')}, "
             f"global batch {train.get('global_batch_size', '-')}",
             f"- corpus: {meta['corpus']['num_passages']:,} passages (sha256 {meta['corpus']['sha256'][:16]}...)"]
    if metrics:
        shown = {k: round(v, 2) for k, v in metrics.items() if k.startswith(("top", "ndcg", "recall", "mrr"))}
        lines.append(f"- the run's evaluation: {json.dumps(shown)}")
    if cfg.model.name == "minilm":
        lines += ["", "The encoder started from all-MiniLM-L6-v2, which was itself fine-tuned on data that includes "
                      "Natural Questions, TriviaQA and SQuAD 2.0 training questions: numbers on those sets are not "
                      "zero-shot."]
    lines += ["", "## Use", "", "```python", "from transformers import AutoModel, AutoTokenizer",
              "tokenizer = AutoTokenizer.from_pretrained('question_encoder')",
              "model = AutoModel.from_pretrained('question_encoder')",
              "e_q = model(**tokenizer(['a question'], return_tensors='pt')).last_hidden_state"
              + ("[:, 0]  # [CLS]" if cfg.model.pooling.value == "cls" else "  # then the attention-masked mean"),
              "```", "", "Passages are encoded as the pair (title, text) with the passage encoder. "
              + ("projection.pt holds the Linear + LayerNorm applied to the pooled vector (both towers). " if
                 cfg.model.projection_dim else ""),
              "Binarise a passage embedding e_p as BPR does: bit = 1 where e_p >= 0 (sign, with 0 -> +1), packed with "
              "numpy.packbits along the dimension (first dimension = most significant bit of byte 0). "
              "index/passages.faissindex holds the corpus in that form (faiss IndexBinaryFlat) or as the run's float "
              "index; index/ids.txt maps its rows to passage ids. BPR search: Hamming top-l (l = "
              f"{cfg.index.num_candidates}), then rerank by <e_q, sign(e_p)>. "
              "`bprlab.Retriever.from_export(folder)` does all of this."]
    return "\n".join(lines) + "\n"
