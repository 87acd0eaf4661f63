"""Hash-table candidate generation with faiss's semantics and the codes held once.

faiss's IndexBinaryHash keys each code on its first b bits and IndexBinaryMultiHash on t disjoint b-bit slices
(slice h starts at bit h * b of the code read as a little-endian bit string); a query probes every bucket whose
key is within `nflip` bit flips of its own, the union of the probed buckets is the shortlist (each code compared
once), and the shortlist's nearest codes by Hamming distance are the candidates. faiss keeps a copy of every code
in its buckets (or a second storage index); here a bucket table is only row ids sorted by key (CSR: sorted keys,
offsets, rows), and the distances are computed on the index's one copy of the codes (`layout.BlockedCodes`).
The share of codes compared per query is reported like faiss's `ndis`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numba
import numpy as np

from bprlab.index.kernels.jit import JIT, popcount64, restore_threads, thread_count, use_threads
from bprlab.index.kernels.layout import LANES, BlockedCodes


def slice_keys(codes: np.ndarray, bits: int, table: int) -> np.ndarray:
    """The b-bit keys of slice `table` of (N, B) uint8 codes, exactly as faiss's BitstringReader reads them: bits
    h * b .. h * b + b - 1 of the code as a little-endian bit string. Read as the 16 bytes from byte (h * b) // 8
    (bytes past the code as zero), two little-endian words, shifted right by (h * b) % 8: a key of 57-64 bits
    that starts inside a byte runs into the ninth byte, which the high word supplies."""
    offset = table * bits
    start, shift = offset // 8, offset % 8
    window = np.zeros((len(codes), 16), np.uint8)
    take = codes[:, start : start + 16]
    window[:, : take.shape[1]] = take
    words = window.view("<u8")  # (N, 2)
    keys = words[:, 0] >> np.uint64(shift)
    if shift:
        keys |= words[:, 1] << np.uint64(64 - shift)
    return keys & np.uint64((1 << bits) - 1) if bits < 64 else keys


@dataclass
class BucketTable:
    keys: np.ndarray  # (K,) uint64: the distinct keys, sorted
    offsets: np.ndarray  # (K + 1,) int64: rows[offsets[i]:offsets[i + 1]] have keys[i]
    rows: np.ndarray  # (N,) int64: row ids grouped by key, ascending within a bucket

    @classmethod
    def build(cls, keys: np.ndarray) -> "BucketTable":
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
        offsets = np.r_[starts, len(keys)].astype(np.int64)
        return cls(sorted_keys[starts], offsets, order.astype(np.int64))

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.offsets.nbytes + self.rows.nbytes


def flip_masks(bits: int, nflip: int) -> np.ndarray:
    """Every b-bit mask with at most nflip bits set (the probed neighbourhood of a key), radius 0 first."""
    masks = [sum(1 << i for i in combo) for r in range(nflip + 1) for combo in combinations(range(bits), r)]
    return np.array(masks, dtype=np.uint64)


@numba.njit(**JIT)
def _find(keys, key):
    """Index of `key` in the sorted `keys`, or -1."""
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(keys) and keys[lo] == key else -1


@numba.njit(**JIT)
def _distance(words, width, row, qwords, qbase):
    at = (row // LANES) * width * LANES + row % LANES
    acc = np.uint64(0)
    for w in range(width):
        acc += popcount64(words[at + w * LANES] ^ qwords[qbase + w])
    return acc


@numba.njit(**JIT)
def _grow(array, size):
    if size < len(array):
        return array
    bigger = np.empty(2 * len(array), array.dtype)
    bigger[: len(array)] = array
    return bigger


@numba.njit(**JIT)
def _nearest(words, width, ntotal, shortlist, count, qwords, qbase, num_candidates, hist, q, out_dist, out_rows):
    """The `num_candidates` nearest of the shortlist by (distance, row): a histogram of the distances gives the cut, and
    only the pairs within it are sorted."""
    dist = np.empty(count, np.int64)
    hist[:] = 0
    for i in range(count):
        dist[i] = _distance(words, width, shortlist[i], qwords, qbase)
        hist[dist[i]] += 1
    num_candidates = min(num_candidates, count)
    below, cut = 0, 0
    while cut < len(hist) and below + hist[cut] < num_candidates:
        below += hist[cut]
        cut += 1
    picked = np.empty(below + (hist[cut] if cut < len(hist) else 0), np.int64)
    at = 0
    for i in range(count):
        if dist[i] <= cut:
            picked[at] = dist[i] * ntotal + shortlist[i]  # one sort orders by (distance, row)
            at += 1
    picked.sort()
    for i in range(num_candidates):
        out_dist[q, i] = picked[i] // ntotal
        out_rows[q, i] = picked[i] % ntotal


@numba.njit(parallel=True, **JIT)
def _probe(words, width, ntotal, qwords, qkeys, table_keys, table_offsets, table_rows, masks, num_candidates, nchunks, bits,
           n_threads):
    """For each question: the shortlist from every table, then its `num_candidates` nearest by (distance, row)."""
    before = use_threads(n_threads)
    nq, ntables = qkeys.shape
    out_dist = np.full((nq, num_candidates), bits + 1, np.int32)
    out_rows = np.full((nq, num_candidates), -1, np.int64)
    scanned = np.zeros(nq, np.int64)
    step = -(-nq // nchunks)
    for c in numba.prange(nchunks):
        seen = np.zeros(ntotal, np.bool_)
        shortlist = np.empty(1024, np.int64)
        hist = np.zeros(bits + 1, np.int64)
        for q in range(c * step, min(nq, (c + 1) * step)):
            count = 0
            for t in range(ntables):
                # each table's arrays taken once: taking one per row cost atomic reference counts per row
                keys, offsets, rows = table_keys[t], table_offsets[t], table_rows[t]
                for m in range(len(masks)):
                    bucket = _find(keys, qkeys[q, t] ^ masks[m])
                    if bucket < 0:
                        continue
                    for i in range(offsets[bucket], offsets[bucket + 1]):
                        row = rows[i]
                        if not seen[row]:
                            seen[row] = True
                            shortlist = _grow(shortlist, count)  # unconditional: a conditional reassignment
                            # of the array inside this prange crashed (numba 0.68: heap corruption)
                            shortlist[count] = row
                            count += 1
            for i in range(count):
                seen[shortlist[i]] = False
            scanned[q] = count
            _nearest(words, width, ntotal, shortlist, count, qwords, q * width, num_candidates, hist, q, out_dist, out_rows)
    restore_threads(before)
    return out_dist, out_rows, scanned


def probe(codes: BlockedCodes, question_words: np.ndarray, question_codes: np.ndarray, tables: list[BucketTable],
          bits: int, masks: np.ndarray, l: int, n_threads: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distances, rows) of each question's l nearest shortlisted codes, and how many codes it compared (on
    n_threads CPU threads, None: all)."""
    qkeys = np.stack([slice_keys(question_codes, bits, t) for t in range(len(tables))], axis=1)
    nq = len(question_words)
    n_threads = thread_count(n_threads)
    nchunks = max(1, min(n_threads, nq))
    return _probe(codes.words, codes.width, codes.ntotal, np.ascontiguousarray(question_words).ravel(), qkeys,
                  numba.typed.List([t.keys for t in tables]), numba.typed.List([t.offsets for t in tables]),
                  numba.typed.List([t.rows for t in tables]), masks, int(l), nchunks, codes.width * 64,
                  n_threads)
