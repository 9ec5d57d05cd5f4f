"""Boxes: the numpy xywh <-> xyxy conversions and the torch box and landmark coding.

``xywh`` is WIDER's (x, y, width, height), ``xyxy`` the corners with ``x2 = x + w`` (no +1:
WIDER's +1 pixel convention belongs to its IoU, in :mod:`latentface.metrics.wider`).

The coding (one implementation for the loss, post-processing and tests): offsets are relative
to the anchor (cx, cy, w, h): centre offsets / (0.1 * anchor size), log size ratios / 0.2 --
RetinaFace's variances.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_convert

VARIANCES = (0.1, 0.2)


def xywh_to_xyxy(boxes) -> np.ndarray:
    """[..., 4] (x, y, w, h) -> [..., 4] (x1, y1, x2, y2) with x2 = x + w, float64."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:4]], axis=-1)


def xyxy_to_xywh(boxes) -> np.ndarray:
    """Inverse of :func:`xywh_to_xyxy`: [..., 4] (x1, y1, x2, y2) -> [..., 4] (x, y, w, h), float64."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([boxes[..., :2], boxes[..., 2:4] - boxes[..., :2]], axis=-1)


def encode_boxes(boxes_xyxy: torch.Tensor, anchors: torch.Tensor, variances=VARIANCES) -> torch.Tensor:
    """[..., 4] xyxy boxes matched to [..., 4] cxcywh anchors -> [..., 4] regression targets."""
    cxcywh = box_convert(boxes_xyxy, "xyxy", "cxcywh")
    centre = (cxcywh[..., :2] - anchors[..., :2]) / (variances[0] * anchors[..., 2:])
    size = torch.log(cxcywh[..., 2:] / anchors[..., 2:]) / variances[1]
    return torch.cat([centre, size], dim=-1)


def decode_boxes(deltas: torch.Tensor, anchors: torch.Tensor, variances=VARIANCES) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`: [..., 4] regression outputs -> [..., 4] xyxy boxes."""
    centre = anchors[..., :2] + deltas[..., :2] * variances[0] * anchors[..., 2:]
    size = anchors[..., 2:] * torch.exp(deltas[..., 2:] * variances[1])
    return box_convert(torch.cat([centre, size], dim=-1), "cxcywh", "xyxy")


def encode_landmarks(points: torch.Tensor, anchors: torch.Tensor, variances=VARIANCES) -> torch.Tensor:
    """[..., 5, 2] landmark points -> [..., 10] offsets from the anchor centre."""
    offsets = (points - anchors[..., None, :2]) / (variances[0] * anchors[..., None, 2:])
    return offsets.flatten(-2)


def decode_landmarks(deltas: torch.Tensor, anchors: torch.Tensor, variances=VARIANCES) -> torch.Tensor:
    """Inverse of :func:`encode_landmarks`: [..., 10] -> [..., 5, 2] points."""
    offsets = deltas.unflatten(-1, (5, 2))
    return anchors[..., None, :2] + offsets * variances[0] * anchors[..., None, 2:]
