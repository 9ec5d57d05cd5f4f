"""Face label files: WIDER FACE's bbx format and the RetinaFace landmark format.

Both read into one :class:`FaceRecord` per image. Reading only parses and validates
syntax (every malformed line raises :class:`LabelFormatError` naming the file and
line); geometry (boxes outside the image, zero size) is the caller's policy, applied
with :func:`sanitize` once the image size is known.

WIDER bbx (``wider_face_train_bbx_gt.txt``, retina-modify's ``labels.txt``)::

    0--Parade/0_Parade_marchingband_1_849.jpg
    1
    449 330 122 149 0 0 0 0 0 0      # x y w h blur expression illumination invalid occlusion pose

A count of 0 is followed by one all-zero line that is not a face. Lines with only
``x y w h`` are accepted too (then ``attributes`` is None).

RetinaFace landmarks (``labels_landmarks.txt``)::

    # 0--Parade/0_Parade_marchingband_1_849.jpg
    449 330 122 149 488.9 373.6 0.0 542.1 376.4 0.0 515.0 412.8 0.0 485.2 425.9 0.0 538.4 431.5 0.0 0.82

Landmark order: left eye, right eye, nose, left mouth corner, right mouth corner; all
ten coordinates -1 mean "no landmarks". Lines of 4 (box only), 19 or 20 numbers are
accepted.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from latentface.boxes import xywh_to_xyxy
from latentface.errors import LatentfaceError

ATTRIBUTE_NAMES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
#: Landmarks are left eye, right eye, nose, left and right mouth corner; a horizontal flip maps index i
#: to FLIP_LANDMARKS[i].
FLIP_LANDMARKS = (1, 0, 2, 4, 3)
_NO_LANDMARK = -1.0


class LabelFormatError(LatentfaceError, ValueError):
    """A malformed label file; the message starts with ``file:line:``."""

    def __init__(self, path: str | os.PathLike, line: int, message: str):
        self.path = str(path)
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


@dataclasses.dataclass
class FaceRecord:
    """The faces of one image.

    ``boxes`` are xyxy pixels (x2 = x + w), ``landmarks`` [N, 5, 2] pixels (-1 where
    ``has_landmarks`` is False), ``ignore`` is WIDER's ``invalid`` flag, ``attributes``
    the six WIDER attribute columns when the file had them.
    """

    key: str
    name: str
    boxes: np.ndarray
    landmarks: np.ndarray
    has_landmarks: np.ndarray
    ignore: np.ndarray
    attributes: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(n, 5, 2)
        self.has_landmarks = np.asarray(self.has_landmarks, dtype=bool).reshape(n)
        self.ignore = np.asarray(self.ignore, dtype=bool).reshape(n)
        if self.attributes is not None:  # an image without faces has no attributes to carry
            self.attributes = np.asarray(self.attributes, dtype=np.int64).reshape(n, 6) if n else None

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, name: str) -> FaceRecord:
        return cls(image_key(name), name, np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros(0), np.zeros(0))

    def select(self, keep: np.ndarray) -> FaceRecord:
        """The record restricted to the faces where ``keep`` (bool mask or indices)."""
        return dataclasses.replace(
            self,
            boxes=self.boxes[keep],
            landmarks=self.landmarks[keep],
            has_landmarks=self.has_landmarks[keep],
            ignore=self.ignore[keep],
            attributes=None if self.attributes is None else self.attributes[keep],
        )


def image_key(name: str) -> str:
    """The dataset key of a label's image name: basename without extension."""
    return os.path.splitext(os.path.basename(name.replace("\\", "/")))[0]


def _numbers(tokens: list[str], path, lineno: int) -> list[float]:
    values = []
    for tok in tokens:
        try:
            v = float(tok)
        except ValueError:
            raise LabelFormatError(path, lineno, f"not a number: {tok!r}") from None
        if not math.isfinite(v):
            raise LabelFormatError(path, lineno, f"not a finite number: {tok!r}")
        values.append(v)
    return values


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _record(
    name: str, rows: list[list[float]], attributes: list[list[float]] | None, landmarks: list[list[float]] | None
) -> FaceRecord:
    n = len(rows)
    boxes = xywh_to_xyxy(np.asarray(rows, dtype=np.float64).reshape(n, 4))
    if landmarks is None:
        lms = np.full((n, 5, 2), _NO_LANDMARK, dtype=np.float32)
        has = np.zeros(n, dtype=bool)
    else:
        lms = np.asarray(landmarks, dtype=np.float64).reshape(n, 5, 2).astype(np.float32)
        has = ~np.all(lms == _NO_LANDMARK, axis=(1, 2))
    attrs = None if attributes is None else np.asarray(attributes, dtype=np.int64).reshape(n, 6)
    ignore = np.zeros(n, dtype=bool) if attrs is None else attrs[:, 3] != 0
    return FaceRecord(image_key(name), name, boxes, lms, has, ignore, attrs)


