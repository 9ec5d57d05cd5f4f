"""The detections JSON of ``latentface detect``: one object per image, one detection per line.

``{"image": key, "latent": path, "image_size": [h, w], "detections": [{"box": [x1, y1, x2, y2],
"score": s, "landmarks": [[x, y] x 5]}, ...]}`` in input-image pixels; a folder run writes a list.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from latentface.util.io import read_json


def detection_record(
    key: str, image_size: tuple[int, int], det: Mapping[str, np.ndarray], latent: str | os.PathLike | None = None
) -> dict:
    """The JSON object of one image: image key, [h, w], detections with box, score, landmarks."""
    record: dict[str, Any] = {"image": key}
    if latent is not None:
        record["latent"] = str(latent)
    record["image_size"] = [int(image_size[0]), int(image_size[1])]
    record["detections"] = [
        {
            "box": [round(float(v), 2) for v in box],
            "score": round(float(score), 5),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in lms],
        }
        for box, score, lms in zip(det["boxes"], det["scores"], det["landmarks"])
    ]
    return record


def detections_json(records: dict | list[dict]) -> str:
    """JSON text of one :func:`detection_record` or a list of them, one detection per line
    (readable and diff-able where an indented dump would spread a box over six lines)."""

    def one(record: dict) -> str:
        head = json.dumps({k: v for k, v in record.items() if k != "detections"})[:-1]
        dets = ",\n  ".join(json.dumps(d) for d in record["detections"])
        return f'{head}, "detections": [' + (f"\n  {dets}\n" if dets else "") + "]}"

    if isinstance(records, dict):
        return one(records) + "\n"
    return "[\n" + ",\n".join(one(r) for r in records) + "\n]\n"


def write_detections(path: str | os.PathLike, records: dict | list[dict]) -> Path:
    """Write :func:`detections_json` of ``records`` to ``path``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(detections_json(records), encoding="utf-8")
    return path


def read_detections(path: str | os.PathLike) -> list[dict]:
    """The records of a detections JSON (one object or a list) as a list; a bad file is an error naming it."""
    data = read_json(path, "detections file")
    records = [data] if isinstance(data, dict) else data
    if not isinstance(records, list) or not all(isinstance(r, dict) and "detections" in r for r in records):
        raise ValueError(f"{path}: not a detections file (expected objects with 'image' and 'detections')")
    return records
