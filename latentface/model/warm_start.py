"""A codec-agnostic warm start for the codec bridge's linear decode (tensors in, weights out).

:class:`~latentface.model.bridge.CodecBridge` starts with ``decode`` (1x1 conv + PixelShuffle(4))
as the built-in ``dct`` codec's inverse transform: its output is the decoded image as centred
YCbCr / 64 in space-to-depth form at stride 4, chroma constant over each 2x2 pixel pair (4:2:0,
as the codec stores it). For any other codec the same target is fitted instead: ridge least
squares of that pixel layout on the latent cell, closed form on the normal equations in float64.
On ``dct`` latents of images the codec represents exactly, the fit is that inverse transform.

The fit sees the latents as the bridge does: normalised by the model's per-channel mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from latentface.codec import dct

#: Pixels per latent cell side, and the bridge's PixelShuffle factor.
CELL, SHUFFLE = 16, 4
#: The decode conv's outputs per latent cell: 3 planes x 16 x 16 pixels.
TARGETS = 3 * CELL * CELL
#: Divisor that keeps the centred YCbCr values O(1) (the ``dct`` synthesis basis uses the same).
PIXEL_SCALE = 64.0
#: Default ridge strength, relative to the mean eigenvalue of the latents' covariance.
RIDGE = 1e-6

_RGB_TO_CENTRED_YCBCR = torch.from_numpy(dct._RGB_TO_CENTRED_YCBCR).double()  # [3, 4]: JPEG's BT.601, Y - 128


def rgb_to_centred_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """RGB pixels (0..255) [N, 3, H, W] -> centred YCbCr [N, 3, H, W], as the ``dct`` codec converts
    (float32, or float64 for float64 input; the fit sums in float64 either way)."""
    dtype = torch.float64 if rgb.dtype == torch.float64 else torch.float32
    m = _RGB_TO_CENTRED_YCBCR.to(rgb.device, dtype)
    return torch.einsum("pc,nchw->nphw", m[:, :3], rgb.to(dtype)) + m[:, 3][None, :, None, None]


def decode_target(ycbcr: torch.Tensor) -> torch.Tensor:
    """What ``decode`` should output for an image: centred YCbCr [N, 3, H, W] (H, W multiples of 16)
    -> [N, 768, H/16, W/16], laid out so that ``PixelShuffle(4)`` twice gives the planes back.

    Luma as it is, chroma averaged over 2x2 pixels and repeated (4:2:0 within the cell), all / 64:
    the values the ``dct`` synthesis basis produces per stride-4 position.
    """
    if ycbcr.ndim != 4 or ycbcr.shape[1] != 3 or ycbcr.shape[2] % CELL or ycbcr.shape[3] % CELL:
        raise ValueError(f"expected YCbCr planes [N, 3, H, W] with H, W multiples of {CELL}, got {list(ycbcr.shape)}")
    luma, chroma = ycbcr[:, :1], ycbcr[:, 1:]
    chroma = F.interpolate(F.avg_pool2d(chroma, 2), scale_factor=2, mode="nearest")
    planes = torch.cat([luma, chroma], 1) / PIXEL_SCALE
    return F.pixel_unshuffle(F.pixel_unshuffle(planes, SHUFFLE), SHUFFLE)


def image_target(rgb: torch.Tensor) -> torch.Tensor:
    """:func:`decode_target` of RGB pixels (0..255) [N, 3, H, W]."""
    return decode_target(rgb_to_centred_ycbcr(rgb))


@dataclass
class RidgeFit:
    """Sums of the normal equations over latent cells, filled image by image (float64)."""

    channels: int
    targets: int = TARGETS

    def __post_init__(self):
        n = self.channels + 1  # the last column is the constant (bias)
        self.xtx = torch.zeros(n, n, dtype=torch.float64)
        self.xty = torch.zeros(n, self.targets, dtype=torch.float64)
        self.cells = 0
        self.images = 0

    def add(self, latent: torch.Tensor, target: torch.Tensor) -> None:
        """One or more pairs: ``latent`` [N, C, h, w] as the bridge sees it (normalised), ``target`` [N, 768, h, w]."""
        if latent.ndim == 3:
            latent, target = latent[None], target[None]
        if (
            latent.shape[1] != self.channels
            or target.shape[1] != self.targets
            or latent.shape[2:] != target.shape[2:]
            or latent.shape[0] != target.shape[0]
        ):
            raise ValueError(
                f"latent {list(latent.shape)} and target {list(target.shape)} do not pair up "
                f"({self.channels} channels, {self.targets} targets per cell)"
            )
        x = latent.double().permute(0, 2, 3, 1).reshape(-1, self.channels)
        x = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
        y = target.double().permute(0, 2, 3, 1).reshape(-1, self.targets)
        self.xtx += x.T @ x
        self.xty += x.T @ y
        self.cells += len(x)
        self.images += latent.shape[0]

    def solve(self, ridge: float = RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight [768, C], bias [768]) minimising ||x W^T + b - y||^2 + lam ||W||^2, lam = ``ridge`` x the
        mean eigenvalue of the centred latents' scatter matrix; the bias is not shrunk."""
        if self.cells == 0:
            raise ValueError("no latent cells to fit on")
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        c, n = self.channels, self.cells
        mean_x = self.xtx[c, :c] / n
        mean_y = self.xty[c] / n
        sxx = self.xtx[:c, :c] - n * torch.outer(mean_x, mean_x)
        sxy = self.xty[:c] - n * torch.outer(mean_x, mean_y)
        spread = torch.trace(sxx) / c
        lam = ridge * spread if spread > 0 else torch.tensor(1.0, dtype=torch.float64)  # constant latents: bias only
        w = torch.linalg.solve(sxx + lam * torch.eye(c, dtype=torch.float64), sxy)  # [C, K]
        bias = mean_y - mean_x @ w
        return w.T.contiguous(), bias


def fit_decode(latents: torch.Tensor, targets: torch.Tensor, ridge: float = RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """The ridge fit of ``targets`` [N, K, h, w] on ``latents`` [N, C, h, w] in one call: (weight [K, C], bias [K])."""
    fit = RidgeFit(latents.shape[1], targets.shape[1])
    fit.add(latents, targets)
    return fit.solve(ridge)


def decode_error(weight: torch.Tensor, bias: torch.Tensor, latent: torch.Tensor, target: torch.Tensor) -> float:
    """Mean squared error of the linear decode (weight [K, C], bias [K]) on ``latent`` [N, C, h, w] vs ``target``."""
    pred = torch.einsum("kc,nchw->nkhw", weight.double(), latent.double()) + bias.double()[None, :, None, None]
    return float(((pred - target.double()) ** 2).mean())
