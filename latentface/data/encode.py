"""``latentface encode``: real images + a WIDER label file -> the retina-modify layout.

So that a user without the Kaggle dataset can still train on real faces (for example
the official WIDER FACE release): every labelled image is resized to ``size`` x
``size`` (stretched like retina-modify, or letterboxed: scaled to fit and centred on
black), encoded with the built-in ``dct`` codec at every chosen rate, and its labels
rescaled to the new image. Boxes are then clipped to the image and empty ones dropped
(:func:`latentface.data.labels.sanitize`), counted in the summary.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from latentface import LATENT_STRIDE
from latentface.codec import dct
from latentface.data.labels import FaceRecord, read_labels, sanitize, write_retinaface, write_wider
from latentface.data.layout import LABELS_FILE, LANDMARKS_FILE, write_codec_description, write_sample
from latentface.util.io import read_image


def resize_geometry(width: int, height: int, size: int, letterbox: bool) -> tuple[float, float, int, int, int, int]:
    """(scale_x, scale_y, offset_x, offset_y, new_width, new_height) mapping the image onto size x size."""
    if not letterbox:
        return size / width, size / height, 0, 0, size, size
    scale = min(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return new_w / width, new_h / height, (size - new_w) // 2, (size - new_h) // 2, new_w, new_h


def resize_image(image: np.ndarray, size: int, letterbox: bool) -> tuple[np.ndarray, tuple]:
    """The image on a size x size canvas, and the geometry used (see :func:`resize_geometry`)."""
    h, w = image.shape[:2]
    geom = resize_geometry(w, h, size, letterbox)
    sx, sy, ox, oy, nw, nh = geom
    interp = cv2.INTER_AREA if nw < w or nh < h else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[oy:oy + nh, ox:ox + nw] = resized
    return canvas, geom


def rescale_record(record: FaceRecord, sx: float, sy: float, ox: float, oy: float) -> FaceRecord:
    """Boxes and (valid) landmarks mapped by x' = x * sx + ox, y' = y * sy + oy."""
    scale = np.array([sx, sy, sx, sy], dtype=np.float64)
    offset = np.array([ox, oy, ox, oy], dtype=np.float64)
    landmarks = record.landmarks.astype(np.float64)
    has = record.has_landmarks
    landmarks[has] = landmarks[has] * [sx, sy] + [ox, oy]
    return dataclasses.replace(record, boxes=record.boxes * scale + offset, landmarks=landmarks)


def _find_image(images_dir: Path, name: str) -> Path | None:
    for candidate in (images_dir / name, images_dir / Path(name).name):
        if candidate.is_file():
            return candidate
    return None


def encode_folder(images_dir: str | os.PathLike, labels: str | os.PathLike, root: str | os.PathLike,
                  split: str = "train", size: int = 640, letterbox: bool = False,
                  rates: Sequence[int] = dct.QUALITIES, progress: bool = True, on_missing: str = "raise",
                  limit: int | None = None, overwrite: bool = False) -> dict:
    """Encode the images named in ``labels`` (found under ``images_dir``) into ``<root>/<split>``.

    ``on_missing``: "raise" (a missing or unreadable image is an error naming it) or
    "skip" (counted in the summary). Returns counts and images/s.
    """
    if size <= 0 or size % LATENT_STRIDE:
        raise ValueError(f"size must be a positive multiple of {LATENT_STRIDE}, got {size}")
    if on_missing not in ("raise", "skip"):
        raise ValueError(f"on_missing must be 'raise' or 'skip', got {on_missing!r}")
    rates = tuple(int(q) for q in rates)
    if not rates or any(q not in dct.QUALITIES for q in rates):
        raise ValueError(f"rates must be among {dct.QUALITIES}, got {list(rates)}")
    images_dir, root = Path(images_dir), Path(root)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {images_dir}")
    records = list(read_labels(labels).values())[:limit]
    out_dir = root / split
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir} already exists and is not empty; pass overwrite (--overwrite) to replace it")
        shutil.rmtree(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "latent").mkdir(parents=True, exist_ok=True)
    write_codec_description(root, dct.NAME, size=size, rates=list(rates), letterbox=letterbox,
                            generator="latentface encode")

    written: list[FaceRecord] = []
    missing, dropped = [], 0
    start = time.perf_counter()
    for rec in tqdm(records, desc=f"encode {split}", unit="img", disable=not progress):
        path = _find_image(images_dir, rec.name)
        try:
            image = read_image(path) if path is not None else None
        except ValueError:  # unreadable: treated as missing
            image = None
        if image is None:
            where = path if path is not None else images_dir / rec.name
            if on_missing == "raise":
                raise FileNotFoundError(f"{labels}: image {rec.name!r} is missing or unreadable ({where})")
            missing.append(rec.name)
            continue
        canvas, (sx, sy, ox, oy, _, _) = resize_image(image, size, letterbox)
        clean, n = sanitize(rescale_record(rec, sx, sy, ox, oy), size, size)
        dropped += n
        coefficients = dct.transform(canvas)
        write_sample(root, split, rec.key, canvas, {q: dct.quantise(coefficients, q) for q in rates})
        written.append(clean)
    seconds = time.perf_counter() - start
    write_wider(written, out_dir / LABELS_FILE)
    if any(r.has_landmarks.any() for r in written):
        write_retinaface(written, out_dir / LANDMARKS_FILE)
    return {"split_dir": str(out_dir), "images": len(written), "faces": sum(len(r) for r in written),
            "missing_images": len(missing), "boxes_dropped": dropped, "seconds": seconds,
            "images_per_s": len(written) / seconds if seconds > 0 else float("inf")}