def _add(records: dict, record: FaceRecord, path, lineno: int) -> None:
    if record.key in records:
        raise LabelFormatError(path, lineno, f"image key {record.key!r} ({record.name}) appears twice")
    records[record.key] = record


def _lines(path) -> list[tuple[int, str]]:
    """Non-empty stripped lines with their 1-based numbers."""
    data = Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is not text
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        raise LabelFormatError(
            path, data[: exc.start].count(b"\n") + 1, f"not UTF-8 text (byte 0x{bad}); label files are UTF-8"
        ) from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # as open()'s universal newlines
    return [(i, s) for i, line in enumerate(lines, 1) if (s := line.strip())]


def read_wider(path: str | os.PathLike) -> dict[str, FaceRecord]:
    """Read a WIDER bbx label file -> {key: FaceRecord} in file order."""
    lines = _lines(path)
    records: dict[str, FaceRecord] = {}
    i = 0
    while i < len(lines):
        name_no, name = lines[i]
        if _is_number(name.split()[0]):
            raise LabelFormatError(path, name_no, f"expected an image name line, got {name!r}")
        if i + 1 >= len(lines):
            raise LabelFormatError(path, name_no, f"image {name!r} has no face-count line")
        count_no, count_text = lines[i + 1]
        try:
            count = int(count_text)
        except ValueError:
            raise LabelFormatError(path, count_no, f"expected a face count (integer), got {count_text!r}") from None
        if count < 0:
            raise LabelFormatError(path, count_no, f"negative face count {count}")
        i += 2
        rows, attrs = [], []
        if count == 0:
            # WIDER writes one all-zero line after a zero count; it is not a face.
            if i < len(lines) and all(_is_number(t) for t in lines[i][1].split()):
                zero_no, zero = lines[i]
                if any(v != 0 for v in _numbers(zero.split(), path, zero_no)):
                    raise LabelFormatError(path, zero_no, f"count 0 must be followed by an all-zero line, got {zero!r}")
                i += 1
            _add(records, FaceRecord.empty(name), path, name_no)
            continue
        if i + count > len(lines):
            raise LabelFormatError(
                path, count_no, f"face count {count} but only {len(lines) - i} non-empty lines follow"
            )
        width = None
        for lineno, text in lines[i : i + count]:
            tokens = text.split()
            if len(tokens) not in (4, 10):
                raise LabelFormatError(
                    path,
                    lineno,
                    f"expected 4 or 10 columns (x y w h [{' '.join(ATTRIBUTE_NAMES)}]), got {len(tokens)}"
                    + ("" if _is_number(tokens[0]) else f" (line {count_no} says {count} faces)"),
                )
            if width is not None and len(tokens) != width:
                raise LabelFormatError(path, lineno, f"{len(tokens)} columns where the previous faces had {width}")
            width = len(tokens)
            values = _numbers(tokens, path, lineno)
            rows.append(values[:4])
            if width == 10:
                if any(v != int(v) for v in values[4:]):
                    raise LabelFormatError(path, lineno, f"attribute columns must be integers, got {tokens[4:]}")
                attrs.append(values[4:])
        i += count
        _add(records, _record(name, rows, attrs if width == 10 else None, None), path, name_no)
    return records


def read_retinaface(path: str | os.PathLike) -> dict[str, FaceRecord]:
    """Read a RetinaFace landmark label file -> {key: FaceRecord} in file order."""
    records: dict[str, FaceRecord] = {}
    current: tuple[str, int] | None = None
    rows: list[list[float]] = []
    lms: list[list[float]] = []

    def flush() -> None:
        if current is not None:
            _add(records, _record(current[0], rows, None, lms), path, current[1])

    for lineno, text in _lines(path):
        if text.startswith("#"):
            flush()
            name = text[1:].strip().split()
            if not name:
                raise LabelFormatError(path, lineno, "'#' line without an image name")
            current, rows, lms = (name[0], lineno), [], []
            continue
        if current is None:
            raise LabelFormatError(path, lineno, "face line before the first '# image-name' line")
        tokens = text.split()
        if len(tokens) not in (4, 19, 20):
            raise LabelFormatError(
                path, lineno, f"expected 4, 19 or 20 columns (x y w h, 5 x (x y 0.0), score), got {len(tokens)}"
            )
        values = _numbers(tokens, path, lineno)
        rows.append(values[:4])
        if len(values) == 4:
            lms.append([_NO_LANDMARK] * 10)
        else:
            lms.append([values[4 + 3 * k + j] for k in range(5) for j in range(2)])
    flush()
    return records


