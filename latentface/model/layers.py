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


def separable_conv_bn(
    in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, leaky: float | None = 0.0
) -> nn.Sequential:
    """Depthwise conv-BN-ReLU then pointwise :func:`conv_bn`: a cheap stand-in for a full ``conv_bn``."""
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, kernel, stride=stride, padding=kernel // 2, groups=in_ch, bias=False),
        nn.BatchNorm2d(in_ch),
        nn.ReLU(inplace=True),
        conv_bn(in_ch, out_ch, 1, leaky=leaky),
    )
