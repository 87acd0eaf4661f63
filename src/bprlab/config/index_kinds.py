"""Every index kind and its facts, in one place: what it is built from, whether it searches packed codes, whether
it can re-score, which `index.*` keys it reads and how its folders are named. Which class implements each is
`bprlab.index.registry`.

Code outside `index/` asks these facts (or the index protocol in `index/base.py`); it never branches on a kind.
Adding a kind is a class that follows the protocol (build / add / search / save_files / load_files / write_faiss,
ntotal, bytes_per_passage, rescore_bytes_per_passage, threads, device, describe), one line in KINDS below, one in
`bprlab.index.registry.IMPLEMENTATIONS`, and its name in `config.enums.IndexKind`. The facts are config
knowledge (the loader checks each kind's keys with them), so they live in the config layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Callable

from bprlab.config.enums import IndexKind
from bprlab.config.schema import IndexConfig

# Keys every kind reads: what it is, where it lives, how many questions a search call takes, how many threads
COMMON = ("kind", "name", "search_batch_size", "threads")
BINARY = ("num_candidates", "rerank", "candidate_generation", "backend", "device")
HASH = ("hash_bits", "hash_tables", "hash_flips")
RESCORE = ("rescore", "num_candidates")  # num_candidates: the top-l the kept float vectors re-score
QUANTISER = ("train_size",)  # vectors a trained quantiser learns from


@dataclass(frozen=True)
class Kind:
    kind: IndexKind
    input: str  # what it is built from: "emb" (float vectors), "code" (packed sign bits) or "text" (BM25)
    reads: tuple[str, ...]  # index.* keys besides COMMON
    build_tag: Callable[[IndexConfig], str]  # names what is built: one index folder per tag
    search_tag: Callable[[IndexConfig], str] = lambda cfg: ""  # appended for a search setting: one eval folder each
    binary: bool = False  # Hamming candidates over packed codes, reranked by <e_q, sign(e_p)>
    rescorable: bool = False  # index.rescore keeps the float vectors to re-score a top-l
    exportable: bool = True  # `bprlab export` writes it as a faiss file


def _rescore(tag: str, cfg: IndexConfig) -> str:
    return tag + ("-rescore" if cfg.rescore else "")


def _factory_tag(cfg: IndexConfig) -> str:
    return _rescore("factory-" + re.sub(r"[^A-Za-z0-9]+", "_", cfg.factory or ""), cfg)


def _binary_search(cfg: IndexConfig) -> str:
    if not cfg.candidate_generation:
        return "-exhaustive"
    return f"-l{cfg.num_candidates}" if cfg.rerank else "-norerank"


def _rescore_search(cfg: IndexConfig) -> str:
    return f"-l{cfg.num_candidates}" if cfg.rescore else ""


KINDS: dict[IndexKind, Kind] = {k.kind: k for k in (
    Kind(IndexKind.flat, "emb", (), lambda cfg: "flat"),
    Kind(IndexKind.binary_flat, "code", BINARY, lambda cfg: "binary_flat",
         _binary_search, binary=True),
    Kind(IndexKind.binary_hash, "code", BINARY + HASH,
         lambda cfg: f"binary_hash-b{cfg.hash_bits}x{cfg.hash_tables}",
         lambda cfg: f"-flip{cfg.hash_flips}" + _binary_search(cfg), binary=True),
    Kind(IndexKind.binary_pca, "emb",
         BINARY + ("code_bits", "rotation", *QUANTISER),
         lambda cfg: f"binary_pca-{cfg.rotation.value}-{cfg.code_bits or 'd'}bits", _binary_search, binary=True,
         exportable=False),
    Kind(IndexKind.lsh, "emb", ("code_bits", "rotation", *QUANTISER),
         lambda cfg: f"lsh-{cfg.rotation.value}-{cfg.code_bits or 'd'}bits"),
    Kind(IndexKind.pq, "emb", ("pq_subquantizers", "pq_bits", *QUANTISER, *RESCORE),
         lambda cfg: _rescore(f"pq-{cfg.pq_subquantizers or 'd8'}x{cfg.pq_bits}", cfg), _rescore_search,
         rescorable=True),
    Kind(IndexKind.int8, "emb", (*QUANTISER, *RESCORE), lambda cfg: _rescore("int8", cfg), _rescore_search,
         rescorable=True),
    Kind(IndexKind.rabitq, "emb", ("rabitq_query_bits", *QUANTISER, *RESCORE),
         lambda cfg: _rescore("rabitq", cfg),
         lambda cfg: f"-qb{cfg.rabitq_query_bits}" + _rescore_search(cfg), rescorable=True),
    Kind(IndexKind.hnsw, "emb", ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search"),
         lambda cfg: f"hnsw-m{cfg.hnsw_m}-efc{cfg.hnsw_ef_construction}", lambda cfg: f"-ef{cfg.hnsw_ef_search}"),
    Kind(IndexKind.factory, "emb", ("factory", *QUANTISER, *RESCORE), _factory_tag, _rescore_search,
         rescorable=True),
    Kind(IndexKind.bm25, "text", (), lambda cfg: "bm25", exportable=False),
)}


def kind_of(cfg: IndexConfig | IndexKind) -> Kind:
    return KINDS[cfg if isinstance(cfg, IndexKind) else cfg.kind]


def build_tag(cfg: IndexConfig) -> str:
    """Names what is built (search-time settings are not part of it): the index folder. A quantiser trained on a
    sample (index.train_size) is another index: the sample's size joins the name (absent at the default, so the
    folders of full-corpus quantisers keep their names)."""
    sample = f"-train{cfg.train_size}" if cfg.train_size and "train_size" in kind_of(cfg).reads else ""
    return (cfg.name or kind_of(cfg).build_tag(cfg)) + sample


def search_tag(cfg: IndexConfig) -> str:
    """Names a search setting over a built index: one evaluation folder per setting."""
    return build_tag(cfg) + kind_of(cfg).search_tag(cfg)


def reads(cfg: IndexConfig) -> set[str]:
    """The index.* keys this config's kind reads (num_candidates only where candidates are reranked or
    re-scored)."""
    kind = kind_of(cfg)
    keys = set(COMMON) | set(kind.reads)
    if kind.rescorable and not cfg.rescore:
        keys.discard("num_candidates")
    return keys


def config_problems(cfg: IndexConfig) -> list[str]:
    """Index settings that mean nothing for the chosen kind (set away from their default), or that the kind
    cannot honour: each a line naming the key and why."""
    defaults = IndexConfig()
    kind, used = kind_of(cfg), reads(cfg)
    problems = []
    for f in fields(IndexConfig):
        if f.name == "rescore" and cfg.rescore and not kind.rescorable:
            continue  # said below, with what binary kinds do instead
        if f.name not in used and getattr(cfg, f.name) != getattr(defaults, f.name):
            value = getattr(cfg, f.name)
            own = ", ".join(sorted(used - set(COMMON))) or "none of the kind-specific keys"
            problems.append(f"index.{f.name}={getattr(value, 'value', value)} means nothing for index.kind="
                            f"{cfg.kind.value}, which reads {own}; remove it")
    if cfg.rescore and not kind.rescorable:
        problems.append(f"index.rescore: re-scores a quantised float index (pq, int8, rabitq, factory), not "
                        f"index.kind={cfg.kind.value}" + ("; binary kinds rerank from the codes with index.rerank"
                                                          if kind.binary else ""))
    return problems


def has_candidate_stage(cfg: IndexConfig) -> bool:
    """Whether the search ranks candidates before it reranks them (its stage is measured: bprlab.eval.stage)."""
    return kind_of(cfg).binary and cfg.candidate_generation


def max_results(cfg: IndexConfig) -> int | None:
    """The most passages a search returns per question: a binary kind reranks its l candidates only; None: as
    many as asked."""
    return cfg.num_candidates if kind_of(cfg).binary and cfg.candidate_generation else None
