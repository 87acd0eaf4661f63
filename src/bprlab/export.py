"""`bprlab export <experiment.yaml> --to DIR`: a trained run as plain Hugging Face models and faiss files.

DIR/
  question_encoder/, passage_encoder/   `save_pretrained` of each tower's transformer + the tokenizer:
                                        AutoModel.from_pretrained(DIR/question_encoder) gives the run's token states,
                                        and SentenceTransformer(DIR/question_encoder) the run's vectors
                                        (bprlab.export_st: pooling, projection, normalisation)
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

from bprlab.artifacts import EXPORT_META, atomic_dir, read_json, write_json, write_text
from bprlab.config.keys import encoding_keys, value_of
from bprlab.config.schema import RunConfig
from bprlab.errors import ConfigError, StageError
from bprlab.stamps import stage_values


def export_keys(cfg: RunConfig, trained: RunConfig) -> dict:
    """The config keys `Retriever.from_export` needs, by dotted name: how the towers encode (the schema's
    `encoding` keys, from the config they were trained with), and the index and search keys the index kind reads
    with the run's top-k (from the run's config)."""
    return {"method": trained.method.value, **{name: value_of(trained, name) for name in encoding_keys()},
            **stage_values(cfg, "index"), **stage_values(cfg, "search"), "eval.top_k": list(cfg.eval.top_k)}


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
        if not (out / EXPORT_META).is_file():
            raise ConfigError(f"--to {out}: the folder exists and is not a bprlab export; name a new folder "
                              "(an export never replaces anything else)")
        if not force:
            raise ConfigError(f"--to {out}: holds an earlier export; add --force to replace it")


def export_run(cfg: RunConfig, out: str | Path, force: bool = False) -> Path:
    from bprlab.config.index_kinds import kind_of
    from bprlab.config.loader import from_dict
    from bprlab.core.encoder import BiEncoder, load_biencoder, load_tokenizer
    from bprlab.data.passage_store import PassageStore
    from bprlab.data.paths import data_paths
    from bprlab.index.base import load_index
    from bprlab.runs import RunPaths
    from bprlab.stamps import check_index_weights

    if not kind_of(cfg.index).exportable:
        raise StageError(f"index.kind={cfg.index.kind.value} has no encoder and faiss form to export; export a dense "
                         "or binary row")
    paths = RunPaths(cfg)
    out = Path(out)
    check_destination(out, force, [paths.root, Path(cfg.runs_root), Path.cwd()])
    checkpoint = paths.checkpoint()
    check_index_weights(paths.index, checkpoint, cfg)  # never the new towers beside the old index
    if checkpoint is None:
        model, trained = BiEncoder.from_model_config(cfg.model), cfg
    else:  # the towers encode as they were trained: the checkpoint's saved config decides
        model, saved = load_biencoder(checkpoint)
        trained = from_dict(saved, source=f"{checkpoint}: saved config")
    index, index_meta = load_index(cfg.index, paths.index)
    store = PassageStore.open(data_paths(cfg.data).passages)
    tokenizer = load_tokenizer(trained.model.name)
    with atomic_dir(out) as tmp:
        _write_towers(tmp, model, trained, tokenizer)
        (tmp / "index").mkdir()
        index.write_faiss(tmp / "index" / "passages.faissindex")
        with open(tmp / "index" / "ids.txt", "w", encoding="utf-8") as handle:
            for start in range(0, len(store), 100_000):
                handle.write("\n".join(store.table[start: start + 100_000]["id"]) + "\n")
        metrics_file = paths.eval / "metrics.json"
        config = export_keys(cfg, trained)
        meta = {"config": config, "run": str(paths.root),
                "checkpoint": str(checkpoint) if checkpoint else "pretrained",
                "code_bits": index_meta["dim"] if index.input_kind == "code" else None,
                "corpus": {"path": str(data_paths(cfg.data).passages.resolve()), "sha256": store.fingerprint(),
                           "num_passages": len(store)},
                "train": read_json(paths.train_summary) if paths.train_summary.is_file() else None,
                "metrics": read_json(metrics_file) if metrics_file.is_file() else None}
        write_json(tmp / EXPORT_META, meta)
        write_text(tmp / "README.md", model_card(trained, cfg, meta))
    return out


def _write_towers(folder: Path, model, trained: RunConfig, tokenizer) -> None:
    """question_encoder/ and passage_encoder/: Hugging Face weights + tokenizer + the sentence-transformers files
    (bprlab.export_st); projection.pt keeps the projection for `Retriever.from_export`."""
    from bprlab.data.collate import Collator
    from bprlab.export_st import pairs_as_one_segment, write_sentence_transformers

    collator = Collator.from_config(trained, tokenizer)
    for side, tower, length in (("question", model.question_tower, trained.data.max_question_length),
                                ("passage", model.passage_tower, trained.data.max_passage_length)):
        if side == "passage" and collator.passage_text_token_type == 0:
            pairs_as_one_segment(tower.backbone)
        tower.backbone.save_pretrained(folder / f"{side}_encoder")
        tokenizer.save_pretrained(folder / f"{side}_encoder")
        write_sentence_transformers(folder / f"{side}_encoder", tower, trained.model.pooling.value,
                                    trained.model.normalize, length)
    check_sentence_transformers(folder / "question_encoder", model.question_tower, collator)
    if model.question_tower.projection is not None:
        with open(folder / "projection.pt", "wb") as handle:  # a path would make a full disk a RuntimeError
            torch.save({"question": model.question_tower.projection.state_dict(),
                        "passage": model.passage_tower.projection.state_dict()}, handle)


PROBE_QUESTIONS = ["who wrote the declaration of independence", "what is the capital of norway"]


def check_sentence_transformers(folder: Path, tower, collator) -> None:
    """Where sentence-transformers is installed, the exported question tower must load in it and give the run's own
    vectors (a missing or wrong modules.json makes it fall back to mean pooling without a word): the export is
    refused otherwise, before anything is written in its place."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:  # not a dependency: the files are written for those who have it
        return
    with torch.inference_mode():
        batch = collator.questions(PROBE_QUESTIONS)
        ours = tower.to("cpu").eval()(**batch).float().numpy()
    theirs = SentenceTransformer(str(folder), device="cpu").encode(PROBE_QUESTIONS)
    # a projection's LayerNorm: sentence-transformers' eps is 1e-5, the run's the encoder's own (export_st)
    if theirs.shape != ours.shape or not np.allclose(theirs, ours, rtol=1e-3, atol=1e-4):
        gap = float(np.abs(theirs - ours).max()) if theirs.shape == ours.shape else theirs.shape
        raise StageError(f"{folder}: sentence-transformers does not load it as the run encodes (largest difference "
                         f"{gap}); the export was not written")


