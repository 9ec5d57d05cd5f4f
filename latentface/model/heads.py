"""Per-level class / box / landmark heads, flattened in (level, y, x, anchor) order like the anchors."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class HeadOutputs(NamedTuple):
    logits: torch.Tensor  # [B, A, 2] background / face
    boxes: torch.Tensor  # [B, A, 4] box offsets (see latentface.boxes)
    landmarks: torch.Tensor  # [B, A, 10] landmark offsets


class Heads(nn.Module):
    def __init__(self, channels: int, num_levels: int, anchors_per_location: int):
        super().__init__()
        a = anchors_per_location
        self.cls = nn.ModuleList(nn.Conv2d(channels, a * 2, 1) for _ in range(num_levels))
        self.box = nn.ModuleList(nn.Conv2d(channels, a * 4, 1) for _ in range(num_levels))
        self.landmark = nn.ModuleList(nn.Conv2d(channels, a * 10, 1) for _ in range(num_levels))

    @staticmethod
    def _flatten(maps: list[torch.Tensor], k: int) -> torch.Tensor:
        return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, k) for m in maps], dim=1)

    def forward(self, features: list[torch.Tensor]) -> HeadOutputs:
        return HeadOutputs(
            self._flatten([h(f) for h, f in zip(self.cls, features)], 2),
            self._flatten([h(f) for h, f in zip(self.box, features)], 4),
            self._flatten([h(f) for h, f in zip(self.landmark, features)], 10),
        )
