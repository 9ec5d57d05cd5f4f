"""Bridges: lift a stride-16 latent [C, H, W] to ResNet layer1's output [c1, 4H, 4W] (stride 4).

The backbone then continues from layer2 as if it had run its stem and layer1 on pixels.
Cost at 640x640 (latent 256x40x40, c1 = 256, as for ResNet-50) is the design constraint:
the ResNet-50 stem + layer1 that the bridge replaces cost about 6.4 GMACs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from latentface.codec import dct
from latentface.model.layers import conv_bn


class BilinearBridge(nn.Sequential):
    """The original design: x4 bilinear upsampling, then conv3x3-BN-ReLU at stride 4 (~15 GMACs for R50)."""

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


class ContextDWBridge(ContextShuffleBridge):
    """:class:`ContextShuffleBridge` plus a depthwise 3x3 conv at stride 4 (BN-ReLU).

    The PixelShuffle output is built cell by cell, so neighbouring stride-4 pixels in two
    different latent cells come from different weights; a depthwise 3x3 mixes them across
    the cell border for c1*9 multiply-adds per pixel (~0.06 GMACs for R50).
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 128):
        super().__init__(in_channels, out_channels, width)
        self.append(nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels, bias=False))
        self.append(nn.BatchNorm2d(out_channels))
        self.append(nn.ReLU(inplace=True))


def dct_synthesis_basis(in_channels: int = 256) -> torch.Tensor | None:
    """The built-in ``dct`` codec's inverse transform as a 1x1 conv + PixelShuffle(4).

    Returns W [48*16, in_channels] with ``PixelShuffle(4)(conv1x1(latent, W))`` = the decoded
    image in space-to-depth form at stride 4: channel ``plane*16 + dy*4 + dx`` at stride-4 pixel
    (Y, X) is centred Y/Cb/Cr at pixel (4Y+dy, 4X+dx), divided by 64 to keep values O(1). Luma
    is exact; chroma is upsampled within each cell (the decoder interpolates across cells).
    None when ``in_channels`` is not the codec's 256: the latent is then not this codec's.
    """
    if in_channels != dct.CHANNELS:
        return None
    freqs = dct.channel_frequencies()
    d16, d8 = dct._dct_matrix(16).astype(np.float64), dct._dct_matrix(8).astype(np.float64)
    pixels = np.zeros((3, 16, 16, in_channels))  # plane, y, x <- channel
    for k, (u, v) in enumerate(freqs):
        if k < dct.LUMA_CHANNELS:
            plane, d, scale = 0, d16, 16.0
        else:
            plane, d, scale = 1 + (k - dct.LUMA_CHANNELS) // dct.CHROMA_CHANNELS_EACH, d8, 8.0
        block = np.outer(d[u], d[v]) * scale  # stored value 1 -> coefficient `scale` -> pixels
        if block.shape[0] == 8:
            block = block.repeat(2, 0).repeat(2, 1)
        pixels[plane, :, :, k] = block
    # [plane, i, dy, j, dx, k] -> output channel (plane*16 + dy*4 + dx)*16 + i*4 + j
    w = pixels.reshape(3, 4, 4, 4, 4, in_channels).transpose(0, 2, 4, 1, 3, 5)
    return torch.from_numpy(w.reshape(48 * 16, in_channels) / 64.0).float()


class CodecBridge(nn.Module):
    """Decode to pixels (space-to-depth at stride 4), then a stem-like 3x3 conv there.

    ``decode`` (1x1 conv + PixelShuffle(4)) starts as the built-in ``dct`` codec's inverse
    transform whenever the latent has that codec's 256 channels: on the codec's own latents the
    network then sees the pixel layout of every cell from the first step instead of having to
    learn it. Other channel counts start random. For latents of any other codec the basis means
    nothing; training replaces it (:mod:`latentface.training.bridge_init`) by a ridge fit of the
    same pixel layout on training images (:mod:`latentface.model.warm_start`), or by a random
    start where there are none. A 3x3 conv over the 4x4
    pixel patches (12x12 pixels, across cell borders) and a 1x1 conv give layer1's shape
    (~1.44 GMACs for R50, ~1.02 for R18/34).
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 64):
        super().__init__()
        self.decode = nn.Conv2d(in_channels, 48 * 16, 1, bias=True)
        self.shuffle = nn.PixelShuffle(4)
        self.stem = conv_bn(48, width, 3)
        self.project = conv_bn(width, out_channels, 1) if out_channels != width else nn.Identity()
        basis = dct_synthesis_basis(in_channels)
        if basis is not None:
            with torch.no_grad():
                self.decode.weight.copy_(basis.reshape_as(self.decode.weight))
                self.decode.bias.zero_()

    @torch.no_grad()
    def set_decode(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """``decode``'s weights: weight [768, in_channels] on the latent as the bridge sees it, bias [768]."""
        self.decode.weight.copy_(weight.reshape_as(self.decode.weight).to(self.decode.weight))
        self.decode.bias.copy_(bias.reshape_as(self.decode.bias).to(self.decode.bias))

    @torch.no_grad()
    def set_dct_synthesis(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """``decode`` = the ``dct`` codec's inverse transform of the raw latent, for inputs normalised by mean/std."""
        basis = dct_synthesis_basis(self.decode.in_channels)
        if basis is None:
            raise ValueError(f"the dct synthesis needs {dct.CHANNELS} latent channels, not {self.decode.in_channels}")
        self.set_decode(basis, torch.zeros(basis.shape[0]))
        self.renormalize(torch.zeros_like(mean), torch.ones_like(std), mean, std)

    def reset_decode(self) -> None:
        """``decode`` back to PyTorch's random initialisation."""
        self.decode.reset_parameters()

    @torch.no_grad()
    def renormalize(
        self, old_mean: torch.Tensor, old_std: torch.Tensor, new_mean: torch.Tensor, new_std: torch.Tensor
    ) -> None:
        """Keep ``decode`` the same function of the raw latent when the model's input normalisation changes."""
        w = self.decode.weight.flatten(1) / old_std[None]  # per raw latent unit
        self.decode.bias.add_(w @ (new_mean - old_mean))
        self.decode.weight.copy_((w * new_std[None]).reshape_as(self.decode.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.stem(self.shuffle(self.decode(x))))


class CodecResBridge(CodecBridge):
    """:class:`CodecBridge` with ResNet-18's layer1 after its stem: two residual blocks at stride 4.

    An RGB model's stride-4 map (C2, which P2 reads for the smallest faces) comes out of a stem
    and layer1's residual blocks; the codec bridge's is one convolution deep. This bridge puts that
    depth back at layer1's own cost (~3.8 GMACs at 640 for the stem's 64 channels), to measure
    what a deeper stride-4 map buys the small faces.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 64, blocks: int = 2):
        super().__init__(in_channels, out_channels, width)
        self.refine = nn.Sequential(*(BasicBlock(width, width) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.refine(self.stem(self.shuffle(self.decode(x)))))


BRIDGES: dict[str, type[nn.Module]] = {
    "bilinear": BilinearBridge,
    "pixelshuffle": PixelShuffleBridge,
    "context": ContextShuffleBridge,
    "context_dw": ContextDWBridge,
    "codec": CodecBridge,
    "codec_res": CodecResBridge,
}


def build_bridge(name: str, in_channels: int, out_channels: int) -> nn.Module:
    try:
        cls = BRIDGES[name]
    except KeyError:
        raise ValueError(f"unknown bridge {name!r}; choose one of {sorted(BRIDGES)}") from None
    return cls(in_channels, out_channels)