def load_exported_index(folder: Path, cfg: RunConfig):
    """The export's faiss file as the index its config names (a hash config searches the kept codes by scan)."""
    from bprlab.index.registry import implementation

    path = folder / "index" / "passages.faissindex"
    if not path.is_file():
        raise StageError(f"{path}: missing; export the run again")
    try:
        return implementation(cfg.index).read_faiss(cfg.index, path)
    except RuntimeError as exc:  # faiss on a truncated or foreign file
        raise StageError(f"{path}: damaged ({str(exc).splitlines()[0][:100]}); export the run again") from None


def load_exported_ids(folder: Path) -> list[str]:
    path = folder / "index" / "ids.txt"
    if not path.is_file():
        raise StageError(f"{path}: missing (row -> passage id); export the run again")
    return path.read_text(encoding="utf-8").split("\n")


def model_card(trained: RunConfig, cfg: RunConfig, meta: dict) -> str:
    """README.md of an export: what it is, how it was trained, and the ways to use it (`trained` is the config the
    towers were trained with; `cfg` names the run and its index)."""
    train, metrics = meta.get("train") or {}, meta.get("metrics") or {}
    bits, model = meta.get("code_bits"), trained.model
    lines = [f"# {cfg.name}: {trained.method.value.upper()} retriever exported by bprlab", "",
             f"- method: {trained.method.value}; index: {cfg.index.kind.value}" + (f"; {bits}-bit codes" if bits else ""),
             f"- encoder: {model.name}, pooling {model.pooling.value}" + (", L2-normalised" if model.normalize else "")
             + (f", projection to {model.projection_dim}" if model.projection_dim else ""),
             f"- training data: {trained.data.dataset.value}; steps: {train.get('global_step', 'none (pretrained)')}, "
             f"global batch {train.get('global_batch_size', '-')}",
             f"- corpus: {meta['corpus']['num_passages']:,} passages (sha256 {meta['corpus']['sha256'][:16]}...)"]
    if metrics:
        shown = {k: round(v, 2) for k, v in metrics.items() if isinstance(v, float) and
                 k.startswith(("top", "ndcg", "recall", "mrr"))}
        lines.append(f"- the run's evaluation: {json.dumps(shown)}")
    if model.name == "minilm":
        lines += ["", "The encoder started from all-MiniLM-L6-v2, which was itself fine-tuned on data that includes "
                      "Natural Questions, TriviaQA and SQuAD 2.0 training questions: numbers on those sets are not "
                      "zero-shot."]
    pooled = "[:, 0]  # [CLS]" if model.pooling.value == "cls" else "  # then the attention-masked mean"
    lines += ["", "## Use", "", "With sentence-transformers (the run's pooling"
              + (", projection" if model.projection_dim else "") + (" and normalisation" if model.normalize else "")
              + " included):", "", "```python", "from sentence_transformers import SentenceTransformer",
              "from sentence_transformers.quantization import quantize_embeddings",
              "questions = SentenceTransformer('question_encoder').encode(['a question'])",
              "passages = SentenceTransformer('passage_encoder').encode([['a title', 'a passage text']])  # (title, text)",
              "codes = quantize_embeddings(passages, precision='ubinary')  # BPR's packed codes", "```", "",
              "sentence-transformers reads modules.json, sentence_bert_config.json and 1_Pooling/ (2_Dense/ and "
              "3_LayerNorm/ for a projection; a Normalize step is named in modules.json) beside the weights: keep "
              "the folder whole. Without modules.json it falls back to mean pooling and gives other vectors, without "
              "a warning. `bprlab export` checked that this folder loads in sentence-transformers as the run "
              "encodes.", "",
              "With plain transformers:", "", "```python", "from transformers import AutoModel, AutoTokenizer",
              "tokenizer = AutoTokenizer.from_pretrained('question_encoder')",
              "model = AutoModel.from_pretrained('question_encoder')",
              "e_q = model(**tokenizer(['a question'], return_tensors='pt')).last_hidden_state" + pooled,
              "```", "", "Passages are encoded as the pair (title, text) with the passage encoder. "
              + ("projection.pt holds the Linear + LayerNorm applied to the pooled vector (both towers); "
                 "sentence-transformers applies it from 2_Dense/ and 3_LayerNorm/ (its LayerNorm eps is 1e-5, the "
                 "run's the encoder's own: vectors agree to ~1e-5 relative). " if model.projection_dim else ""),
              "Binarise a passage embedding e_p as BPR does: bit = 1 where e_p >= 0 (sign, with 0 -> +1), packed with "
              "numpy.packbits along the dimension (first dimension = most significant bit of byte 0); "
              "quantize_embeddings(..., 'ubinary') packs the same bits (it maps an exact 0 to bit 0). "
              "index/passages.faissindex holds the corpus in that form (faiss IndexBinaryFlat) or as the run's float "
              "index; index/ids.txt maps its rows to passage ids. BPR search: Hamming top-l (l = "
              f"{cfg.index.num_candidates}), then rerank by <e_q, sign(e_p)>. "
              "`bprlab.Retriever.from_export(folder)` does all of this."]
    return "\n".join(lines) + "\n"
