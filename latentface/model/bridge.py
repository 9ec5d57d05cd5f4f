"""Bridges: lift a stride-16 latent [C, H, W] to ResNet layer1's output [c1, 4H, 4W] (stride 4).

The backbone then continues from layer2 as if it had run its stem and layer1 on pixels.
Cost at 640x640 (latent 256x40x40, c1 = 256, as for ResNet-50) is the design constraint:
the ResNet-50 stem + layer1 that the bridge replaces cost about 6.4 GMACs.
"""
from __future__ import annotations

from torch import nn

from latentface.model.layers import conv_bn


class BilinearBridge(nn.Sequential):
    """The seed design: x4 bilinear upsampling, then conv3x3-BN-ReLU at stride 4 (~15 GMACs for R50)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False),
            conv_bn(in_channels, out_channels, 3),
        )


class PixelShuffleBridge(nn.Sequential):
    """A learned per-cell upsampler: 1x1 conv to 16*c1 channels, PixelShuffle(4), BN-ReLU (~1.7 GMACs)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels * 16, 1, bias=False),
            nn.PixelShuffle(4),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ContextShuffleBridge(nn.Sequential):
    """Spatial context at latent resolution before the learned upsampling.

    A 3x3 conv over neighbouring latent cells (cheap at stride 16) lets each output pixel see
    the cells around it, which a face spanning a cell border needs; a 1x1 conv + PixelShuffle(4)
    then lays the result out at stride 4 (~1.3 GMACs for R50 with width 128).
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 128):
        super().__init__(
            conv_bn(in_channels, width, 3),
            nn.Conv2d(width, out_channels * 16, 1, bias=False),
            nn.PixelShuffle(4),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


BRIDGES: dict[str, type[nn.Module]] = {
    "bilinear": BilinearBridge,
    "pixelshuffle": PixelShuffleBridge,
    "context": ContextShuffleBridge,
}


def build_bridge(name: str, in_channels: int, out_channels: int) -> nn.Module:
    try:
        cls = BRIDGES[name]
    except KeyError:
        raise ValueError(f"unknown bridge {name!r}; choose one of {sorted(BRIDGES)}") from None
    return cls(in_channels, out_channels)
