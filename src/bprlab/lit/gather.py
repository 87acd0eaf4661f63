"""Cross-device negatives (docs/method.md#losses): every rank sees the global batch; only its own slot carries gradient.

As in DPR and the official BPR code (studio-ousia/bpr, bpr/biencoder.py, `_compute_loss`, at af29763): gather the
other ranks' embeddings without gradient, put the local tensor back in its slot, and compute the full global loss on
every rank. DDP then averages the ranks' gradients, so the update is the single-process gradient of the same global
batch divided by the world size (Adam is nearly scale-free; gradient clipping is not: docs/method.md#losses)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def gather_with_local_grad(local: torch.Tensor) -> torch.Tensor:
    """(n, ...) on each rank -> (world * n, ...) in rank order; the local slot is `local` itself."""
    world, rank = _world()
    if world == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local.detach().contiguous())
    parts[rank] = local
    return torch.cat(parts)


def gather_positive_idx(positive_idx: torch.Tensor, num_local_passages: int) -> torch.Tensor:
    """Each rank's positive columns, shifted to where its passages sit in the gathered passage matrix."""
    world, _ = _world()
    if world == 1:
        return positive_idx
    parts = [torch.empty_like(positive_idx) for _ in range(world)]
    dist.all_gather(parts, positive_idx.contiguous())
    return torch.cat([part + r * num_local_passages for r, part in enumerate(parts)])
