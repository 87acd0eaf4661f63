"""Synthetic passages and questions with a planted positive per question, so a broken search shows as recall.

Float data: passages e_p ~ N(0, I_D); question i = e_p[planted_i] + N(0, I_D). Its planted passage is then its
nearest by inner product and, with ~75% of the signs shared, by far its nearest by Hamming distance too.
Codes only (sizes where float vectors would not fit): uniformly random packed codes; question i's code is its
planted code with 20% of the bits flipped, and e_q is a random magnitude with the signs of that code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bprlab.core.hashing import pack_codes


@dataclass
class Synthetic:
    passages: np.ndarray | None  # (N, D) float32, None for codes-only data
    codes: np.ndarray  # (N, D/8) uint8
    questions: np.ndarray  # (Q, D) float32
    planted: np.ndarray  # (Q,) int64: each question's planted passage row


def float_data(n: int, dim: int, num_questions: int, seed: int = 0, chunk: int = 1 << 17) -> Synthetic:
    rng = np.random.default_rng(seed)
    passages = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):  # chunked: no float64 temporaries the size of the corpus
        passages[start : start + chunk] = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
    planted = rng.choice(n, num_questions, replace=num_questions > n)
    questions = passages[planted] + rng.standard_normal((num_questions, dim), dtype=np.float32)
    codes = np.empty((n, dim // 8), np.uint8)
    for start in range(0, n, chunk):
        codes[start : start + chunk] = pack_codes(passages[start : start + chunk])
    return Synthetic(passages, codes, questions, planted.astype(np.int64))


def code_data(n: int, dim: int, num_questions: int, seed: int = 0, flip: float = 0.2) -> Synthetic:
    rng = np.random.default_rng(seed)
    codes = np.frombuffer(rng.bytes(n * dim // 8), np.uint8).reshape(n, dim // 8)
    planted = rng.choice(n, num_questions, replace=num_questions > n)
    signs = np.unpackbits(codes[planted], axis=1).astype(bool)
    signs ^= rng.random(signs.shape) < flip
    magnitude = np.abs(rng.standard_normal(signs.shape, dtype=np.float32))
    questions = np.where(signs, magnitude, -magnitude).astype(np.float32)
    return Synthetic(None, codes, questions, planted.astype(np.int64))
