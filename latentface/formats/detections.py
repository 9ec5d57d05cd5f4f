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


def _record_json(record: dict) -> str:
    head = json.dumps({k: v for k, v in record.items() if k != "detections"})[:-1]
    dets = ",\n  ".join(json.dumps(d) for d in record["detections"])
    return f'{head}, "detections": [' + (f"\n  {dets}\n" if dets else "") + "]}"


def detections_json(records: dict | list[dict]) -> str:
    """JSON text of one :func:`detection_record` or a list of them, one detection per line
    (readable and diff-able where an indented dump would spread a box over six lines)."""
    if isinstance(records, dict):
        return _record_json(records) + "\n"
    return "[\n" + ",\n".join(_record_json(r) for r in records) + "\n]\n"


class DetectionStream:
    """A detections JSON list written one record at a time, each flushed to disk as it comes.

    Closing ends the list, also when the run stops on an error (use it as a context manager),
    so the file is valid JSON holding every record written before the error; the text is that
    of :func:`detections_json` of the records written.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self._file = self.path.open("w", encoding="utf-8")
        self._file.write("[\n")
        self._file.flush()

    def write(self, record: dict) -> None:
        self._file.write((",\n" if self.count else "") + _record_json(record))
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.write("\n]\n")
            self._file.close()

    def __enter__(self) -> DetectionStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
