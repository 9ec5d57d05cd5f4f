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
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from latentface import LATENT_STRIDE
from latentface.data.dataset import record_target
from latentface.data.labels import FLIP_LANDMARKS, FaceRecord, merge_landmarks, read_labels, sanitize
from latentface.data.layout import LABELS_FILE, LANDMARKS_FILE, image_path

logger = logging.getLogger("latentface.data")


class BadImageError(ValueError):
    """An image file that cannot be used; the message starts with the file's path."""


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file -> float32 RGB tensor [3, H, W] with values 0..255, or raise :class:`BadImageError`."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BadImageError(f"{path}: not a readable image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()


def read_split_labels(split_dir: Path) -> dict[str, FaceRecord]:
    """The labels of a split as the latent dataset reads them: labels.txt, landmarks merged in when present."""
    wider, lms = split_dir / LABELS_FILE, split_dir / LANDMARKS_FILE
    if wider.is_file():
        labels = read_labels(wider)
        if lms.is_file():
            labels, _ = merge_landmarks(labels, read_labels(lms))
        return labels
    if lms.is_file():
        return read_labels(lms)
    raise FileNotFoundError(f"no label file in {split_dir} (looked for {LABELS_FILE} and {LANDMARKS_FILE})")


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
        labels = read_split_labels(split_dir)
        self.keys = [key for key in labels if image_path(root, split, key).is_file()]
        missing = len(labels) - len(self.keys)
        if not self.keys:
            raise FileNotFoundError(f"{split_dir / 'images'}: none of the {len(labels)} labelled images has a .png file")
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
                f"{self.image_size[0]}x{self.image_size[1]}")
        target = record_target(self.records[key])
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target


def hflip_image(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Mirror an image [C,H,W] and its target: boxes mirrored, left/right landmarks swapped."""
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    landmarks = target["landmarks"][:, list(FLIP_LANDMARKS)].clone()
    has = target["has_landmarks"]
    landmarks[has, :, 0] = width - landmarks[has, :, 0]
    return image.flip(-1), {**target, "boxes": boxes, "landmarks": landmarks}


def crop_image(image: torch.Tensor, target: dict, top: int, left: int, height: int, width: int) -> tuple[torch.Tensor, dict]:
    """Crop ``height`` x ``width`` pixels at (top, left); faces whose centre leaves the crop are dropped."""
    _, h, w = image.shape
    if not (0 <= top and 0 <= left and top + height <= h and left + width <= w):
        raise ValueError(f"crop {height}x{width} at ({top},{left}) does not fit a {h}x{w} image")
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
    out = image[:, top:top + height, left:left + width]
    return out, {**target, "boxes": boxes, "landmarks": landmarks, "has_landmarks": has}


class RandomImageFlip:
    """Horizontal flip with probability ``p`` (one ``torch.rand`` draw, like the latent flip)."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image, target):
        if float(torch.rand(())) < self.p:
            return hflip_image(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"RandomImageFlip(p={self.p})"


class RandomImageCrop:
    """Random crop of ``size`` latent cells (int or (h, w)) with offsets on the 16-pixel latent grid.

    Draws exactly as :class:`~latentface.data.augment.RandomLatentCrop` does: up to
    ``tries`` offsets, the first keeping a face of an image that has faces.
    """

    def __init__(self, size: int | Sequence[int], tries: int = 10):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.tries = tries

    def __call__(self, image, target):
        h, w = image.shape[1] // LATENT_STRIDE, image.shape[2] // LATENT_STRIDE
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"crop size {ch}x{cw} cells is larger than the {h}x{w} cells of {target.get('key')}")
        for _ in range(self.tries):
            top = int(torch.randint(h - ch + 1, ()))
            left = int(torch.randint(w - cw + 1, ()))
            s = LATENT_STRIDE
            out = crop_image(image, target, top * s, left * s, ch * s, cw * s)
            if len(out[1]["boxes"]) or not len(target["boxes"]):
                break
        return out

    def __repr__(self) -> str:
        return f"RandomImageCrop(size={self.size}, tries={self.tries})"
