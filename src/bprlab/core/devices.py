"""Which device a computation runs on: one rule for the question encoder and the search kernels."""

from __future__ import annotations

from enum import Enum

import torch

from bprlab.errors import ConfigError


def resolve_device(device: str | Enum | torch.device | None, key: str = "device") -> torch.device:
    """`auto` (or None): the GPU when torch sees one, else the CPU. Asking for cuda where no CUDA device is visible
    is a config error naming `key`, not a failure deep inside torch."""
    name = getattr(device, "value", device)
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(name)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config: {key}={name} but no CUDA device is visible")
    return resolved
