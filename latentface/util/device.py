"""Device names as users type them (``auto``, ``cpu``, ``cuda``, ``cuda:1``) -> ``torch.device``."""

from __future__ import annotations

import torch

from latentface.errors import LatentfaceError


class DeviceError(LatentfaceError, ValueError):
    """A device that does not exist here."""


def resolve_device(name: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``auto``/None -> this process's GPU when there is one, else the CPU; ``cuda`` -> ``cuda:local_rank``."""
    if isinstance(name, torch.device):
        name = str(name)
    if name in (None, "", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: CUDA is not available here; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device
