"""The BPR search as torch operations, for a CUDA device (also runs, and is tested, on CPU tensors).

Same results as the CPU kernels: candidates are the l nearest codes by (Hamming distance, row) - one int64 key
distance * N + row makes `topk` exact and deterministic - and the rerank is the table lookup of `lut`, with equal
scores keeping candidate order (a stable sort). torch has no popcount operator: the count is the classic SWAR
bit trick on int64 words (shifts and masks; the arithmetic right shift is harmless because every shifted value is
masked, and the final multiply-and-shift counts at most 64 < 128).
"""

from __future__ import annotations

import numpy as np
import torch

from bprlab.index.kernels.layout import to_words

_M1, _M2, _M4, _H01 = 0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x0101010101010101
BLOCK_ELEMENTS = 1 << 25  # question x row x word elements per step (a few hundred MB of int64 temporaries)


def popcount(x: torch.Tensor) -> torch.Tensor:
    """Bits set in each int64 element."""
    x = x - ((x >> 1) & _M1)
    x = (x & _M2) + ((x >> 2) & _M2)
    x = (x + (x >> 4)) & _M4
    return (x * _H01) >> 56


class TorchCodes:
    """Packed codes as an (N, W) int64 tensor on `device` (the bit pattern of the little-endian words)."""

    def __init__(self, codes: np.ndarray, device: str | torch.device):
        self.code_bytes = codes.shape[1]
        self.words = torch.from_numpy(to_words(codes).view(np.int64).copy()).to(device)
        self.device = self.words.device

    @property
    def ntotal(self) -> int:
        return self.words.shape[0]

    def question_words(self, question_codes: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(to_words(question_codes).view(np.int64).copy()).to(self.device)


def hamming_top_l(codes: TorchCodes, question_codes: np.ndarray, l: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, l) int32 distances and int64 rows, ordered by (distance, row); row -1 where fewer than l codes."""
    queries = codes.question_words(question_codes)  # (Q, W)
    nq, width = queries.shape
    n = codes.ntotal
    best = torch.empty((nq, 0), dtype=torch.int64, device=codes.device)
    step = max(1, BLOCK_ELEMENTS // max(1, nq * width))
    for start in range(0, n, step):
        block = codes.words[start : start + step]  # (B, W)
        dist = popcount(queries[:, None, :] ^ block[None]).sum(-1)  # (Q, B)
        keys = dist * n + torch.arange(start, start + len(block), device=codes.device)
        keys = torch.cat([best, keys], dim=1)
        best = torch.topk(keys, min(l, keys.shape[1]), dim=1, largest=False, sorted=True).values
    dist = torch.full((nq, l), width * 64 + 1, dtype=torch.int64)
    rows = torch.full((nq, l), -1, dtype=torch.int64)
    found = best.cpu()
    dist[:, : found.shape[1]] = found // max(n, 1)
    rows[:, : found.shape[1]] = found % max(n, 1)
    return dist.numpy().astype(np.int32), rows.numpy()


def _tables(question_emb: torch.Tensor) -> torch.Tensor:
    """(Q, D/8, 256) T_q: the signed sum of each byte's 8 dimensions for every byte value (packbits order)."""
    values = torch.arange(256, device=question_emb.device)
    shifts = torch.arange(7, -1, -1, device=question_emb.device)
    signs = ((values[None, :] >> shifts[:, None]) & 1).to(question_emb.dtype) * 2 - 1  # (8, 256)
    nq, dim = question_emb.shape
    return question_emb.view(nq, dim // 8, 8) @ signs


def rerank_top_k(codes: TorchCodes, question_emb: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best candidates of each question by <e_q, sign(e_p)> (table lookup); stable among equal scores."""
    emb = torch.from_numpy(np.ascontiguousarray(question_emb, dtype=np.float32)).to(codes.device)
    cand = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)).to(codes.device)  # (Q, l)
    nq, depth = cand.shape
    nbytes = emb.shape[1] // 8
    code_bytes = codes.words[cand.clamp(min=0)].view(torch.uint8)[..., :nbytes].long()  # (Q, l, D/8)
    table = _tables(emb)  # (Q, D/8, 256)
    scores = table[:, None].expand(nq, depth, nbytes, 256).gather(3, code_bytes[..., None]).squeeze(-1).sum(-1)
    scores = torch.where(cand >= 0, scores, torch.full_like(scores, -torch.inf))
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    top_scores = scores.gather(1, order)
    top_rows = torch.where(torch.isinf(top_scores), -1, cand.gather(1, order))
    return _pad(top_scores.cpu().numpy(), top_rows.cpu().numpy(), k)


def score_all_top_k(codes: TorchCodes, question_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best codes of the whole index by <e_q, sign(e_p)>: blocks of codes unpacked to +-1, one matmul each
    (exact for +-1 codes up to float rounding); equal scores ordered by row."""
    emb = torch.from_numpy(np.ascontiguousarray(question_emb, dtype=np.float32)).to(codes.device)
    nq, dim = emb.shape
    shifts = torch.arange(7, -1, -1, device=codes.device)
    best_scores = torch.empty((nq, 0), device=codes.device)
    best_rows = torch.empty((nq, 0), dtype=torch.int64, device=codes.device)
    step = max(1, BLOCK_ELEMENTS // dim)
    for start in range(0, codes.ntotal, step):
        block = codes.words[start : start + step].view(torch.uint8)[:, : dim // 8]  # (B, D/8)
        signs = ((block[..., None].long() >> shifts) & 1).reshape(len(block), dim).to(emb.dtype) * 2 - 1
        scores = torch.cat([best_scores, emb @ signs.T], dim=1)
        rows = torch.cat([best_rows, torch.arange(start, start + len(block), device=codes.device).expand(nq, -1)], 1)
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        best_scores, best_rows = scores.gather(1, order), rows.gather(1, order)
    return _pad(best_scores.cpu().numpy(), best_rows.cpu().numpy(), k)


def _pad(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    missing = k - scores.shape[1]
    if missing > 0:
        scores = np.hstack([scores, np.full((len(scores), missing), -np.inf, np.float32)])
        rows = np.hstack([rows, np.full((len(rows), missing), -1, np.int64)])
    return scores.astype(np.float32), rows.astype(np.int64)
