"""Anchor layouts for RetinaFace, generated vectorised and cached per input size.

An anchor is (cx, cy, w, h) in input-image pixels. The order is (level, y, x, anchor),
the order in which :mod:`latentface.model.heads` flattens its outputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from latentface.boxes import VARIANCES


@dataclass(frozen=True)
class AnchorLayout:
    """Which pyramid levels carry anchors and which anchor shapes each level has.

    ``sizes[i]`` are the square-equivalent sizes (pixels) for ``levels[i]`` (stride 2**level);
    ``ratios`` are width/height ratios applied to every size, so a location holds
    ``len(sizes[i]) * len(ratios)`` anchors. ``variances`` scale the box and landmark offsets
    (:mod:`latentface.boxes`): they belong to the layout because the heads learned them with it.
    """

    levels: tuple[int, ...]
    sizes: tuple[tuple[float, ...], ...]
    ratios: tuple[float, ...] = (1.0,)
    variances: tuple[float, float] = VARIANCES

    def __post_init__(self):
        if len(self.variances) != 2 or min(self.variances) <= 0:
            raise ValueError(f"anchor layout: variances are two positive numbers (centre, size), got {self.variances}")
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

    def levels_of(self, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Position in ``levels`` [A] (long) of each anchor :meth:`generate` makes: adaptive matching
        picks its candidates per pyramid level."""
        counts = [h * w * self.per_location for h, w in self.grid_sizes(int(height), int(width))]
        return torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(device)

    def to_dict(self) -> dict[str, Any]:
        """The layout written out (lists of plain numbers), as model configs and checkpoints store it."""
        return {
            "levels": list(self.levels),
            "strides": list(self.strides),
            "sizes": [list(s) for s in self.sizes],
            "ratios": list(self.ratios),
            "variances": list(self.variances),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnchorLayout:
        """Inverse of :meth:`to_dict`; ``strides`` (optional) must be ``2 ** level`` of each level."""
        unknown = set(data) - {"levels", "strides", "sizes", "ratios", "variances"}
        if unknown or "levels" not in data or "sizes" not in data:
            raise ValueError(
                f"not an anchor layout (needs levels and sizes; unknown keys {sorted(unknown)}): {dict(data)}"
            )
        try:
            layout = cls(
                levels=tuple(int(v) for v in data["levels"]),
                sizes=tuple(tuple(float(v) for v in s) for s in data["sizes"]),
                ratios=tuple(float(v) for v in data.get("ratios", (1.0,))),
                variances=tuple(float(v) for v in data.get("variances", VARIANCES)),
            )
        except TypeError as exc:
            raise ValueError(f"not an anchor layout ({exc}): {dict(data)}") from None
        if "strides" in data and list(data["strides"]) != list(layout.strides):
            raise ValueError(
                f"anchor layout: strides {list(data['strides'])} are not 2**level of levels {list(layout.levels)}"
            )
        return layout


def _octaves(base: float) -> tuple[float, ...]:
    return tuple(base * 2 ** (k / 3) for k in range(3))


PRESETS: dict[str, AnchorLayout] = {
    # The RetinaFace paper: P2..P6, sizes 16*2^(l-2) x {2^0, 2^(1/3), 2^(2/3)}, ratio 1.
    "default": AnchorLayout(
        levels=(2, 3, 4, 5, 6), sizes=tuple(_octaves(16 * 2 ** (level - 2)) for level in range(2, 7))
    ),
    # Six per location: base 8, three octave scales, width/height ratios 0.5 and 1.
    "six": AnchorLayout(
        levels=(2, 3, 4, 5, 6), sizes=tuple(_octaves(8 * 2 ** (level - 2)) for level in range(2, 7)), ratios=(0.5, 1.0)
    ),
    # The common public RetinaFace configuration: P3..P5 with two square anchors each.
    "three_level": AnchorLayout(levels=(3, 4, 5), sizes=((16.0, 32.0), (64.0, 128.0), (256.0, 512.0))),
}


def get_layout(layout: str | AnchorLayout | Mapping[str, Any]) -> AnchorLayout:
    """A preset name, a layout, or a layout written out by :meth:`AnchorLayout.to_dict` -> the layout."""
    if isinstance(layout, AnchorLayout):
        return layout
    if isinstance(layout, Mapping):
        return AnchorLayout.from_dict(layout)
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
