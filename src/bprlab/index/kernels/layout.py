"""Packed codes in the blocked layout the CPU kernels scan.

A code of B bytes (numpy packbits order, docs/method.md#hash-layer) is read as W = ceil(B / 8) little-endian 64-bit
words (the last one zero-padded). Rows are grouped in blocks of LANES = 64: block b holds word w of its 64 rows
contiguously, at words[(b * W + w) * LANES : ... + LANES]. One block of one word is then a vector the CPU XORs and
popcounts for 64 rows at once, and a block (64 x 96 bytes for 768 bits) sits in L1 while every question of a batch
is compared with it. Rows past the last code are zero and never returned.

A lone question scans the blocked layout faster than row-major codes (the row-major popcount needs a horizontal
sum per row; `make bench` compares the native scan with faiss's row-major one); a row's words are W cache
lines apart, which the rerank pays for with a prefetching pass (see `lut`). Saved files stay row-major
(`codes.npy`, numpy packbits order): the layout is built when an index is loaded, a chunk at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from bprlab.index.kernels.jit import JIT

LANES = 64  # rows per block; the vectorised popcount loop runs over them. Changing it: clear numba's cache.
U_LANES = np.uint64(LANES)  # the same, for the kernels' unsigned index arithmetic
U0, U1, U2, U3, U4 = (np.uint64(i) for i in range(5))  # unsigned constants: see `hamming`'s module doc
CHUNK_ROWS = 1 << 16  # rows converted at a time (bounds the extra memory of a conversion)


@numba.njit(inline="always", **JIT)
def locate(row, width, blocked):
    """(index of a row's first word, distance between its words) in the blocked layout, or in row-major (N, W)
    words when not `blocked`; unsigned (row >= 0)."""
    r = np.uint64(row)
    if blocked:
        return (r // U_LANES) * width * U_LANES + r % U_LANES, U_LANES
    return r * width, U1


def words_per_code(nbytes: int) -> int:
    return -(-nbytes // 8)


def to_words(codes: np.ndarray) -> np.ndarray:
    """(N, B) uint8 -> (N, W) uint64 little-endian words (a view when B is a multiple of 8 and the rows are
    contiguous, else a zero-padded copy)."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8 or codes.ndim != 2:
        raise ValueError(f"expected packed codes as a 2-d uint8 array, got {codes.dtype} {codes.shape}")
    n, nbytes = codes.shape
    width = words_per_code(nbytes) * 8
    if width == nbytes and codes.flags.c_contiguous and codes.ctypes.data % 8 == 0:
        return codes.view("<u8").reshape(n, -1)
    padded = np.zeros((n, width), np.uint8)
    padded[:, :nbytes] = codes
    return padded.view("<u8").reshape(n, -1)


@dataclass
class BlockedCodes:
    """Packed passage codes in blocks of 64 rows: the one copy of the codes a native index holds."""

    words: np.ndarray  # (nblocks * W * LANES,) uint64
    ntotal: int
    code_bytes: int

    @property
    def width(self) -> int:
        return words_per_code(self.code_bytes)

    @property
    def nblocks(self) -> int:
        return len(self.words) // (self.width * LANES)

    @property
    def nbytes(self) -> int:
        return self.words.nbytes

    @classmethod
    def from_rows(cls, codes: np.ndarray) -> "BlockedCodes":
        """Row-major (N, B) uint8 codes (an array or a memory map) -> blocked layout, a chunk at a time."""
        n, nbytes = codes.shape
        width = words_per_code(nbytes)
        nblocks = -(-n // LANES)
        words = np.zeros(nblocks * width * LANES, np.uint64)
        grid = words.reshape(nblocks, width, LANES)
        for start in range(0, n, CHUNK_ROWS):  # start is a multiple of LANES
            part = to_words(np.asarray(codes[start : start + CHUNK_ROWS]))  # (c, W)
            b0, rows = start // LANES, len(part)
            full = rows // LANES
            grid[b0 : b0 + full] = part[: full * LANES].reshape(full, LANES, width).transpose(0, 2, 1)
            if rows % LANES:
                grid[b0 + full, :, : rows % LANES] = part[full * LANES :].T
        return cls(words, n, nbytes)

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), B) uint8 row-major codes of the given rows."""
        rows = np.asarray(rows, dtype=np.int64)
        grid = self.words.reshape(self.nblocks, self.width, LANES)
        words = np.ascontiguousarray(grid[rows // LANES, :, rows % LANES])  # (n, W)
        return words.view(np.uint8).reshape(len(rows), -1)[:, : self.code_bytes]

    def iter_rows(self, chunk: int = CHUNK_ROWS):
        """Row-major codes in row order, a chunk at a time (saving, exporting: never a full second copy)."""
        for start in range(0, self.ntotal, chunk):
            yield self.rows(np.arange(start, min(self.ntotal, start + chunk)))
