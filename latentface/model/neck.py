"""FPN (P2..P6) and SSH context modules, shared by the latent and RGB detectors."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from latentface.model.layers import conv_bn, separable_conv_bn


def _leaky(out_channels: int) -> float:
    # RetinaFace's rule: a small leak on thin necks, plain ReLU on wide ones.
    return 0.1 if out_channels <= 64 else 0.0


class FPN(nn.Module):
    """Feature pyramid over backbone maps ``C{l-1}`` -> ``P{l}``; ``P6`` is a stride-2 conv on C4.

    ``in_channels[l]`` is the channel count of the backbone map feeding level ``l`` (2..5).
    ``light_levels``: levels whose 3x3 merge conv is depthwise-separable (P2 at stride 4 holds
    most of the neck's multiply-adds).
    """

    def __init__(
        self,
        in_channels: dict[int, int],
        out_channels: int,
        levels: tuple[int, ...],
        light_levels: tuple[int, ...] = (),
    ):
        super().__init__()
        leaky = _leaky(out_channels)
        self.levels = tuple(sorted(levels))
        self.pyramid = tuple(level for level in self.levels if level <= 5)
        if not self.pyramid or self.levels != tuple(range(self.levels[0], self.levels[-1] + 1)):
            raise ValueError(f"FPN levels must be consecutive and include one of P2..P5, got {levels}")
        self.lateral = nn.ModuleDict(
            {f"P{level}": conv_bn(in_channels[level], out_channels, 1, leaky=leaky) for level in self.pyramid}
        )
        self.merge = nn.ModuleDict(
            {
                f"P{level}": (separable_conv_bn if level in light_levels else conv_bn)(
                    out_channels, out_channels, 3, leaky=leaky
                )
                for level in self.pyramid[:-1]
            }
        )
        self.p6 = conv_bn(in_channels[5], out_channels, 3, stride=2, leaky=leaky) if 6 in self.levels else None

    def forward(self, c: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        p: dict[str, torch.Tensor] = {}
        top = None
        for level in reversed(self.pyramid):
            lateral = self.lateral[f"P{level}"](c[f"C{level - 1}"])
            if top is not None:
                lateral = self.merge[f"P{level}"](lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest"))
            p[f"P{level}"] = top = lateral
        if self.p6 is not None:
            p["P6"] = self.p6(c["C4"])
        return OrderedDict((f"P{level}", p[f"P{level}"]) for level in self.levels)


class SSH(nn.Module):
    """Single Stage Headless context module: parallel 3x3, 5x5 and 7x7 receptive fields (as stacked 3x3s).

    ``separable``: depthwise-separable 3x3s, the same receptive fields for about a seventh of
    the multiply-adds (for the stride-4 level of a light neck).
    """

    def __init__(self, channels: int, separable: bool = False):
        super().__init__()
        if channels % 4:
            raise ValueError(f"SSH needs a channel count divisible by 4, got {channels}")
        leaky = _leaky(channels)
        q = channels // 4
        conv = separable_conv_bn if separable else conv_bn
        self.conv3 = conv(channels, channels // 2, 3, leaky=None)
        self.conv5_1 = conv(channels, q, 3, leaky=leaky)
        self.conv5_2 = conv(q, q, 3, leaky=None)
        self.conv7_2 = conv(q, q, 3, leaky=leaky)
        self.conv7_3 = conv(q, q, 3, leaky=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5 = self.conv5_1(x)
        return F.relu(torch.cat([self.conv3(x), self.conv5_2(c5), self.conv7_3(self.conv7_2(c5))], dim=1))
