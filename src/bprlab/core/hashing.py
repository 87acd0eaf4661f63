"""The hash layer (docs/method.md#hash-layer): sign at evaluation, a smooth relaxation during training.

Every function takes its state as arguments; `beta` comes from `hash_beta(step, gamma)`, which the
LightningModule evaluates at `self.global_step`, so a resumed run continues the schedule where it stopped.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bprlab.config.enums import Estimator
from bprlab.errors import InputError


def hash_beta(step: int, gamma: float) -> float:
    """HashNet's continuation schedule, beta = sqrt(1 + gamma * step), step = optimizer steps taken.

    Cao et al., "HashNet: Deep Learning to Hash by Continuation" (ICCV 2017), thuml/HashNet
    pytorch/src/network.py at 55bcaaa; BPR uses gamma = 0.1 on the optimizer step and never resets it
    (studio-ousia/bpr, bpr/biencoder.py, `convert_to_binary_code`, at af29763).
    """
    if step < 0 or gamma < 0:
        raise ValueError(f"hash_beta needs step >= 0 and gamma >= 0, got step={step}, gamma={gamma}")
    return math.sqrt(1.0 + gamma * step)


def sign_code(emb: torch.Tensor) -> torch.Tensor:
    """sign(e) in {-1, +1}, with 0 mapped to +1 (a 0 coordinate would otherwise drop out of every score)."""
    return torch.where(emb >= 0, 1.0, -1.0).to(emb.dtype)


def scaled_tanh(emb: torch.Tensor, beta: float) -> torch.Tensor:
    return torch.tanh(beta * emb)


def straight_through_sign(emb: torch.Tensor) -> torch.Tensor:
    """Forward: sign(e). Backward: the gradient of tanh(e), unscaled, as the official BPR code's STE ablation
    does (studio-ousia/bpr, bpr/biencoder.py at af29763)."""
    relaxed = torch.tanh(emb)
    return relaxed + (sign_code(emb) - relaxed).detach()


def relaxed_code(emb: torch.Tensor, estimator: Estimator, beta: float, fixed_beta: float = 1.0) -> torch.Tensor:
    """The training-time stand-in for sign(e) chosen by `hash.estimator`."""
    if estimator is Estimator.scaled_tanh:
        return scaled_tanh(emb, beta)
    if estimator is Estimator.ste:
        return straight_through_sign(emb)
    if estimator is Estimator.fixed:
        return scaled_tanh(emb, fixed_beta)
    raise ValueError(f"unknown hash estimator {estimator!r}")


def pack_codes(emb: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N, d) float -> (N, d/8) uint8: bit 1 where e >= 0, numpy packbits (big-endian) order."""
    if isinstance(emb, torch.Tensor):
        emb = emb.detach().cpu().numpy()
    if emb.ndim != 2 or emb.shape[1] % 8:
        raise ValueError(f"pack_codes expects (N, d) with d a multiple of 8, got {emb.shape}")
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():  # NaN >= 0 is False: a broken vector would become a plausible all-zero code
        raise InputError(f"vectors to sign: {int((~finite).sum())} of {len(emb)} are not finite (NaN or inf); the "
                         "weights that made them are broken (train again: `bprlab train <experiment.yaml> --force`)")
    return np.packbits(emb >= 0, axis=1)


def unpack_codes(codes: np.ndarray, dim: int | None = None) -> np.ndarray:
    """(..., d/8) uint8 -> (..., d) float32 in {-1, +1}."""
    bits = np.unpackbits(codes, axis=-1, count=dim)
    return bits.astype(np.float32) * 2.0 - 1.0
