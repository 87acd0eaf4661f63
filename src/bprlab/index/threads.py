"""How many CPU threads a search uses (`index.threads`), for faiss's OpenMP pool and the numba kernels alike, and
one BLAS thread for the small products a search makes besides its kernels."""

from __future__ import annotations

import contextlib
from functools import lru_cache
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


@lru_cache(maxsize=1)
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # inspecting the loaded libraries costs milliseconds: once per process


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread inside the block: a (32 x D) by (D x b) product is microseconds of work, and a
    multi-threaded BLAS waking its threads beside numba's (or another process's) can take a hundred times that."""
    with _blas().limit(limits=1, user_api="blas"):
        yield
