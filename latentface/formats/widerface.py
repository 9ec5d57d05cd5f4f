"""The per-image text format of the official WIDER FACE evaluation: one ``<event>/<image>.txt`` per
image with the image name, the number of boxes and one ``x y w h score`` line per box.

Numbers are written with the shortest digits that read back as the same float64, so scores and
x, y, w, h read back exactly. ``x + w`` (what the official reader and
:func:`read_widerface_predictions` compute) gives back ``x2`` exactly for the detector's float32
boxes (their float64 difference is exact); for arbitrary float64 boxes it can be an ulp or two
off (1e-13 px at 640 px), which no float64 width avoids. Evaluating the written files gives the
in-memory APs: an IoU would have to sit within about 1e-15 of 0.5 to tell them apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from latentface.boxes import xywh_to_xyxy, xyxy_to_xywh
from latentface.metrics.wider import prediction_array


def _number(value: float) -> str:
    """The shortest decimal that reads back as exactly ``value`` (no exponent)."""
    return np.format_float_positional(value, unique=True, trim="-")


def write_widerface_predictions(
    predictions: Mapping[str, Any], out_dir: str | os.PathLike, names: Mapping[str, str]
) -> list[Path]:
    """Write predictions in the official WIDER evaluation's text format.

    One file ``out_dir/<event>/<image>.txt`` per image, where ``names[key]`` is the
    label name (``0--Parade/0_Parade_Parade_0_1014.jpg``): the image name without
    extension, the number of boxes, then one ``x y w h score`` line per box in
    descending score order (the official reader relies on that order).
    """
    out_dir = Path(out_dir)
    written = []
    for key, value in predictions.items():
        rows = prediction_array(value, key)
        if key not in names:
            raise KeyError(f"no image name for prediction key {key!r}")
        rel = PurePosixPath(str(names[key]))
        if rel.is_absolute() or ".." in rel.parts or not rel.stem:
            raise ValueError(f"image name {names[key]!r} for {key!r} must be a relative path like event/image.jpg")
        rows = rows[np.argsort(-rows[:, 4], kind="stable")]
        lines = [rel.stem, str(len(rows))]
        xywh = xyxy_to_xywh(rows[:, :4])
        lines += [" ".join(_number(v) for v in (*box, score)) for box, score in zip(xywh, rows[:, 4])]
        path = out_dir.joinpath(*rel.with_suffix(".txt").parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        written.append(path)
    return written


def _read_prediction_file(path: Path) -> np.ndarray:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    lines = text.splitlines()
    if len(lines) < 2:
        raise ValueError(f"{path}:{len(lines) + 1}: expected an image name line and a box count line")
    base = lines[0].strip().split("/")[-1]
    if path.stem not in (base, os.path.splitext(base)[0]):
        raise ValueError(f"{path}:1: image name {lines[0].strip()!r} does not match the file name")
    try:
        count = int(lines[1])
    except ValueError:
        raise ValueError(f"{path}:2: expected the number of boxes, got {lines[1]!r}") from None
    rows = []
    for lineno, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        fields = line.split()
        try:
            x, y, w, h, score = (float(f) for f in fields[:5])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected 'x y w h score', got {line!r}") from None
        if not np.isfinite([x, y, w, h, score]).all() or w < 0 or h < 0:
            raise ValueError(f"{path}:{lineno}: non-finite value or negative size in {line!r}")
        rows.append([x, y, w, h, score])
    if count != len(rows):
        raise ValueError(f"{path}:2: the count line says {count} boxes, the file has {len(rows)}")
    rows = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return np.concatenate([xywh_to_xyxy(rows[:, :4]), rows[:, 4:]], axis=1)


def read_widerface_predictions(
    pred_dir: str | os.PathLike, origins: dict[str, Path] | None = None
) -> dict[str, np.ndarray]:
    """Read a directory in the official WIDER text format into ``{key: [K,5] xyxy+score}``.

    ``origins``, when given, is filled with each key's file (for messages naming it)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: no such prediction directory")
    files = sorted(pred_dir.rglob("*.txt"))
    if not files:
        raise ValueError(f"{pred_dir}: no .txt prediction files")
    predictions: dict[str, np.ndarray] = {}
    origin: dict[str, Path] = {} if origins is None else origins
    for path in files:
        if path.stem in origin:
            raise ValueError(f"{path}: image {path.stem!r} already read from {origin[path.stem]}")
        predictions[path.stem] = _read_prediction_file(path)
        origin[path.stem] = path
    return predictions
