"""RGB images of a retina-modify-style layout, for the RGB RetinaFace baseline.

Reads ``<root>/<split>/images/<key>.png`` (written by ``synth`` and ``encode``) with the
same labels as the latent dataset, and yields ``(image float32 [3,H,W] in 0..255, target)``
with the latent dataset's target format, so the baseline trains and is evaluated by the
same code. Augmentations mirror the latent ones geometrically: a horizontal flip and a
crop whose window lies on the 16-pixel latent grid, drawing from ``torch``'s RNG in the
same order as :class:`~latentface.data.augment.RandomHorizontalFlip` and
:class:`~latentface.data.augment.RandomLatentCrop`, so that with the same per-sample seed
both models see the same flips and crop windows.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from latentface import LATENT_STRIDE
from latentface.data.augment import RandomHorizontalFlip, RandomLatentCrop, crop_target, flip_target
from latentface.data.dataset import read_split_labels, record_target
from latentface.data.labels import FaceRecord, sanitize
from latentface.data.layout import image_path
from latentface.errors import LatentfaceError
from latentface.util.io import read_image

logger = logging.getLogger("latentface.data")


class BadImageError(LatentfaceError, ValueError):
    """An image file that cannot be used; the message starts with the file's path."""


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file -> float32 RGB tensor [3, H, W] with values 0..255, or raise :class:`BadImageError`."""
    try:
        rgb = read_image(path)
    except ValueError as exc:
        raise BadImageError(str(exc)) from None
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()


class RGBWiderFaceDataset(Dataset):
    """(image [3,H,W] float 0..255, target) per labelled image of ``<root>/<split>/images``.

    Every image must have the size of the first one (the layout's fixed input size);
    boxes are clipped to it and empty ones dropped, as for latents. Labelled images
    without a file are counted, logged once and left out. ``transform(image, target)``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", transform=None):
        self.root = Path(root)
        self.split = split
        self.transform = transform
        split_dir = self.root / split
        labels, _ = read_split_labels(split_dir)
        self.keys = [key for key in labels if image_path(root, split, key).is_file()]
        missing = len(labels) - len(self.keys)
        if not self.keys:
            raise FileNotFoundError(
                f"{split_dir / 'images'}: none of the {len(labels)} labelled images has a .png file"
            )
        if missing:
            logger.warning("%s: %d labelled images have no file in images/ and are left out", split_dir, missing)
        first = load_image(image_path(root, split, self.keys[0]))
        self.image_size = (first.shape[2], first.shape[1])  # (width, height), as the latent dataset
        self.records: dict[str, FaceRecord] = {key: sanitize(labels[key], *self.image_size)[0] for key in self.keys}

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int):
        key = self.keys[index]
        path = image_path(self.root, self.split, key)
        image = load_image(path)
        if (image.shape[2], image.shape[1]) != self.image_size:
            raise BadImageError(
                f"{path}: image is {image.shape[2]}x{image.shape[1]}, the split's images are "
                f"{self.image_size[0]}x{self.image_size[1]}"
            )
        target = record_target(self.records[key])
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target


def hflip_image(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Mirror an image [C,H,W] and its target: boxes mirrored, left/right landmarks swapped."""
    return image.flip(-1), flip_target(target, image.shape[-1])


def crop_image(
    image: torch.Tensor, target: dict, top: int, left: int, height: int, width: int
) -> tuple[torch.Tensor, dict]:
    """Crop ``height`` x ``width`` pixels at (top, left); faces whose centre leaves the crop are dropped."""
    _, h, w = image.shape
    if not (top >= 0 and left >= 0 and top + height <= h and left + width <= w):
        raise ValueError(f"crop {height}x{width} at ({top},{left}) does not fit a {h}x{w} image")
    return image[:, top : top + height, left : left + width], crop_target(target, left, top, width, height)


class RandomImageFlip(RandomHorizontalFlip):
    """Horizontal flip with probability ``p`` (one ``torch.rand`` draw, like the latent flip)."""

    def flip(self, image, target):
        return hflip_image(image, target)

    def __repr__(self) -> str:
        return f"RandomImageFlip(p={self.p})"


class RandomImageCrop(RandomLatentCrop):
    """Random crop of ``size`` latent cells (int or (h, w)) with offsets on the 16-pixel latent grid.

    Draws exactly as :class:`~latentface.data.augment.RandomLatentCrop` does, so with the same
    seed the RGB baseline sees the same windows as the latent model.
    """

    pixels_per_cell = LATENT_STRIDE

    def crop(self, image, target, top, left, height, width):
        s = LATENT_STRIDE
        return crop_image(image, target, top * s, left * s, height * s, width * s)

    def __repr__(self) -> str:
        return f"RandomImageCrop(size={self.size}, tries={self.tries})"
