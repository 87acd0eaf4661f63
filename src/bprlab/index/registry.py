"""Which class implements each index kind; what each kind is built from, reads and names is
`bprlab.config.index_kinds`. Implementations are imported when an index is made (the binary kinds bring numba)."""

from __future__ import annotations

import importlib

from bprlab.config.enums import IndexKind
from bprlab.config.index_kinds import kind_of
from bprlab.config.schema import IndexConfig

DENSE = "bprlab.index.dense:FaissIndex"
BINARY = "bprlab.index.binary:BinaryIndex"
IMPLEMENTATIONS = {
    IndexKind.flat: DENSE, IndexKind.binary_flat: BINARY, IndexKind.binary_hash: BINARY,
    IndexKind.binary_pca: "bprlab.index.reduced:ReducedBinaryIndex", IndexKind.lsh: DENSE, IndexKind.pq: DENSE,
    IndexKind.int8: DENSE, IndexKind.rabitq: DENSE, IndexKind.hnsw: DENSE, IndexKind.factory: DENSE,
    IndexKind.bm25: "bprlab.index.bm25:BM25Index",
}


def implementation(cfg: IndexConfig | IndexKind) -> type:
    module, name = IMPLEMENTATIONS[kind_of(cfg).kind].split(":")
    return getattr(importlib.import_module(module), name)
