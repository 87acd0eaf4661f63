"""Mixed precision keeps the hash layer and the losses in float32 (`train.precision: 16-mixed | bf16-mixed`).

The encoders run under Lightning's autocast; tanh(beta e) with beta growing to ~sqrt(1 + 0.1 * 40 epochs of steps)
and the margin and cross-entropy losses over a 128 x 256 score matrix are computed from float32 copies of the
embeddings with autocast off, as GradCache and DPR's fp16 path do for the similarity scores.
"""

from __future__ import annotations

import torch


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32, or as it is where it is wider (a float64 model keeps its precision through the loss)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def loss_in_fp32(loss_fn, question: torch.Tensor, passage: torch.Tensor, positive_idx: torch.Tensor, beta: float):
    with torch.autocast(device_type=question.device.type, enabled=False):
        return loss_fn(at_least_fp32(question), at_least_fp32(passage), positive_idx, beta=beta)
