"""``latentface encode``: real images + a WIDER label file -> the retina-modify layout.

So that a user without the Kaggle dataset can still train on real faces (for example
the official WIDER FACE release): every labelled image is resized to ``size`` x
``size`` (stretched like retina-modify, or letterboxed: scaled to fit and centred on
black), encoded with a built-in codec (``dct``, the default, or ``learned``) at every chosen
rate, and its labels rescaled to the new image. Boxes are then clipped to the image and empty
ones dropped (:func:`latentface.data.labels.sanitize`), counted in the summary.

Every image becomes its latents at all rates through its codec's ``encode_rates``, here and in
:mod:`latentface.data.synth`: each codec's transform runs once per image and only the quantisation
runs per rate.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import torch
from tqdm import tqdm

from latentface import LATENT_STRIDE
from latentface.codec import dct, get_codec
from latentface.data.labels import FaceRecord, read_labels, sanitize, write_retinaface, write_wider
from latentface.data.layout import (
    CODEC_FILE,
    LABELS_FILE,
    LANDMARKS_FILE,
    codec_identity,
    read_codec_description,
    write_codec_description,
    write_sample,
)
from latentface.util.io import read_image


def check_rates(codec: ModuleType, rates: Sequence[int]) -> tuple[int, ...]:
    """``rates`` as a tuple of ints, each one of ``codec.QUALITIES`` (else a ValueError naming them)."""
    rates = tuple(int(q) for q in rates)
    if not rates or any(q not in codec.QUALITIES for q in rates):
        raise ValueError(f"rates must be among {codec.QUALITIES} (the {codec.NAME} codec's), got {list(rates)}")
    return rates


class one_thread:
    """``with one_thread():`` torch computes on one thread, then goes back to its previous count.

    A learned codec's float results depend on how a reduction is split over threads (at 640x640
    some latents differ between 1 and 2 threads), so ``latentface synth`` and ``encode`` encode on
    one thread per process: the same input gives the same bytes whatever ``--workers`` and the
    machine's core count (more speed comes from more worker processes)."""

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.before)


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
    canvas[oy : oy + nh, ox : ox + nw] = resized
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


def _check_same_codec(root: Path, split: str, codec: str) -> None:
    """Every split of a root comes from one codec (``codec.json`` names one): encoding ``split`` with another
    codec, or other weights, while another split holds latents is an error."""
    saved = read_codec_description(root)
    if saved is None:
        return
    wanted = codec_identity(codec)
    if {k: saved.get(k) for k in wanted} == wanted:
        return
    others = [p.name for p in root.iterdir() if p.is_dir() and p.name != split and (p / "latent").is_dir()]
    if others:
        made = saved["codec"] + (" (other weights)" if saved["codec"] == codec else "")
        raise ValueError(
            f"{root / CODEC_FILE}: the split(s) {', '.join(sorted(others))} were encoded with the {made} "
            f"codec; encode {split} with --codec {saved['codec']} or into another root"
        )


def worker_start() -> None:
    """Each worker process encodes on one thread (see :class:`one_thread`)."""
    torch.set_num_threads(1)


def _encode_one(job: tuple) -> tuple[FaceRecord, int | None]:
    """Read, resize, encode and write one labelled image -> (its rescaled record, boxes dropped), or
    (the record, None) when the image is missing and ``on_missing`` is "skip"."""
    images_dir, labels, root, split, size, letterbox, codec, rates, on_missing, rec = job
    path = _find_image(images_dir, rec.name)
    try:
        image = read_image(path) if path is not None else None
    except ValueError:  # unreadable: treated as missing
        image = None
    if image is None:
        where = path if path is not None else images_dir / rec.name
        if on_missing == "raise":
            raise FileNotFoundError(f"{labels}: image {rec.name!r} is missing or unreadable ({where})")
        return rec, None
    canvas, (sx, sy, ox, oy, _, _) = resize_image(image, size, letterbox)
    clean, dropped = sanitize(rescale_record(rec, sx, sy, ox, oy), size, size)
    write_sample(root, split, rec.key, canvas, get_codec(codec).encode_rates(canvas, rates))
    return clean, dropped


def encode_folder(
    images_dir: str | os.PathLike,
    labels: str | os.PathLike,
    root: str | os.PathLike,
    split: str = "train",
    size: int = 640,
    letterbox: bool = False,
    rates: Sequence[int] = dct.QUALITIES,
    progress: bool = True,
    on_missing: str = "raise",
    limit: int | None = None,
    overwrite: bool = False,
    codec: str = "dct",
    workers: int = 1,
) -> dict:
    """Encode the images named in ``labels`` (found under ``images_dir``) into ``<root>/<split>``
    with the built-in codec ``codec`` (``dct`` or ``learned``; ``codec.json`` names it).

    ``on_missing``: "raise" (a missing or unreadable image is an error naming it) or
    "skip" (counted in the summary). ``workers`` > 1 encodes in that many processes (the same
    bytes). Returns counts and images/s.
    """
    coder = get_codec(codec)
    if size <= 0 or size % LATENT_STRIDE:
        raise ValueError(f"size must be a positive multiple of {LATENT_STRIDE}, got {size}")
    if on_missing not in ("raise", "skip"):
        raise ValueError(f"on_missing must be 'raise' or 'skip', got {on_missing!r}")
    rates = check_rates(coder, rates)
    images_dir, root = Path(images_dir), Path(root)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {images_dir}")
    records = list(read_labels(labels).values())[:limit]
    out_dir = root / split
    _check_same_codec(root, split, coder.NAME)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out_dir} already exists and is not empty; pass overwrite (--overwrite) to replace it"
            )
        shutil.rmtree(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "latent").mkdir(parents=True, exist_ok=True)
    write_codec_description(
        root, coder.NAME, size=size, rates=list(rates), letterbox=letterbox, generator="latentface encode"
    )

    written: list[FaceRecord] = []
    missing, dropped = [], 0
    jobs = [(images_dir, labels, root, split, size, letterbox, coder.NAME, rates, on_missing, rec) for rec in records]
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc=f"encode {split}", unit="img", disable=not progress)
    # one thread per process: the same bytes on any machine (a learned codec's floats depend on the thread
    # split), and faster than intra-op threads on a busy machine (measured: 3.1 vs 0.6 images/s at 640x640
    # on 2 loaded cores); more speed comes from more processes (``workers``)
    pool = ProcessPoolExecutor(workers, initializer=worker_start) if workers > 1 else nullcontext()
    with one_thread(), pool:
        for rec, n in pool.map(_encode_one, jobs, chunksize=4) if workers > 1 else map(_encode_one, jobs):
            bar.update()
            if n is None:
                missing.append(rec.name)
            else:
                written.append(rec)
                dropped += n
    bar.close()
    seconds = time.perf_counter() - start
    write_wider(written, out_dir / LABELS_FILE)
    if any(r.has_landmarks.any() for r in written):
        write_retinaface(written, out_dir / LANDMARKS_FILE)
    return {
        "split_dir": str(out_dir),
        "codec": coder.NAME,
        "images": len(written),
        "faces": sum(len(r) for r in written),
        "missing_images": len(missing),
        "boxes_dropped": dropped,
        "seconds": seconds,
        "images_per_s": len(written) / seconds if seconds > 0 else float("inf"),
    }
