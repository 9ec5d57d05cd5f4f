"""JSON and image files: clear errors that name the file, atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """The parsed JSON of ``path``; a missing or malformed file raises an error that names it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: not a valid {what} ({exc})") from None


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 1) -> Path:
    """Write JSON atomically (a temporary file in the same folder, then a rename): never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An [H, W, 3] uint8 view of an RGB image (grey images are repeated, floats clipped to 0..255)."""
    import numpy as np  # on use: JSON users (the Kaggle kernel's dependency check) must not need numpy

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {list(image.shape)}")
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 [H, W, 3] from an image file; a clear error names a file that cannot be read."""
    import cv2  # on use: JSON users (the Kaggle kernel's dependency check) must not need OpenCV

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB image (PNG or JPEG by the suffix), creating the folder; a failed write is an error."""
    import cv2  # on use, as in read_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(as_rgb_uint8(image), cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the image (unknown suffix or unwritable folder)")
    return path