def detect_format(path: str | os.PathLike) -> str:
    """``"retinaface"`` if the first non-empty line starts with '#', else ``"wider"``."""
    for _, text in _lines(path)[:1]:
        return "retinaface" if text.startswith("#") else "wider"
    return "wider"


def read_labels(path: str | os.PathLike) -> dict[str, FaceRecord]:
    """Read either label format (auto-detected) -> {key: FaceRecord} in file order."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    return read_retinaface(path) if detect_format(path) == "retinaface" else read_wider(path)


def _fmt(v) -> str:
    """Shortest text that reads back (through float64) to the same float32."""
    return np.format_float_positional(np.float32(v), unique=True, trim="-")


def _extent(start_text: str, end: np.float32) -> str:
    """A width (or height) w such that float32(float(start_text) + w) == end exactly."""
    start = float(start_text)
    for text in (_fmt(end - np.float32(start)), repr(float(end) - start)):
        if np.float32(start + float(text)) == end:
            return text
    raise AssertionError(f"cannot write an exact extent from {start_text} to {end}")


def _xywh(box: np.ndarray) -> list[str]:
    x1, y1 = _fmt(box[0]), _fmt(box[1])
    return [x1, y1, _extent(x1, box[2]), _extent(y1, box[3])]


def _as_list(records: Mapping[str, FaceRecord] | Iterable[FaceRecord]) -> list[FaceRecord]:
    return list(records.values()) if isinstance(records, Mapping) else list(records)


def write_wider(records: Mapping[str, FaceRecord] | Iterable[FaceRecord], path: str | os.PathLike) -> None:
    """Write records in WIDER bbx format.

    Faces get the six attribute columns when the record has attributes or an ignored
    face (then ``invalid`` = ``ignore`` and the other attributes 0), else ``x y w h`` only.
    """
    out = []
    for r in _as_list(records):
        out += [r.name, str(len(r))]
        if len(r) == 0:
            out.append(" ".join(["0"] * 10))
        attrs = r.attributes.copy() if r.attributes is not None else np.zeros((len(r), 6), dtype=np.int64)
        attrs[:, 3] = r.ignore
        with_attrs = r.attributes is not None or bool(r.ignore.any())
        for j in range(len(r)):
            out.append(" ".join(_xywh(r.boxes[j]) + ([str(int(a)) for a in attrs[j]] if with_attrs else [])))
    Path(path).write_text("\n".join(out) + "\n", encoding="utf-8")


def write_retinaface(records: Mapping[str, FaceRecord] | Iterable[FaceRecord], path: str | os.PathLike) -> None:
    """Write records in RetinaFace landmark format (score 1.0 with landmarks, -1.0 without)."""
    out = []
    for r in _as_list(records):
        out.append(f"# {r.name}")
        for j in range(len(r)):
            if r.has_landmarks[j]:
                lm = [t for x, y in r.landmarks[j] for t in (_fmt(x), _fmt(y), "0.0")] + ["1.0"]
            else:
                lm = ["-1.0"] * 16
            out.append(" ".join(_xywh(r.boxes[j]) + lm))
    Path(path).write_text("\n".join(out) + "\n", encoding="utf-8")


def merge_landmarks(
    records: Mapping[str, FaceRecord], landmark_records: Mapping[str, FaceRecord], atol: float = 0.5
) -> tuple[dict[str, FaceRecord], int]:
    """Take landmarks from a RetinaFace file into WIDER records whose boxes match.

    Faces are matched in order; an image whose landmark-file boxes differ (count or
    coordinates beyond ``atol`` pixels) keeps no landmarks. Returns (records, number of
    images that did not match).
    """
    merged, mismatched = {}, 0
    for key, rec in records.items():
        other = landmark_records.get(key)
        if other is None or len(other) != len(rec) or not np.allclose(other.boxes, rec.boxes, atol=atol):
            mismatched += other is not None
            merged[key] = rec
            continue
        merged[key] = dataclasses.replace(
            rec, landmarks=other.landmarks.copy(), has_landmarks=other.has_landmarks.copy()
        )
    return merged, mismatched


def sanitize(record: FaceRecord, width: float, height: float) -> tuple[FaceRecord, int]:
    """The policy for boxes that do not fit the image.

    Boxes partly outside the image are clipped to it; boxes with zero or negative width
    or height after clipping (which includes boxes wholly outside) are dropped.
    Landmarks are left as labelled. Returns (clean record, number of boxes dropped).
    """
    boxes = record.boxes.copy()
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    clean = dataclasses.replace(record, boxes=boxes).select(keep)
    return clean, int((~keep).sum())
