"""The official WIDER FACE validation ground truth (the evaluation kit's .mat files): the
easy/medium/hard subsets, and the map from a dataset's label frame to the .mat's pixel frame."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from latentface.boxes import xywh_to_xyxy
from latentface.metrics.wider import match_predictions, no_faces_error, voc_ap

WIDER_SUBSETS = ("easy", "medium", "hard")
#: The ground-truth files of the official WIDER FACE evaluation kit.
WIDER_MAT_FILES = {
    "all": "wider_face_val.mat",
    "easy": "wider_easy_val.mat",
    "medium": "wider_medium_val.mat",
    "hard": "wider_hard_val.mat",
}


def _cells(value: Any) -> list:
    """The elements of a MATLAB cell array as loaded by scipy (object array, any shape)."""
    return list(np.asarray(value, dtype=object).ravel())


def _text(value: Any, where: str) -> str:
    flat = np.asarray(value).ravel()
    if flat.size != 1 or not isinstance(flat[0], str):
        raise ValueError(f"{where}: expected a string, got {value!r}")
    return str(flat[0])


def _mat_variable(mat: dict, name: str, path: Path) -> list:
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: no variable {name!r} (found {found})")
    return _cells(mat[name])


def load_wider_mat(gt_dir: str | os.PathLike) -> dict[str, dict]:
    """Read the official WIDER FACE validation ground truth (the evaluation kit's .mat files).

    Returns ``{image name without extension: {"name": "event/image.jpg",
    "boxes": float64 [N,4] xyxy (x2 = x + w, as the official code), "easy"/"medium"/"hard":
    bool [N] (the faces that subset counts)}}``, in the .mat's order.
    """
    gt_dir = Path(gt_dir)
    mats = {}
    for subset, filename in WIDER_MAT_FILES.items():
        path = gt_dir / filename
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: missing; the WIDER ground-truth directory {gt_dir} must hold "
                f"{', '.join(WIDER_MAT_FILES.values())} (from the WIDER FACE evaluation kit)"
            )
        try:
            mats[subset] = (path, scipy.io.loadmat(path))
        except Exception as exc:  # scipy raises several types for a corrupt file
            raise ValueError(f"{path}: not a readable .mat file ({exc})") from exc

    path, mat = mats["all"]
    events = _mat_variable(mat, "event_list", path)
    files = _mat_variable(mat, "file_list", path)
    boxes = _mat_variable(mat, "face_bbx_list", path)
    if not len(events) == len(files) == len(boxes):
        raise ValueError(f"{path}: {len(events)} events but {len(files)} file lists and {len(boxes)} box lists")
    subsets = {}
    for subset in WIDER_SUBSETS:
        sub_path, sub_mat = mats[subset]
        subsets[subset] = (sub_path, _mat_variable(sub_mat, "gt_list", sub_path))
        if len(subsets[subset][1]) != len(events):
            raise ValueError(f"{sub_path}: gt_list has {len(subsets[subset][1])} events, {path} has {len(events)}")

    images: dict[str, dict] = {}
    for i, event_cell in enumerate(events):
        event = _text(event_cell, f"{path}: event_list[{i}]")
        names, event_boxes = _cells(files[i]), _cells(boxes[i])
        if len(names) != len(event_boxes):
            raise ValueError(f"{path}: event {event}: {len(names)} files but {len(event_boxes)} box lists")
        keep = {}
        for subset, (sub_path, gt_list) in subsets.items():
            keep[subset] = _cells(gt_list[i])
            if len(keep[subset]) != len(names):
                raise ValueError(f"{sub_path}: event {event}: {len(keep[subset])} images, {path} has {len(names)}")
        for j, name_cell in enumerate(names):
            name = _text(name_cell, f"{path}: event {event} file {j}")
            where = f"{path}: {event}/{name}"
            xywh = np.asarray(event_boxes[j], dtype=np.float64)
            if xywh.size == 0:
                xywh = xywh.reshape(0, 4)
            if xywh.ndim != 2 or xywh.shape[1] != 4:
                raise ValueError(f"{where}: boxes must be [N,4] x,y,w,h, got shape {xywh.shape}")
            record = {"name": f"{event}/{name}.jpg", "boxes": xywh_to_xyxy(xywh)}
            for subset, (sub_path, _) in subsets.items():
                index = np.asarray(keep[subset][j]).ravel().astype(np.int64) - 1  # MATLAB counts from 1
                if ((index < 0) | (index >= len(xywh))).any():
                    raise ValueError(f"{sub_path}: {event}/{name}: face index out of 1..{len(xywh)}: {index + 1}")
                mask = np.zeros(len(xywh), bool)
                mask[index] = True
                record[subset] = mask
            if name in images:
                raise ValueError(f"{path}: image {name!r} appears twice")
            images[name] = record
    return images


def wider_subset_curves(predictions: Mapping[str, Any], wider: Mapping[str, dict], iou_threshold: float = 0.5):
    """{subset: (precision, recall)} against :func:`load_wider_mat` ground truth."""
    matches = match_predictions(predictions, {key: {"boxes": v["boxes"]} for key, v in wider.items()}, iou_threshold)
    curves = {}
    for subset in WIDER_SUBSETS:
        precision, recall, faces = matches.curve({key: ~v[subset] for key, v in wider.items()})
        if faces == 0:
            raise no_faces_error(f"the WIDER {subset} subset")
        curves[subset] = (precision, recall)
    return curves


def wider_easy_medium_hard(
    predictions: Mapping[str, Any], gt_dir: str | os.PathLike, iou_threshold: float = 0.5
) -> dict[str, float]:
    """Official WIDER FACE easy/medium/hard AP from the evaluation kit's .mat files in ``gt_dir``.

    Each subset counts the faces its ``gt_list`` names and ignores the others. Keys
    are image names without extension; boxes must be in the pixel frame of the .mat
    (the original WIDER images), so detections made on resized images must be scaled back.
    """
    curves = wider_subset_curves(predictions, load_wider_mat(gt_dir), iou_threshold)
    return {subset: voc_ap(recall, precision) for subset, (precision, recall) in curves.items()}


def mat_frame_transform(labels: Mapping[str, Any], wider: Mapping[str, dict]) -> dict[str, np.ndarray]:
    """Per image the map (ax, bx, ay, by) from the labels' pixel frame to the .mat's: x' = ax*x + bx.

    retina-modify's labels are on the resized 640x640 image while the official .mat files are
    on the original images; the original sizes are not stored, but each image's faces are the
    same faces in the same order, so a least-squares fit of the .mat boxes against the label
    boxes gives the resize (and any letterbox offset). An image whose faces do not correspond
    is an error naming it; an image without faces takes the median map of the others.
    """
    maps: dict[str, np.ndarray] = {}
    for key, record in labels.items():
        if key not in wider:
            continue
        ours = np.asarray(record.boxes, dtype=np.float64).reshape(-1, 4)
        theirs = np.asarray(wider[key]["boxes"], dtype=np.float64).reshape(-1, 4)
        if len(ours) == 0:
            continue
        if len(ours) != len(theirs):
            raise ValueError(
                f"image {wider[key]['name']}: the labels have {len(ours)} faces, the WIDER .mat "
                f"{len(theirs)}; --wider_gt needs the split's labels to be the WIDER validation labels"
            )
        fit = []
        for axis in (0, 1):
            x, y = ours[:, [axis, axis + 2]].ravel(), theirs[:, [axis, axis + 2]].ravel()
            if np.ptp(x) > 0:
                a, b = np.polyfit(x, y, 1)
            else:
                a, b = 1.0, float(np.mean(y - x))
            tolerance = 2.0 + 0.02 * max(np.ptp(y), 1.0)
            if np.abs(a * x + b - y).max() > tolerance:
                raise ValueError(
                    f"image {wider[key]['name']}: its label boxes are not a resize of its WIDER .mat "
                    f"boxes (misfit {np.abs(a * x + b - y).max():.1f} px)"
                )
            fit += [a, b]
        maps[key] = np.array(fit)
    if not maps:
        raise ValueError("no image of the split has faces both in its labels and in the WIDER .mat files")
    median = np.median(np.stack(list(maps.values())), axis=0)
    return {key: maps.get(key, median) for key in labels if key in wider}


def to_mat_frame(predictions: Mapping[str, np.ndarray], maps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Predictions [K,5] moved to the .mat frame with :func:`mat_frame_transform`'s maps (others dropped)."""
    out = {}
    for key, p in predictions.items():
        if key not in maps:
            continue
        ax, bx, ay, by = maps[key]
        p = np.array(p, dtype=np.float64).reshape(-1, 5)
        p[:, [0, 2]] = p[:, [0, 2]] * ax + bx
        p[:, [1, 3]] = p[:, [1, 3]] * ay + by
        out[key] = p
    return out
