"""The RGB image of each latent sample, for a teacher that sees pixels while the student sees latents.

Where the images come from:

- the synthetic and encoded layouts hold them: ``<root>/<split>/images/<key>.png``;
- retina-modify has none, but its keys are WIDER FACE file names (``0_Parade_Parade_0_1014``),
  so a WIDER FACE image folder (``WIDER_train/images`` or ``WIDER_val/images``, the event folders
  ``0--Parade``, ...) supplies them: ``--teacher_images DIR`` -> ``DIR/0--Parade/0_Parade_Parade_0_1014.jpg``.

Each image is resized to the latent's image size (``16 * W`` x ``16 * H``, as the data was made) and
goes through the same flips and crops as its latent (the target's recorded ``ops``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from latentface.data.augment import replay_ops
from latentface.data.images import load_image
from latentface.data.layout import image_path
from latentface.util.io import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)


def wider_image_path(images_dir: str | os.PathLike, key: str) -> Path | None:
    """``key``'s image in a WIDER FACE image folder: ``<event index>--<event>/<key>.jpg``; None if absent."""
    event = key.split("_", 1)[0]
    for folder in sorted(Path(images_dir).glob(f"{event}--*")):
        for suffix in IMAGE_SUFFIXES:
            if (folder / f"{key}{suffix}").is_file():
                return folder / f"{key}{suffix}"
    return None


class TeacherImages:
    """Key -> the RGB image [3, H, W] (float 0..255) at ``size`` (width, height), from ``images_dir``
    (a WIDER FACE image folder) or, without one, the layout's own ``<root>/<split>/images``."""

    def __init__(self, root: str | os.PathLike, split: str, size: tuple[int, int], images_dir=None):
        self.root, self.split, self.size = Path(root), split, tuple(size)
        self.images_dir = Path(images_dir) if images_dir is not None else None
        if self.images_dir is not None and not self.images_dir.is_dir():
            raise FileNotFoundError(f"--teacher_images: not a folder: {self.images_dir}")

    def path(self, key: str) -> Path | None:
        if self.images_dir is not None:
            return wider_image_path(self.images_dir, key)
        folder = image_path(self.root, self.split, key).parent
        return next((folder / f"{key}{s}" for s in IMAGE_SUFFIXES if (folder / f"{key}{s}").is_file()), None)

    def load(self, key: str, ops=()) -> torch.Tensor | None:
        """The image of ``key`` resized to ``size`` and put through ``ops``; None when there is none."""
        path = self.path(key)
        if path is None:
            return None
        image = load_image(path)
        width, height = self.size
        if image.shape[-2:] != (height, width):
            image = F.interpolate(image[None], size=(height, width), mode="bilinear", antialias=True)[0]
        return replay_ops(image, ops)


class WithTeacherImages(Dataset):
    """A latent dataset whose targets also carry ``teacher_image`` (or None when the key has no image).

    The count of keys without an image is logged once: those samples train without the
    distillation terms.
    """

    def __init__(self, dataset, images: TeacherImages):
        self.dataset, self.images = dataset, images
        self.missing = [key for key in dataset.keys if images.path(key) is None]
        source = images.images_dir or f"{images.root / images.split / 'images'}"
        if self.missing:
            example = ", ".join(self.missing[:3])
            logger.warning(
                "teacher images: %d of %d %s keys have no image in %s (they train without the distillation "
                "terms), e.g. %s",
                len(self.missing),
                len(dataset.keys),
                images.split,
                source,
                example,
            )
        else:
            logger.info("teacher images: all %d %s keys have an image in %s", len(dataset.keys), images.split, source)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):  # the wrapped dataset's records, keys, summary, ...
        if name in ("dataset", "images", "missing"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int):
        latent, target = self.dataset[index]
        return latent, {**target, "teacher_image": self.images.load(target["key"], target.get("ops", ()))}
