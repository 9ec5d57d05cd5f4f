"""Anchor layouts for RetinaFace, generated vectorised and cached per input size.

An anchor is (cx, cy, w, h) in input-image pixels. The order is (level, y, x, anchor),
the order in which :mod:`latentface.model.heads` flattens its outputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class AnchorLayout:
    """Which pyramid levels carry anchors and which anchor shapes each level has.

    ``sizes[i]`` are the square-equivalent sizes (pixels) for ``levels[i]`` (stride 2**level);
    ``ratios`` are width/height ratios applied to every size, so a location holds
    ``len(sizes[i]) * len(ratios)`` anchors.
    """

    levels: tuple[int, ...]
    sizes: tuple[tuple[float, ...], ...]
    ratios: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        if len(self.levels) != len(self.sizes):
            raise ValueError(f"anchor layout: {len(self.levels)} levels but {len(self.sizes)} size lists")
        counts = {len(s) * len(self.ratios) for s in self.sizes}
        if len(counts) != 1:
            raise ValueError("anchor layout: every level must hold the same number of anchors per location")

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(2**level for level in self.levels)

    @property
    def per_location(self) -> int:
        return len(self.sizes[0]) * len(self.ratios)

    def grid_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Feature-map size of each level for an input image of ``height`` x ``width`` pixels."""
        return [(math.ceil(height / s), math.ceil(width / s)) for s in self.strides]

    def count(self, height: int, width: int) -> int:
        return sum(h * w for h, w in self.grid_sizes(height, width)) * self.per_location

    def generate(self, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Anchors [A, 4] (cx, cy, w, h) for an input image of ``height`` x ``width`` pixels."""
        return _generate(self, int(height), int(width)).to(device)


def _octaves(base: float) -> tuple[float, ...]:
    return tuple(base * 2 ** (k / 3) for k in range(3))


PRESETS: dict[str, AnchorLayout] = {
    # The RetinaFace paper: P2..P6, sizes 16*2^(l-2) x {2^0, 2^(1/3), 2^(2/3)}, ratio 1.
    "default": AnchorLayout(levels=(2, 3, 4, 5, 6), sizes=tuple(_octaves(16 * 2 ** (l - 2)) for l in range(2, 7))),
    # Six per location: base 8, three octave scales, width/height ratios 0.5 and 1.
    "six": AnchorLayout(
        levels=(2, 3, 4, 5, 6), sizes=tuple(_octaves(8 * 2 ** (l - 2)) for l in range(2, 7)), ratios=(0.5, 1.0)
    ),
    # The common public RetinaFace configuration: P3..P5 with two square anchors each.
    "three_level": AnchorLayout(levels=(3, 4, 5), sizes=((16.0, 32.0), (64.0, 128.0), (256.0, 512.0))),
}


def get_layout(layout: str | AnchorLayout) -> AnchorLayout:
    if isinstance(layout, AnchorLayout):
        return layout
    try:
        return PRESETS[layout]
    except KeyError:
        raise ValueError(f"unknown anchor layout {layout!r}; choose one of {sorted(PRESETS)}") from None


@lru_cache(maxsize=32)
def _generate(layout: AnchorLayout, height: int, width: int) -> torch.Tensor:
    # Per location: every size with every ratio, w = s*sqrt(r), h = s/sqrt(r).
    ratios = torch.tensor(layout.ratios, dtype=torch.float64)
    per_level = []
    for stride, sizes, (gh, gw) in zip(layout.strides, layout.sizes, layout.grid_sizes(height, width)):
        s = torch.tensor(sizes, dtype=torch.float64)
        wh = torch.stack(
            [(s[:, None] * ratios.sqrt()[None]).flatten(), (s[:, None] / ratios.sqrt()[None]).flatten()], dim=1
        )  # [n, 2]
        ys, xs = torch.meshgrid(
            (torch.arange(gh, dtype=torch.float64) + 0.5) * stride,
            (torch.arange(gw, dtype=torch.float64) + 0.5) * stride,
            indexing="ij",
        )
        centres = torch.stack([xs, ys], dim=-1).reshape(-1, 1, 2).expand(-1, len(wh), 2)
        per_level.append(torch.cat([centres, wh.expand(gh * gw, -1, -1)], dim=-1).reshape(-1, 4))
    return torch.cat(per_level).float()
