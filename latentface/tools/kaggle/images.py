"""The paired RGB images of a kernel run that learns from them (``teacher`` or ``reconstruct`` in its settings).

retina-modify holds latents only; its keys are WIDER FACE's, so the images come from a copy of WIDER FACE
attached as a second dataset (``latentface kaggle push --images OWNER/SLUG``). Copies differ in where the
training images lie (``WIDER_train/images``, ``WIDER_train/WIDER_train/images``, ...), so the kernel looks
for the folder that holds WIDER FACE's event folders (``0--Parade``, ``1--Handshaking``, ...) rather than
for one path. The teacher checkpoint may be named by its path, or relative to any attached input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from latentface.tools.kaggle.kernel import _listing, input_mounts
from latentface.tools.kaggle.metadata import KaggleSetupError

#: A WIDER FACE event folder: ``<index>--<event>``.
EVENT_FOLDER = re.compile(r"^\d+--\S+$")
#: How deep under a mount the image folder may lie.
SEARCH_DEPTH = 4


def is_wider_images(folder: Path) -> bool:
    """Whether ``folder`` holds WIDER FACE event folders (``0--Parade/``, ...)."""
    return folder.is_dir() and any(p.is_dir() and EVENT_FOLDER.match(p.name) for p in folder.iterdir())


def find_wider_images(input_root: str | os.PathLike, exclude: Iterable[str | os.PathLike] = ()) -> Path | None:
    """The WIDER FACE training image folder among the inputs (not under ``exclude``), or None. A folder on a
    path naming the training split (``WIDER_train``) wins over the validation split's."""
    found = []
    for mount in input_mounts(input_root, exclude=exclude):
        for current, dirs, _ in os.walk(mount):
            here = Path(current)
            if is_wider_images(here):
                found.append(here)
                dirs.clear()
            elif len(here.relative_to(mount).parts) >= SEARCH_DEPTH:
                dirs.clear()
            else:
                dirs.sort()
    return min(found, key=lambda p: ("train" not in str(p).lower(), str(p)), default=None)


def image_settings(settings: Mapping[str, Any], dataset: str | os.PathLike, input_root: str | os.PathLike) -> dict:
    """``settings`` with the teacher checkpoint found among the inputs and ``teacher_images`` set to the attached
    WIDER FACE images, where the run learns from the images and the dataset has none of its own."""
    out = dict(settings)
    if not (out.get("teacher") or out.get("reconstruct")):
        return out
    input_root = Path(input_root)
    if out.get("teacher"):
        out["teacher"] = str(_find_teacher(out["teacher"], input_root))
    if out.get("teacher_images") or (Path(dataset) / "train" / "images").is_dir():
        return out  # chosen by hand, or the layout's own images
    images = find_wider_images(input_root, exclude=[dataset])
    if images is None:
        raise KaggleSetupError(
            f"the training settings learn from the RGB images (teacher / reconstruct), but no WIDER FACE image "
            f"folder (<index>--<event>/<key>.jpg) is among the inputs under {input_root} (attached: "
            f"{_listing(input_root)}); attach a copy of WIDER FACE (latentface kaggle push --images OWNER/SLUG) or "
            "set TRAIN['teacher_images'] to its WIDER_train/images folder"
        )
    print(f"teacher images: {images}")
    out["teacher_images"] = str(images)
    return out


def _find_teacher(teacher: str, input_root: Path) -> Path:
    path = Path(teacher)
    if path.is_file():
        return path
    if not path.is_absolute():
        for mount in input_mounts(input_root):
            if (mount / path).is_file():
                return mount / path
    raise KaggleSetupError(
        f"TRAIN['teacher'] = {teacher!r}: no such file, nor under any input of {input_root} (attached: "
        f"{_listing(input_root)}); attach the RGB run's output and name its weight_final.pth relative to it"
    )
