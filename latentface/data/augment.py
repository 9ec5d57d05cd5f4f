"""Augmentations that are valid on latents: callables ``(latent, target) -> (latent, target)``.

Pixel-space augmentations (colour jitter, resizing) have no exact latent counterpart,
so only two geometric ones are offered:

- a horizontal flip: the latent mirrored along W, boxes mirrored, left/right eye and
  mouth-corner landmarks swapped. A mirrored latent is not by itself the latent of the
  mirrored image: inside each cell the content must mirror too. For the built-in
  ``dct`` codec that is a sign flip of the odd horizontal frequencies, so passing
  ``channel_signs="dct"`` makes the flip exact. For JPEG AI latents and the built-in
  ``learned`` codec no such map is known (``hflip_signs()`` is None) and the plain mirror
  is used (the network then learns mirrored cells too). Training passes the codec that
  the dataset's ``codec.json`` names, never ``dct`` by default.
- a crop on the latent grid (offsets in whole cells = multiples of the stride):
  boxes shifted and clipped, dropped when their centre leaves the crop.

Each records what it did in the target's ``ops`` (in image pixels: ``("hflip",)``,
``("crop", left, top, width, height)``), so the paired RGB image of a latent (the teacher's
input in distillation) can be given exactly the same geometry: :func:`replay_ops`.

Randomness comes from ``torch``, so DataLoader workers differ and seeds reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from latentface import LATENT_STRIDE
from latentface.codec import get_codec
from latentface.data.labels import FLIP_LANDMARKS


def _signs(channel_signs, channels: int) -> torch.Tensor | None:
    if channel_signs is None:
        return None
    if isinstance(channel_signs, str):
        channel_signs = get_codec(channel_signs).hflip_signs()
        if channel_signs is None:  # the codec has no exact flip rule (learned): the plain mirror
            return None
    signs = torch.as_tensor(np.asarray(channel_signs), dtype=torch.float32).reshape(-1)
    if len(signs) != channels:
        raise ValueError(f"channel_signs has {len(signs)} entries for a latent of {channels} channels")
    return signs


def flip_target(target: dict, width: float) -> dict:
    """A target mirrored in an image ``width`` pixels wide: boxes mirrored, left/right landmarks swapped."""
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    landmarks = target["landmarks"][:, list(FLIP_LANDMARKS)].clone()
    has = target["has_landmarks"]
    landmarks[has, :, 0] = width - landmarks[has, :, 0]
    return {**target, "boxes": boxes, "landmarks": landmarks, "ops": (*target.get("ops", ()), ("hflip",))}


def crop_target(target: dict, left: float, top: float, width: float, height: float) -> dict:
    """A target seen through a ``width`` x ``height`` pixel window at (left, top).

    Boxes are shifted and clipped to the window; faces whose centre leaves it are dropped.
    """
    boxes = target["boxes"] - torch.tensor([left, top, left, top], dtype=torch.float32)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    keep = (cx > 0) & (cx < width) & (cy > 0) & (cy < height)
    boxes = boxes[keep]
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    has = target["has_landmarks"][keep]
    landmarks = target["landmarks"][keep].clone()
    landmarks[has] -= torch.tensor([left, top], dtype=torch.float32)
    ops = (*target.get("ops", ()), ("crop", int(left), int(top), int(width), int(height)))
    return {**target, "boxes": boxes, "landmarks": landmarks, "has_landmarks": has, "ops": ops}


def hflip(latent: torch.Tensor, target: dict, channel_signs=None) -> tuple[torch.Tensor, dict]:
    """Mirror a latent [C,H,W] and its target; ``channel_signs``: None, a codec name or C signs."""
    flipped = latent.flip(-1)
    signs = _signs(channel_signs, latent.shape[0])
    if signs is not None:
        flipped = flipped * signs.to(latent.dtype)[:, None, None]
    return flipped, flip_target(target, latent.shape[-1] * LATENT_STRIDE)


def crop(latent: torch.Tensor, target: dict, top: int, left: int, height: int, width: int) -> tuple[torch.Tensor, dict]:
    """Crop ``height`` x ``width`` cells at cell (top, left); faces whose centre leaves the crop are dropped."""
    _, h, w = latent.shape
    if not (top >= 0 and left >= 0 and top + height <= h and left + width <= w):
        raise ValueError(f"crop {height}x{width} at ({top},{left}) does not fit a {h}x{w} latent")
    s = LATENT_STRIDE
    return latent[:, top : top + height, left : left + width], crop_target(
        target, left * s, top * s, width * s, height * s
    )


def replay_ops(image: torch.Tensor, ops: Sequence[tuple]) -> torch.Tensor:
    """``image`` [C, H, W] (pixels of the latent's image) through the recorded ``ops``, in order."""
    for op in ops:
        if op[0] == "hflip":
            image = image.flip(-1)
        elif op[0] == "crop":
            left, top, width, height = op[1:]
            if top + height > image.shape[-2] or left + width > image.shape[-1]:
                raise ValueError(f"crop {height}x{width} at ({top},{left}) does not fit a {list(image.shape)} image")
            image = image[..., top : top + height, left : left + width]
        else:
            raise ValueError(f"unknown augmentation op {op!r}")
    return image


class RandomHorizontalFlip:
    """Flip with probability ``p`` (see :func:`hflip`; ``channel_signs="dct"`` for the built-in codec)."""

    def __init__(self, p: float = 0.5, channel_signs=None):
        self.p = p
        self.channel_signs = channel_signs

    def __call__(self, latent, target):
        if float(torch.rand(())) < self.p:
            return self.flip(latent, target)
        return latent, target

    def flip(self, latent, target):
        return hflip(latent, target, self.channel_signs)

    def __repr__(self) -> str:
        signs = self.channel_signs if self.channel_signs is None or isinstance(self.channel_signs, str) else "custom"
        return f"RandomHorizontalFlip(p={self.p}, channel_signs={signs!r})"


class RandomLatentCrop:
    """Random crop of ``size`` cells (int or (h, w)) on the latent grid.

    Up to ``tries`` random offsets are drawn; the first that keeps at least one face
    of an image that has faces is used (else the last one drawn).
    """

    def __init__(self, size: int | Sequence[int], tries: int = 10):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.tries = tries

    #: Input pixels per latent cell: 1 for latents; image crops (16) use the same grid.
    pixels_per_cell = 1

    def __call__(self, latent, target):
        h, w = latent.shape[1] // self.pixels_per_cell, latent.shape[2] // self.pixels_per_cell
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"crop size {ch}x{cw} cells is larger than the {h}x{w} cells of {target.get('key')}")
        for _ in range(self.tries):
            top = int(torch.randint(h - ch + 1, ()))
            left = int(torch.randint(w - cw + 1, ()))
            out = self.crop(latent, target, top, left, ch, cw)
            if len(out[1]["boxes"]) or not len(target["boxes"]):
                break
        return out

    def crop(self, latent, target, top, left, height, width):
        return crop(latent, target, top, left, height, width)

    def __repr__(self) -> str:
        return f"RandomLatentCrop(size={self.size}, tries={self.tries})"


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, latent, target):
        for t in self.transforms:
            latent, target = t(latent, target)
        return latent, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"
