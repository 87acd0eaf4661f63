"""How many CPU threads a search uses (`index.threads`), for faiss's OpenMP pool and the numba kernels alike."""

from __future__ import annotations

import contextlib
from typing import Iterator

import faiss


@contextlib.contextmanager
def faiss_threads(n: int | None) -> Iterator[None]:
    """faiss's OpenMP thread count inside the block (None: leave it as it is)."""
    before = faiss.omp_get_max_threads()
    if n:
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
