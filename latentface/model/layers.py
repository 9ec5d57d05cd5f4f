"""Small building blocks shared by the bridge, neck and heads."""
from __future__ import annotations

from torch import nn


def conv_bn(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, leaky: float | None = 0.0) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + (Leaky)ReLU; ``leaky=None`` leaves out the activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if leaky is not None:
        layers.append(nn.LeakyReLU(leaky, inplace=True) if leaky > 0 else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
